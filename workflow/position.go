package workflow

import (
	"fmt"
	"slices"
	"time"
)

// PositionKind names the seven execution positions. The strings are
// Sayiir's pinned position_kind names.
type PositionKind uint8

const (
	NotStarted PositionKind = iota // nothing executed yet
	AtTask                         // the next task to execute is TaskID
	AtFork                         // parked in a fork because a branch waits
	AtJoin                         // all branches done, joining
	AtDelay                        // parked until WakeAt
	AtSignal                       // parked until an external event named SignalName
	InLoop                         // inside a loop at Iteration
)

var positionNames = [...]string{"NotStarted", "AtTask", "AtFork", "AtJoin", "AtDelay", "AtSignal", "InLoop"}

// String returns Sayiir's name, such as "AtTask".
func (k PositionKind) String() string {
	if int(k) < len(positionNames) {
		return positionNames[k]
	}
	return fmt.Sprintf("PositionKind(%d)", uint8(k))
}

// ParsePositionKind parses the names returned by [PositionKind.String].
func ParsePositionKind(s string) (PositionKind, error) {
	for i, n := range positionNames {
		if n == s {
			return PositionKind(i), nil
		}
	}
	return 0, fmt.Errorf("workflow: unknown position kind %q", s)
}

// MarshalText implements [encoding.TextMarshaler].
func (k PositionKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler].
func (k *PositionKind) UnmarshalText(b []byte) error {
	v, err := ParsePositionKind(string(b))
	*k = v
	return err
}

// TaskResult is one task's output.
type TaskResult struct {
	TaskID TaskID `json:"task_id"`
	Output []byte `json:"output"`
}

// Position is where an in-progress (or paused) workflow stands. Only the
// fields of Kind are set:
//
//	NotStarted  -
//	AtTask      TaskID
//	AtFork      NodeID (fork id), Branches, WakeAt
//	AtJoin      NodeID (join id), Branches
//	AtDelay     NodeID (delay id), EnteredAt, WakeAt, NextTaskID
//	AtSignal    NodeID (signal id), SignalName, WakeAt (optional), NextTaskID
//	InLoop      NodeID (loop id), Iteration (0-based), NextTaskID
type Position struct {
	Kind       PositionKind          `json:"kind"`
	TaskID     TaskID                `json:"task_id,omitzero"`
	NodeID     TaskID                `json:"node_id,omitzero"`
	Branches   map[string]TaskResult `json:"branches,omitempty"`
	EnteredAt  time.Time             `json:"entered_at,omitzero"`
	WakeAt     *time.Time            `json:"wake_at,omitempty"`
	NextTaskID *TaskID               `json:"next_task_id,omitempty"`
	SignalName string                `json:"signal_name,omitempty"`
	Iteration  uint32                `json:"iteration,omitempty"`
}

// IsZero reports whether p is NotStarted with no fields set.
func (p Position) IsZero() bool {
	return p.Kind == NotStarted && p.TaskID.IsZero() && p.NodeID.IsZero() && len(p.Branches) == 0 &&
		p.EnteredAt.IsZero() && p.WakeAt == nil && p.NextTaskID == nil && p.SignalName == "" && p.Iteration == 0
}

// Clone returns a deep copy of p.
func (p Position) Clone() Position {
	c := p
	if p.Branches != nil {
		c.Branches = make(map[string]TaskResult, len(p.Branches))
		for k, v := range p.Branches {
			c.Branches[k] = TaskResult{TaskID: v.TaskID, Output: slices.Clone(v.Output)}
		}
	}
	if p.WakeAt != nil {
		t := *p.WakeAt
		c.WakeAt = &t
	}
	if p.NextTaskID != nil {
		t := *p.NextTaskID
		c.NextTaskID = &t
	}
	return c
}

// Equal reports whether p and q are the same position.
func (p Position) Equal(q Position) bool {
	if p.Kind != q.Kind || p.TaskID != q.TaskID || p.NodeID != q.NodeID || !p.EnteredAt.Equal(q.EnteredAt) ||
		p.SignalName != q.SignalName || p.Iteration != q.Iteration || len(p.Branches) != len(q.Branches) {
		return false
	}
	if (p.WakeAt == nil) != (q.WakeAt == nil) || p.WakeAt != nil && !p.WakeAt.Equal(*q.WakeAt) {
		return false
	}
	if (p.NextTaskID == nil) != (q.NextTaskID == nil) || p.NextTaskID != nil && *p.NextTaskID != *q.NextTaskID {
		return false
	}
	for k, v := range p.Branches {
		w, ok := q.Branches[k]
		if !ok || v.TaskID != w.TaskID || string(v.Output) != string(w.Output) {
			return false
		}
	}
	return true
}

// AtTaskPosition returns the position "about to run task id".
func AtTaskPosition(id TaskID) Position { return Position{Kind: AtTask, TaskID: id} }
