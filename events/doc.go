// Package events defines runlog's wire format: the event vocabulary
// ([Type] and its payloads), the [Event] envelope, the [Commit] that
// carries one decision's events in one message, and the codec.
//
// One decision is one message. A commit holds the decision's events in
// order; each event keeps its own ULID id and type, and shares the commit's
// instance id, time and schema version. The message headers name the
// commit id and the event types (see the Header constants) so that
// consumers can filter without decoding. docs/EVENTS.md documents the
// format for other programs.
//
// Every commit carries Prev, the SHA-256 of the payload of the instance's
// previous commit, so an instance's history is a hash chain: altering,
// removing or reordering a commit breaks the next link.
//
// Decoding is strict: an unknown field, event type or newer schema version
// is an error. Decode errors are [*DecodeError]s that name the stream
// sequence, and match [ErrCorrupt].
//
// The package does no I/O. [IDSource] is safe for concurrent use; other
// values are not safe for concurrent mutation.
package events
