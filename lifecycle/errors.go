package lifecycle

import (
	"errors"
	"fmt"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/workflow"
)

// Sentinels, one per condition. Match them with [errors.Is]; the typed
// errors below carry the details and match their sentinel.
var (
	// ErrInvalidInstanceID: the id is empty, longer than 256 bytes or not
	// UTF-8. It is [workflow.ErrInvalidInstanceID].
	ErrInvalidInstanceID = workflow.ErrInvalidInstanceID
	// ErrInvalidRequest: a request field is invalid (an unknown policy or
	// signal kind, an oversized payload). Nothing was written.
	ErrInvalidRequest = errors.New("lifecycle: invalid request")
	// ErrAlreadyExists: PrepareRun under [workflow.Fail] found the id in use.
	ErrAlreadyExists = errors.New("lifecycle: instance already exists")
	// ErrDefinitionMismatch: the stored snapshot was made by another
	// workflow definition. Checked before every conflict policy.
	ErrDefinitionMismatch = errors.New("lifecycle: definition mismatch")
	// ErrConcurrentModification: every attempt lost the race to another
	// writer (the sequence check failed each time).
	ErrConcurrentModification = errors.New("lifecycle: concurrent modification")
	// ErrInvalidConfig: a [Config] field is invalid.
	ErrInvalidConfig = errors.New("lifecycle: invalid config")
)

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
