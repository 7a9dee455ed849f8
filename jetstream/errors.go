package jetstream

import (
	"errors"
	"strings"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Sentinels, one per condition. Match them with [errors.Is]; the errors
// returned carry the details in their text and, where useful, a typed
// error that matches the sentinel.
var (
	// ErrInvalidConfig is matched by errors from [Open], [OpenEmbedded],
	// [StartEmbedded] and [Connect] when a [Config], [EmbeddedConfig] or
	// [ConnectConfig] field is invalid. The message says which field and
	// why. Nothing was created.
	ErrInvalidConfig = errors.New("jetstream: invalid config")

	// ErrStreamMismatch is matched by the [*StreamMismatchError] that
	// [Open] returns when the stream already exists with a configuration
	// that could lose or hide history. The stream is left untouched.
	ErrStreamMismatch = errors.New("jetstream: stream config mismatch")

	// ErrStreamNotFound is matched by the error [Open] returns for a
	// missing stream when [Config.NoCreate] is set. It is nats.go's
	// natsjs.ErrStreamNotFound, re-exported so that callers need not
	// import nats.go to tell a missing stream from a failed connection.
	ErrStreamNotFound = natsjs.ErrStreamNotFound

	// ErrDirInUse is matched by the error [StartEmbedded] and
	// [OpenEmbedded] return when another embedded server holds the store
	// directory (two servers on one directory would corrupt it).
	ErrDirInUse = errors.New("jetstream: store directory in use")

	// ErrTooLarge is matched by errors from [Log.Append] when the message
	// (data plus headers) exceeds the maximum payload the server accepts.
	// Nothing was sent.
	ErrTooLarge = errors.New("jetstream: message too large")

	// ErrReadOnly is matched by errors from [Log.Append] on a store
	// opened with [Config.ReadOnly]. Nothing was sent.
	ErrReadOnly = errors.New("jetstream: store opened read-only")

	// ErrInvalidSubject is matched by errors from [DecodeID] and
	// [Log.InstanceFromSubject] when a token or subject is not the
	// canonical encoding of an instance id.
	ErrInvalidSubject = errors.New("jetstream: not an instance subject")
)

// StreamMismatchError is returned by [Open] when the stream exists but its
// configuration differs from what the store needs in a way that matters:
// settings that could lose or rewrite history (deletes, purges, rollups,
// TTLs, delete markers, schedules, counters, limits, retention, discard
// policy, sources, asynchronous persistence) and settings the store
// cannot work with (subjects, storage, replicas, direct gets, sealing,
// mirroring). [Open] lists every one. It matches [ErrStreamMismatch]. The store never updates an
// existing stream: fix the stream (nats stream edit) or the [Config].
type StreamMismatchError struct {
	Stream      string   // the stream name
	Differences []string // one entry per difference, "max_age is 1h0m0s want 0 (unlimited)"
}

func (e *StreamMismatchError) Error() string {
	return "jetstream: stream config mismatch: stream " + e.Stream + ": " + strings.Join(e.Differences, "; ")
}

// Is reports whether target is [ErrStreamMismatch].
func (e *StreamMismatchError) Is(target error) bool { return target == ErrStreamMismatch }
