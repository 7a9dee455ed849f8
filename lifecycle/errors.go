package lifecycle

import (
	"errors"
	"fmt"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/workflow"
)

// Sentinels, one per condition. Match them with [errors.Is]; the typed
// errors below carry the details and match their sentinel. The
// conditions under which an operation refuses (all but ErrInvalidConfig)
// are made with newRefusal: the write loop recognises a refusal by that
// kind, not by a list (see isRefusal).
var (
	// ErrInvalidInstanceID: the id is empty, longer than 256 bytes or not
	// UTF-8. It is [workflow.ErrInvalidInstanceID].
	ErrInvalidInstanceID = workflow.ErrInvalidInstanceID
	// ErrInvalidRequest: a request field is invalid (an unknown policy or
	// signal kind, an oversized payload). Nothing was written.
	ErrInvalidRequest = newRefusal("lifecycle: invalid request")
	// ErrAlreadyExists: PrepareRun under [workflow.Fail] found the id in use.
	ErrAlreadyExists = newRefusal("lifecycle: instance already exists")
	// ErrDefinitionMismatch: the stored snapshot was made by another
	// workflow definition. Checked before every conflict policy.
	ErrDefinitionMismatch = newRefusal("lifecycle: definition mismatch")
	// ErrConcurrentModification: every attempt lost the race to another
	// writer (the sequence check failed each time).
	ErrConcurrentModification = newRefusal("lifecycle: concurrent modification")
	// ErrInvalidConfig: a [Config] field is invalid.
	ErrInvalidConfig = errors.New("lifecycle: invalid config")
	// ErrNotFound: the instance has no snapshot (never created, or
	// deleted). [*NotFoundError] says which.
	ErrNotFound = newRefusal("lifecycle: instance not found")
	// ErrTerminal: the run is completed, failed or cancelled; terminal
	// states are absorbing and refuse every change.
	ErrTerminal = newRefusal("lifecycle: instance is in a terminal state")
	// ErrStale: the writer's view is out of date: its run was replaced, or
	// another checkpoint landed since its revision. Reload and decide again.
	ErrStale = newRefusal("lifecycle: stale revision")
	// ErrCannotCancel: a cancel request on a completed or failed instance.
	ErrCannotCancel = newRefusal("lifecycle: cannot cancel")
	// ErrCannotPause: a pause request on a completed, failed or cancelled
	// instance.
	ErrCannotPause = newRefusal("lifecycle: cannot pause")
	// ErrNotPaused: Unpause of an instance that is not paused.
	ErrNotPaused = newRefusal("lifecycle: instance is not paused")
)

// refusalError is the kind of the sentinels of refusals: a decision that
// refuses an operation returns one (or a typed error that wraps one). The
// write loop confirms a refusal made on cached state by deciding again on
// fresh state, and returns it without wrapping; any other error from a
// decision is a failure, returned at once.
type refusalError struct{ msg string }

func (e *refusalError) Error() string { return e.msg }
func (e *refusalError) refusal()      {}

func newRefusal(msg string) error { return &refusalError{msg: msg} }

// NotFoundError is returned when an operation needs a snapshot and none
// exists. It matches [ErrNotFound].
type NotFoundError struct {
	ID      string
	Deleted bool // the instance had a snapshot that was deleted
}

func (e *NotFoundError) Error() string {
	if e.Deleted {
		return fmt.Sprintf("lifecycle: workflow instance %q not found: its snapshot was deleted (the history remains; see replay show)", e.ID)
	}
	return fmt.Sprintf("lifecycle: workflow instance %q not found: start it with PrepareRun first", e.ID)
}

// Is reports whether target is [ErrNotFound].
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// TerminalError is returned when a change is asked of a finished run. It
// matches [ErrTerminal].
type TerminalError struct {
	ID    string
	Op    string
	State workflow.StateKind
}

func (e *TerminalError) Error() string {
	return fmt.Sprintf("lifecycle: %s %q: the run is %s, a terminal state, and accepts no further change (start a new run with PrepareRun and policy %q)",
		e.Op, e.ID, e.State, workflow.TerminateExisting)
}

// Is reports whether target is [ErrTerminal].
func (e *TerminalError) Is(target error) bool { return target == ErrTerminal }

// StaleError is returned when a writer's revision is out of date. It
// matches [ErrStale].
type StaleError struct {
	ID      string
	Op      string
	Have    Revision // the revision the writer acted on
	Current Revision // the instance's current revision
}

func (e *StaleError) Error() string {
	if e.Have.Run != e.Current.Run {
		return fmt.Sprintf("lifecycle: %s %q: run %s was replaced by run %s: this writer must stop", e.Op, e.ID, e.Have.Run, e.Current.Run)
	}
	return fmt.Sprintf("lifecycle: %s %q: stale revision %d: the snapshot changed at revision %d since; reload it and decide again", e.Op, e.ID, e.Have.Seq, e.Current.Seq)
}

// Is reports whether target is [ErrStale].
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// SignalRefusedError is returned when the admission matrix refuses a
// signal. It matches [ErrCannotCancel] or [ErrCannotPause].
type SignalRefusedError struct {
	ID    string
	Kind  workflow.SignalKind
	State workflow.StateKind
}

func (e *SignalRefusedError) Error() string {
	return fmt.Sprintf("lifecycle: cannot %s workflow instance %q in state %s", e.Kind, e.ID, e.State)
}

// Is reports whether target is the sentinel of the refused kind.
func (e *SignalRefusedError) Is(target error) bool {
	return e.Kind == workflow.Cancel && target == ErrCannotCancel || e.Kind == workflow.Pause && target == ErrCannotPause
}

// NotPausedError is returned by Unpause of an instance that is not paused.
// It matches [ErrNotPaused].
type NotPausedError struct {
	ID    string
	State workflow.StateKind
}

func (e *NotPausedError) Error() string {
	return fmt.Sprintf("lifecycle: unpause %q: workflow is not paused (current state: %s)", e.ID, e.State)
}

// Is reports whether target is [ErrNotPaused].
func (e *NotPausedError) Is(target error) bool { return target == ErrNotPaused }

// AlreadyExistsError is returned by PrepareRun under [workflow.Fail] when
// the instance id is in use. It matches [ErrAlreadyExists].
type AlreadyExistsError struct {
	ID     string
	Run    ulid.ULID       // the existing run
	Status workflow.Status // its status
}

func (e *AlreadyExistsError) Error() string {
	return fmt.Sprintf("lifecycle: workflow instance %q already exists (run %s, %s): use conflict policy %q or %q to override, or resume it instead",
		e.ID, e.Run, e.Status.Kind, workflow.UseExisting, workflow.TerminateExisting)
}

// Is reports whether target is [ErrAlreadyExists].
func (e *AlreadyExistsError) Is(target error) bool { return target == ErrAlreadyExists }

// DefinitionMismatchError is returned when the stored snapshot's definition
// hash differs from the requested one. It matches [ErrDefinitionMismatch].
type DefinitionMismatchError struct {
	ID        string
	Stored    workflow.DefinitionHash // the hash the instance was created with
	Requested workflow.DefinitionHash // the hash the caller passed
}

func (e *DefinitionMismatchError) Error() string {
	return fmt.Sprintf("lifecycle: workflow definition mismatch for instance %q: expected %s, found %s (the instance was created by another version of the workflow; use a new instance id, or delete the instance first)",
		e.ID, e.Requested, e.Stored)
}

// Is reports whether target is [ErrDefinitionMismatch].
func (e *DefinitionMismatchError) Is(target error) bool { return target == ErrDefinitionMismatch }

// ConcurrentModificationError is returned when every attempt of a decision
// met a conflicting append. It matches [ErrConcurrentModification] and
// unwraps to the last conflict.
type ConcurrentModificationError struct {
	ID       string
	Op       string
	Attempts int
	Last     error
}

func (e *ConcurrentModificationError) Error() string {
	return fmt.Sprintf("lifecycle: %s %q: concurrent modification: %d attempts each lost to another writer; retry later", e.Op, e.ID, e.Attempts)
}

// Is reports whether target is [ErrConcurrentModification].
func (e *ConcurrentModificationError) Is(target error) bool {
	return target == ErrConcurrentModification
}

// Unwrap returns the last conflict.
func (e *ConcurrentModificationError) Unwrap() error { return e.Last }

// The typed errors are refusals too (they match their sentinel through Is,
// which errors.As does not follow).
func (*NotFoundError) refusal()               {}
func (*TerminalError) refusal()               {}
func (*StaleError) refusal()                  {}
func (*SignalRefusedError) refusal()          {}
func (*NotPausedError) refusal()              {}
func (*AlreadyExistsError) refusal()          {}
func (*DefinitionMismatchError) refusal()     {}
func (*ConcurrentModificationError) refusal() {}
func (*ClaimedError) refusal()                {}
