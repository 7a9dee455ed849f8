package lifecycle

import (
	"errors"

	"github.com/runlog/runlog/workflow"
)

func validateID(id string) error { return workflow.ValidateInstanceID(id) }

func isConflict(err error) bool { return errors.Is(err, ErrWrongSequence) }

// isDomain reports whether err is a decision error that is returned as is.
func isDomain(err error) bool {
	for _, s := range domainErrors {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

var domainErrors = []error{ErrAlreadyExists, ErrDefinitionMismatch, ErrConcurrentModification, ErrInvalidRequest,
	ErrInvalidInstanceID, ErrNotFound, ErrTerminal, ErrStale, ErrCannotCancel, ErrCannotPause, ErrNotPaused}
