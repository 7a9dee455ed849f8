// Package projection folds an instance's history into its current
// [State]: whether a snapshot exists, the snapshot itself, the pending
// cancel and pause signals, the current run, and the position in the
// history (last sequence, hash chain head).
//
// The fold is pure: no I/O, no clock. [State.Apply] folds one decoded
// commit and checks it against the state (increasing sequence, the right
// instance, an intact hash chain, an event allowed where it lands);
// [Fold], [FoldUntil] and [State.CatchUp] decode and fold a sequence of
// stored messages, the last two stopping at a sequence or a time for the
// state as of a point in the past.
//
// Errors name the stream sequence: [*events.DecodeError] for a message
// that does not decode, [*HistoryError] (matching [ErrInvalidHistory]) for
// one that decodes but cannot be folded.
//
// A State is a value; it is not safe for concurrent mutation. Clone it
// before sharing.
package projection
