package workflow

import (
	"errors"
	"fmt"
	"time"
)

// SignalKind is a control signal: cancel or pause.
type SignalKind uint8

const (
	// Cancel asks the workflow to stop for good.
	Cancel SignalKind = iota + 1
	// Pause asks the workflow to park until unpaused.
	Pause
)

// ErrInvalidSignalKind is matched by errors from [ParseSignalKind].
var ErrInvalidSignalKind = errors.New("workflow: invalid signal kind")

// SignalKinds lists every kind, in a stable order (cancel first).
func SignalKinds() []SignalKind { return []SignalKind{Cancel, Pause} }

// String returns "cancel" or "pause".
func (k SignalKind) String() string {
	switch k {
	case Cancel:
		return "cancel"
	case Pause:
		return "pause"
	}
	return fmt.Sprintf("SignalKind(%d)", uint8(k))
}

// Valid reports whether k is [Cancel] or [Pause].
func (k SignalKind) Valid() bool { return k == Cancel || k == Pause }

// ParseSignalKind accepts "cancel" and "pause" (and Sayiir's "Cancel" and
// "Pause").
func ParseSignalKind(s string) (SignalKind, error) {
	switch s {
	case "cancel", "Cancel":
		return Cancel, nil
	case "pause", "Pause":
		return Pause, nil
	}
	return 0, fmt.Errorf("%w %q: valid kinds are cancel, pause", ErrInvalidSignalKind, s)
}

// MarshalText implements [encoding.TextMarshaler].
func (k SignalKind) MarshalText() ([]byte, error) {
	if !k.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrInvalidSignalKind, uint8(k))
	}
	return []byte(k.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler].
func (k *SignalKind) UnmarshalText(b []byte) error {
	v, err := ParseSignalKind(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// SignalRequest is a pending cancel or pause request. Empty strings mean
// "not given".
type SignalRequest struct {
	Reason      string    `json:"reason,omitempty"`
	RequestedBy string    `json:"requested_by,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
}
