package events

import (
	"time"

	"github.com/oklog/ulid/v2"

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
	// TaskCompleted records one task's output (a fork branch's result, or
	// a task finished while paused).
	TaskCompleted Type = "task.completed"
	// CheckpointSaved records what a checkpoint changed: only the fields
	// that differ from the projected snapshot.
	CheckpointSaved Type = "checkpoint.saved"
	// WorkflowCompleted finishes the run with its output (terminal).
	WorkflowCompleted Type = "workflow.completed"
	// WorkflowFailed finishes the run with an error (terminal).
	WorkflowFailed Type = "workflow.failed"
	// WorkflowCancelled stops the run (terminal).
	WorkflowCancelled Type = "workflow.cancelled"
	// WorkflowPaused parks the run.
	WorkflowPaused Type = "workflow.paused"
	// WorkflowUnpaused resumes a paused run at the same position.
	WorkflowUnpaused Type = "workflow.unpaused"
	// EventSent buffers a named external event for the instance.
	EventSent Type = "event.sent"
	// EventConsumed removes the oldest buffered external event of a name.
	EventConsumed Type = "event.consumed"
	// TaskClaimed records that a worker claimed a task of the current run
	// (a lease: docs/WORKERS.md), or took over a claim whose lease had
	// ended. The event's own id identifies the claim.
	TaskClaimed Type = "task.claimed"
	// TaskClaimReleased ends a claim: released by its worker (on its own,
	// or in the commit of the checkpoint that finished the task).
	TaskClaimReleased Type = "task.claim_released"
	// DefinitionRegistered records a workflow definition's names in the
	// store's definition catalog (lifecycle.Config.Catalog): a log of its
	// own, with one history per definition hash holding this one event.
	// Instance histories never hold it.
	DefinitionRegistered Type = "definition.registered"
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
	// Workflow names the definition (workflow, version, task names), when
	// the caller gave it and the instance's history does not hold it yet:
	// recorded once per definition per history, so a history reads by
	// name on its own (docs/EVENTS.md).
	Workflow *workflow.Definition `json:"workflow,omitempty"`
}

// SnapshotDeletedData is the payload of [SnapshotDeleted].
type SnapshotDeletedData struct {
	Reason string `json:"reason,omitempty"`
	// DiscardedEvents counts the buffered external events deleted with the
	// snapshot.
	DiscardedEvents int `json:"discarded_events,omitempty"`
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

// TaskCompletedData is the payload of [TaskCompleted].
type TaskCompletedData struct {
	TaskID workflow.TaskID `json:"task_id"`
	Output []byte          `json:"output,omitempty"`
}

// HintChange replaces the current task's priority and tags.
type HintChange struct {
	Priority *uint8   `json:"priority,omitempty"`
	Tags     []string `json:"tags,omitempty"`
}

// CheckpointSavedData is the payload of [CheckpointSaved]. Every field is
// optional and present only when it changed, so a workflow of N tasks
// writes O(N) bytes of history.
type CheckpointSavedData struct {
	Position          *workflow.Position                          `json:"position,omitempty"`
	Completed         TaskOutputs                                 `json:"completed,omitempty"`           // results added or changed (a map on the wire)
	Removed           []workflow.TaskID                           `json:"removed,omitempty"`             // results removed
	LastCompletedTask *workflow.TaskID                            `json:"last_completed_task,omitempty"` // absent with one result in Completed: that task
	Hint              *HintChange                                 `json:"hint,omitempty"`
	Deadline          *workflow.TaskDeadline                      `json:"deadline,omitempty"`
	ClearDeadline     bool                                        `json:"clear_deadline,omitempty"`
	Retries           map[workflow.TaskID]workflow.TaskRetryState `json:"retries,omitempty"`
	RemovedRetries    []workflow.TaskID                           `json:"removed_retries,omitempty"`
	Loops             map[workflow.TaskID]uint32                  `json:"loops,omitempty"`
	RemovedLoops      []workflow.TaskID                           `json:"removed_loops,omitempty"`
	TraceParent       *string                                     `json:"trace_parent,omitempty"`
}

// Empty reports whether the checkpoint changes nothing.
func (d *CheckpointSavedData) Empty() bool {
	return d.Position == nil && len(d.Completed) == 0 && len(d.Removed) == 0 && d.LastCompletedTask == nil &&
		d.Hint == nil && d.Deadline == nil && !d.ClearDeadline && len(d.Retries) == 0 && len(d.RemovedRetries) == 0 &&
		len(d.Loops) == 0 && len(d.RemovedLoops) == 0 && d.TraceParent == nil
}

// WorkflowCompletedData is the payload of [WorkflowCompleted].
type WorkflowCompletedData struct {
	Output []byte `json:"output,omitempty"`
}

// WorkflowFailedData is the payload of [WorkflowFailed].
type WorkflowFailedData struct {
	Error string `json:"error"`
}

// WorkflowCancelledData is the payload of [WorkflowCancelled].
type WorkflowCancelledData struct {
	Reason            string           `json:"reason,omitempty"`
	By                string           `json:"by,omitempty"`
	At                time.Time        `json:"at"`
	InterruptedAtTask *workflow.TaskID `json:"interrupted_at_task,omitempty"`
}

// WorkflowPausedData is the payload of [WorkflowPaused].
type WorkflowPausedData struct {
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
}

// WorkflowUnpausedData is the payload of [WorkflowUnpaused].
type WorkflowUnpausedData struct{}

// EventSentData is the payload of [EventSent]. The event's own id
// identifies the buffered event.
type EventSentData struct {
	Name    string `json:"name"`
	Payload []byte `json:"payload,omitempty"`
}

// EventConsumedData is the payload of [EventConsumed].
type EventConsumedData struct {
	Name    string    `json:"name"`
	EventID ulid.ULID `json:"event_id"` // the id of the EventSent event consumed
}

// TaskClaimedData is the payload of [TaskClaimed].
type TaskClaimedData struct {
	TaskID workflow.TaskID `json:"task_id"`
	Worker string          `json:"worker"`
	// TTLMS is the lease's time to live in milliseconds as the worker
	// asked for it; 0: it never expires. Expiry is judged by the lease
	// store (the server's clock), not from this value.
	TTLMS uint64 `json:"ttl_ms,omitempty"`
	// TakenOver names the claim this one took over, whose lease had
	// ended without a release; nil for a claim of an unclaimed task.
	TakenOver *ClaimRef `json:"taken_over,omitempty"`
}

// ClaimRef names a claim: its id (the id of its TaskClaimed event) and
// its worker.
type ClaimRef struct {
	Claim  ulid.ULID `json:"claim"`
	Worker string    `json:"worker"`
}

// TaskClaimReleasedData is the payload of [TaskClaimReleased].
type TaskClaimReleasedData struct {
	TaskID workflow.TaskID `json:"task_id"`
	Claim  ulid.ULID       `json:"claim"` // the id of the TaskClaimed event
	Worker string          `json:"worker"`
	Reason string          `json:"reason,omitempty"` // "released", "checkpoint"
}

// DefinitionRegisteredData is the payload of [DefinitionRegistered].
type DefinitionRegisteredData struct {
	DefinitionHash workflow.DefinitionHash `json:"definition_hash"`
	Workflow       *workflow.Definition    `json:"workflow"`
}

func (*DefinitionRegisteredData) EventType() Type { return DefinitionRegistered }

func (*TaskClaimedData) EventType() Type       { return TaskClaimed }
func (*TaskClaimReleasedData) EventType() Type { return TaskClaimReleased }

func (*TaskCompletedData) EventType() Type     { return TaskCompleted }
func (*CheckpointSavedData) EventType() Type   { return CheckpointSaved }
func (*WorkflowCompletedData) EventType() Type { return WorkflowCompleted }
func (*WorkflowFailedData) EventType() Type    { return WorkflowFailed }
func (*WorkflowCancelledData) EventType() Type { return WorkflowCancelled }
func (*WorkflowPausedData) EventType() Type    { return WorkflowPaused }
func (*WorkflowUnpausedData) EventType() Type  { return WorkflowUnpaused }
func (*EventSentData) EventType() Type         { return EventSent }
func (*EventConsumedData) EventType() Type     { return EventConsumed }
