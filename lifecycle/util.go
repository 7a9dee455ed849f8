package lifecycle

import (
	"errors"

	"github.com/runlog/runlog/workflow"
)

func validateID(id string) error { return workflow.ValidateInstanceID(id) }

func isConflict(err error) bool { return errors.Is(err, ErrWrongSequence) }

// isDomain reports whether err is a decision error that is returned as is.
func isDomain(err error) bool {
	return errors.Is(err, ErrAlreadyExists) || errors.Is(err, ErrDefinitionMismatch) ||
		errors.Is(err, ErrConcurrentModification) || errors.Is(err, ErrInvalidRequest) ||
		errors.Is(err, ErrInvalidInstanceID)
}
