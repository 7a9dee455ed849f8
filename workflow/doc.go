// Package workflow holds runlog's domain types, with the semantics of
// Sayiir's sayiir-core: the workflow [Snapshot] and its five [StateKind]s,
// the seven execution [PositionKind]s, the caller-facing [Status], task
// hints and ids, the [DefinitionHash], control signals ([SignalKind],
// [SignalRequest]), the [ConflictPolicy] of PrepareRun, and instance-id
// validation ([ValidateInstanceID]).
//
// The package is a leaf: it does no I/O and imports nothing of runlog's.
// Values are not safe for concurrent mutation; copy them with Clone.
//
// Transitions follow Sayiir's: UpdatePosition, MarkTaskCompleted and
// MarkPaused apply only to an in-progress snapshot; MarkUnpaused only to a
// paused one; MarkCompleted, MarkFailed and MarkCancelled apply from any
// state. runlog's store adds what Sayiir lacks on top of them: terminal
// states are absorbing there.
//
// Errors: [ErrInvalidInstanceID], [ErrInvalidHash], [ErrInvalidPolicy] and
// [ErrInvalidSignalKind] are matched with [errors.Is]; the typed errors
// [*InstanceIDError] and [*HashError] carry the details.
package workflow
