package events

import (
	"time"

	"github.com/runlog/runlog/workflow"
)

// Type names an event. Types are stable strings: they are stored, and
// consumers filter on them. They are never derived from Go type names.
type Type string

// The event vocabulary. docs/EVENTS.md describes each payload.
const (
	// SnapshotCreated starts a new run: a fresh snapshot in progress,
	// positioned at the first task. The event's Run is the new run's id.
	SnapshotCreated Type = "snapshot.created"
	// SnapshotDeleted removes the instance's snapshot. The history stays.
	SnapshotDeleted Type = "snapshot.deleted"
	// SignalStored records a pending cancel or pause request (latest wins).
	SignalStored Type = "signal.stored"
	// SignalCleared drops a pending cancel or pause request.
	SignalCleared Type = "signal.cleared"
)

// Payload is the type-specific body of an event.
type Payload interface {
	// EventType returns the type this payload belongs to.
	EventType() Type
}

// SnapshotCreatedData is the payload of [SnapshotCreated].
type SnapshotCreatedData struct {
	DefinitionHash workflow.DefinitionHash `json:"definition_hash"`
	Input          []byte                  `json:"input,omitempty"` // base64 in JSON
	FirstTask      workflow.TaskHint       `json:"first_task"`
	Policy         string                  `json:"policy,omitempty"` // the conflict policy of the PrepareRun that created it
	TraceParent    string                  `json:"trace_parent,omitempty"`
}

// SnapshotDeletedData is the payload of [SnapshotDeleted].
type SnapshotDeletedData struct {
	Reason string `json:"reason,omitempty"`
}

// SignalStoredData is the payload of [SignalStored].
type SignalStoredData struct {
	Kind        workflow.SignalKind `json:"kind"`
	Reason      string              `json:"reason,omitempty"`
	RequestedBy string              `json:"requested_by,omitempty"`
	RequestedAt time.Time           `json:"requested_at"`
}

// Request returns the stored request.
func (d *SignalStoredData) Request() workflow.SignalRequest {
	return workflow.SignalRequest{Reason: d.Reason, RequestedBy: d.RequestedBy, RequestedAt: d.RequestedAt}
}

// SignalClearedData is the payload of [SignalCleared].
type SignalClearedData struct {
	Kind   workflow.SignalKind `json:"kind"`
	Reason string              `json:"reason,omitempty"` // why: "terminate_existing", "applied", "cleared", "deleted"
}

func (*SnapshotCreatedData) EventType() Type { return SnapshotCreated }
func (*SnapshotDeletedData) EventType() Type { return SnapshotDeleted }
func (*SignalStoredData) EventType() Type    { return SignalStored }
func (*SignalClearedData) EventType() Type   { return SignalCleared }

// registry maps each known type to a constructor of its payload.
var registry = map[Type]func() Payload{
	SnapshotCreated: func() Payload { return new(SnapshotCreatedData) },
	SnapshotDeleted: func() Payload { return new(SnapshotDeletedData) },
	SignalStored:    func() Payload { return new(SignalStoredData) },
	SignalCleared:   func() Payload { return new(SignalClearedData) },
}

// Known reports whether t is part of this version's vocabulary.
func Known(t Type) bool { _, ok := registry[t]; return ok }
