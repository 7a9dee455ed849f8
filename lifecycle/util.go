package lifecycle

import (
	"errors"

	"github.com/runlog/runlog/workflow"
)

func validateID(id string) error { return workflow.ValidateInstanceID(id) }

func isConflict(err error) bool { return errors.Is(err, ErrWrongSequence) }

// isDomain reports whether err is a refusal (see refusalError), returned
// as is: an error made with newRefusal, or one that wraps such an error,
// or an invalid instance id (workflow's sentinel, which cannot carry the
// kind).
func isDomain(err error) bool {
	var r interface{ refusal() }
	return errors.As(err, &r) || errors.Is(err, ErrInvalidInstanceID)
}
