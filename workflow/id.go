package workflow

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxInstanceIDLen is the largest instance id accepted, in UTF-8 bytes.
const MaxInstanceIDLen = 256

// ErrInvalidInstanceID is matched by every [InstanceIDError].
var ErrInvalidInstanceID = errors.New("workflow: invalid instance id")

// InstanceIDError says why an instance id was refused.
type InstanceIDError struct {
	ID     string
	Reason string
}

func (e *InstanceIDError) Error() string {
	if e.ID == "" {
		return "workflow: invalid instance id: " + e.Reason
	}
	return fmt.Sprintf("workflow: invalid instance id %q: %s", truncate(e.ID, 64), e.Reason)
}

// Is reports whether target is [ErrInvalidInstanceID].
func (e *InstanceIDError) Is(target error) bool { return target == ErrInvalidInstanceID }

// ValidateInstanceID checks Sayiir's rule: an instance id is any non-empty
// valid UTF-8 string of at most [MaxInstanceIDLen] bytes. Dots, wildcards,
// spaces and any Unicode are allowed. Errors match [ErrInvalidInstanceID].
func ValidateInstanceID(id string) error {
	switch {
	case id == "":
		return &InstanceIDError{Reason: "instance_id must not be empty"}
	case len(id) > MaxInstanceIDLen:
		return &InstanceIDError{ID: id, Reason: fmt.Sprintf("instance_id length %d exceeds maximum %d bytes", len(id), MaxInstanceIDLen)}
	case !utf8.ValidString(id):
		return &InstanceIDError{ID: id, Reason: "instance_id is not valid UTF-8"}
	}
	return nil
}
