package workflow

import (
	"errors"
	"fmt"
)

// ConflictPolicy says what PrepareRun does when the instance id is already
// in use. The zero value is [Fail].
type ConflictPolicy uint8

const (
	// Fail refuses to start a run whose instance id is in use (the default).
	Fail ConflictPolicy = iota
	// UseExisting returns the existing instance's status without running.
	UseExisting
	// TerminateExisting deletes the existing instance, clears its pending
	// cancel and pause signals and starts a fresh run, atomically.
	TerminateExisting
)

// ErrInvalidPolicy is matched by errors from [ParseConflictPolicy].
var ErrInvalidPolicy = errors.New("workflow: invalid conflict policy")

var policyNames = [...]string{"fail", "use_existing", "terminate_existing"}

// ConflictPolicyNames lists the canonical names, in order.
func ConflictPolicyNames() []string { return policyNames[:] }

// String returns the canonical snake_case name.
func (p ConflictPolicy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("ConflictPolicy(%d)", uint8(p))
}

// ParseConflictPolicy accepts the canonical names ("fail", "use_existing",
// "terminate_existing") and the camelCase aliases ("useExisting",
// "terminateExisting"). The empty string means [Fail].
func ParseConflictPolicy(s string) (ConflictPolicy, error) {
	switch s {
	case "", "fail":
		return Fail, nil
	case "use_existing", "useExisting":
		return UseExisting, nil
	case "terminate_existing", "terminateExisting":
		return TerminateExisting, nil
	}
	return Fail, fmt.Errorf("%w %q: valid names are fail, use_existing, terminate_existing", ErrInvalidPolicy, s)
}

// MarshalText implements [encoding.TextMarshaler].
func (p ConflictPolicy) MarshalText() ([]byte, error) {
	if int(p) >= len(policyNames) {
		return nil, fmt.Errorf("%w: %d", ErrInvalidPolicy, uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler].
func (p *ConflictPolicy) UnmarshalText(b []byte) error {
	v, err := ParseConflictPolicy(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}
