package workflow

import (
	"fmt"
	"time"
)

// StatusKind names the seven statuses a caller sees (Sayiir's WorkflowStatus).
type StatusKind uint8

const (
	StatusInProgress     StatusKind = iota // running or ready to run
	StatusCompleted                        // finished successfully
	StatusFailed                           // finished with an error
	StatusCancelled                        // cancelled
	StatusPaused                           // paused
	StatusWaiting                          // parked at a delay or in a fork until WakeAt
	StatusAwaitingSignal                   // parked until an external event arrives
)

var statusNames = [...]string{"in_progress", "completed", "failed", "cancelled", "paused", "waiting", "awaiting_signal"}

// String returns the snake_case name, such as "awaiting_signal".
func (k StatusKind) String() string {
	if int(k) < len(statusNames) {
		return statusNames[k]
	}
	return fmt.Sprintf("StatusKind(%d)", uint8(k))
}

// ParseStatusKind parses the names returned by [StatusKind.String].
func ParseStatusKind(s string) (StatusKind, error) {
	for i, n := range statusNames {
		if n == s {
			return StatusKind(i), nil
		}
	}
	return 0, fmt.Errorf("workflow: unknown status %q: valid statuses are in_progress, completed, failed, cancelled, paused, waiting, awaiting_signal", s)
}

// MarshalText implements [encoding.TextMarshaler].
func (k StatusKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler].
func (k *StatusKind) UnmarshalText(b []byte) error {
	v, err := ParseStatusKind(string(b))
	*k = v
	return err
}

// Status is what a caller is told about an instance. Only the fields of
// Kind are set:
//
//	failed           Error
//	cancelled        Reason, By
//	paused           Reason, By
//	waiting          WakeAt, DelayID (the delay or fork id)
//	awaiting_signal  SignalID, SignalName, WakeAt (optional)
type Status struct {
	Kind       StatusKind `json:"status"`
	Error      string     `json:"error,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	By         string     `json:"by,omitempty"`
	WakeAt     *time.Time `json:"wake_at,omitempty"`
	DelayID    *TaskID    `json:"delay_id,omitempty"`
	SignalID   *TaskID    `json:"signal_id,omitempty"`
	SignalName string     `json:"signal_name,omitempty"`
}

// AsStatus returns the snapshot's status (Sayiir's as_status): the terminal
// and paused states map one to one; an in-progress snapshot is waiting at a
// delay or fork, awaiting a signal, or in progress.
func (st State) AsStatus() Status {
	switch st.Kind {
	case Completed:
		return Status{Kind: StatusCompleted}
	case Failed:
		return Status{Kind: StatusFailed, Error: st.Error}
	case Cancelled:
		return Status{Kind: StatusCancelled, Reason: st.Reason, By: st.By}
	case Paused:
		return Status{Kind: StatusPaused, Reason: st.Reason, By: st.By}
	}
	p := st.Position
	switch p.Kind {
	case AtDelay, AtFork:
		id := p.NodeID
		return Status{Kind: StatusWaiting, WakeAt: cloneTime(p.WakeAt), DelayID: &id}
	case AtSignal:
		id := p.NodeID
		return Status{Kind: StatusAwaitingSignal, SignalID: &id, SignalName: p.SignalName, WakeAt: cloneTime(p.WakeAt)}
	}
	return Status{Kind: StatusInProgress}
}

// CompletedOutput returns the final output, only for a completed state.
func (st State) CompletedOutput() ([]byte, bool) {
	if st.Kind == Completed {
		return st.FinalOutput, true
	}
	return nil, false
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}
