package workflow

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// StateKind names the five states of a snapshot. The strings are Sayiir's
// SnapshotStatus names.
type StateKind uint8

const (
	InProgress StateKind = iota // running or parked (delay, signal, fork)
	Completed                   // finished with a final output (terminal)
	Failed                      // finished with an error (terminal)
	Cancelled                   // stopped by a cancel request (terminal)
	Paused                      // parked by a pause request (not terminal)
)

var stateNames = [...]string{"InProgress", "Completed", "Failed", "Cancelled", "Paused"}

// String returns Sayiir's name: InProgress, Completed, Failed, Cancelled or Paused.
func (k StateKind) String() string {
	if int(k) < len(stateNames) {
		return stateNames[k]
	}
	return fmt.Sprintf("StateKind(%d)", uint8(k))
}

// ParseStateKind parses the names returned by [StateKind.String].
func ParseStateKind(s string) (StateKind, error) {
	for i, n := range stateNames {
		if n == s {
			return StateKind(i), nil
		}
	}
	return 0, fmt.Errorf("workflow: unknown state %q: valid states are InProgress, Completed, Failed, Cancelled, Paused", s)
}

// MarshalText implements [encoding.TextMarshaler].
func (k StateKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler].
func (k *StateKind) UnmarshalText(b []byte) error {
	v, err := ParseStateKind(string(b))
	*k = v
	return err
}

// Terminal reports whether k is Completed, Failed or Cancelled. Paused is
// not terminal.
func (k StateKind) Terminal() bool { return k == Completed || k == Failed || k == Cancelled }

// TaskHint describes the first (or next) task: its id and the scheduling
// metadata copied onto the snapshot.
type TaskHint struct {
	ID       TaskID   `json:"id"`
	Priority *uint8   `json:"priority,omitempty"` // 1 (highest) to 5; nil reads as 3
	Tags     []string `json:"tags,omitempty"`
}

// TaskDeadline is a durable per-task timeout.
type TaskDeadline struct {
	TaskID    TaskID    `json:"task_id"`
	Deadline  time.Time `json:"deadline"`
	TimeoutMS uint64    `json:"timeout_ms"`
}

// RetryPolicy is a task's retry configuration.
type RetryPolicy struct {
	MaxRetries        uint32        `json:"max_retries"`
	InitialDelay      time.Duration `json:"initial_delay"`
	BackoffMultiplier float64       `json:"backoff_multiplier"`
	MaxDelay          time.Duration `json:"max_delay,omitempty"`
}

// TaskRetryState is the durable retry and backoff state of one task.
type TaskRetryState struct {
	Attempts         uint32      `json:"attempts"`
	Policy           RetryPolicy `json:"policy"`
	LastError        string      `json:"last_error,omitempty"`
	LastFailedWorker string      `json:"last_failed_worker,omitempty"`
	NextRetryAt      time.Time   `json:"next_retry_at"`
}

// State is a snapshot's state: one of five kinds, each with its own fields.
// Fields that do not belong to Kind are zero.
type State struct {
	Kind StateKind `json:"kind"`

	// InProgress and Paused.
	Position          Position `json:"position,omitzero"`
	LastCompletedTask *TaskID  `json:"last_completed_task,omitempty"`
	// InProgress, Paused and Cancelled: task id → output.
	CompletedTasks map[TaskID][]byte `json:"completed_tasks,omitempty"`

	// Completed.
	FinalOutput []byte `json:"final_output,omitempty"`
	// Failed.
	Error string `json:"error,omitempty"`

	// Cancelled and Paused: the request that moved the workflow here.
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at,omitzero"`
	// Cancelled.
	InterruptedAtTask *TaskID `json:"interrupted_at_task,omitempty"`
}

// Snapshot is the current state of one workflow instance, as Sayiir's
// WorkflowSnapshot. In runlog it is never stored whole: it is the
// projection of the instance's events.
type Snapshot struct {
	InstanceID     string                    `json:"instance_id"`
	DefinitionHash DefinitionHash            `json:"definition_hash"`
	State          State                     `json:"state"`
	CreatedAt      time.Time                 `json:"created_at"`
	UpdatedAt      time.Time                 `json:"updated_at"`
	InitialInput   []byte                    `json:"initial_input,omitempty"`
	TaskDeadline   *TaskDeadline             `json:"task_deadline,omitempty"`
	TaskRetries    map[TaskID]TaskRetryState `json:"task_retries,omitempty"`
	LoopIterations map[TaskID]uint32         `json:"loop_iterations,omitempty"`
	TaskPriority   *uint8                    `json:"task_priority,omitempty"`
	TaskTags       []string                  `json:"task_tags,omitempty"`
	TraceParent    string                    `json:"trace_parent,omitempty"`

	// finished is the in-progress state a MarkCompleted or MarkFailed
	// left, for the save that writes the transition: the task results
	// completed since the last save are recorded with it (see
	// [Snapshot.FinishedFrom]). Not part of the snapshot's value.
	finished *State
}

// FinishedFrom returns the in-progress (or paused) state that
// [Snapshot.MarkCompleted] or [Snapshot.MarkFailed] replaced, and whether
// there was one: a save that finishes a workflow records the task results
// of that state that are not yet stored, in the same commit, so that a
// task completed and the workflow finished at once keep the task's
// result (returned by LoadTaskResult afterwards, as Sayiir's Postgres
// backend does). The snapshot's State follows Sayiir: a completed or
// failed workflow has no task results.
func (s *Snapshot) FinishedFrom() (State, bool) {
	if s.finished == nil {
		return State{}, false
	}
	return *s.finished, true
}

// NewSnapshot returns a snapshot in progress at [NotStarted] with the given
// input (Sayiir's with_initial_input), created at now.
func NewSnapshot(id string, def DefinitionHash, input []byte, now time.Time) *Snapshot {
	return &Snapshot{
		InstanceID:     id,
		DefinitionHash: def,
		State:          State{Kind: InProgress, Position: Position{Kind: NotStarted}},
		CreatedAt:      now,
		UpdatedAt:      now,
		InitialInput:   input,
	}
}

// Clone returns a deep copy of s.
func (s *Snapshot) Clone() *Snapshot {
	if s == nil {
		return nil
	}
	c := *s
	c.State = s.State.Clone()
	c.InitialInput = slices.Clone(s.InitialInput)
	if s.TaskDeadline != nil {
		d := *s.TaskDeadline
		c.TaskDeadline = &d
	}
	c.TaskRetries = maps.Clone(s.TaskRetries)
	c.LoopIterations = maps.Clone(s.LoopIterations)
	if s.TaskPriority != nil {
		p := *s.TaskPriority
		c.TaskPriority = &p
	}
	c.TaskTags = slices.Clone(s.TaskTags)
	if s.finished != nil {
		f := s.finished.Clone()
		c.finished = &f
	}
	return &c
}

// Clone returns a deep copy of st.
func (st State) Clone() State {
	c := st
	c.Position = st.Position.Clone()
	if st.LastCompletedTask != nil {
		t := *st.LastCompletedTask
		c.LastCompletedTask = &t
	}
	if st.CompletedTasks != nil {
		c.CompletedTasks = make(map[TaskID][]byte, len(st.CompletedTasks))
		for k, v := range st.CompletedTasks {
			c.CompletedTasks[k] = slices.Clone(v)
		}
	}
	c.FinalOutput = slices.Clone(st.FinalOutput)
	if st.InterruptedAtTask != nil {
		t := *st.InterruptedAtTask
		c.InterruptedAtTask = &t
	}
	return c
}

// CurrentTaskPriority returns the current task's priority, 3 when unset.
func (s *Snapshot) CurrentTaskPriority() uint8 {
	if s.TaskPriority == nil {
		return 3
	}
	return *s.TaskPriority
}

// SetTaskHint copies the hint's priority and tags onto the snapshot. It does
// not change UpdatedAt.
func (s *Snapshot) SetTaskHint(h TaskHint) {
	if h.Priority != nil {
		p := *h.Priority
		s.TaskPriority = &p
	} else {
		s.TaskPriority = nil
	}
	s.TaskTags = slices.Clone(h.Tags)
}

// UpdatePosition moves an in-progress snapshot to pos and reports whether it
// did; on any other state it does nothing.
func (s *Snapshot) UpdatePosition(pos Position, now time.Time) bool {
	if s.State.Kind != InProgress {
		return false
	}
	s.State.Position = pos
	s.UpdatedAt = now
	return true
}

// MarkTaskCompleted records a task's output on an in-progress snapshot and
// reports whether it did; on any other state it does nothing.
func (s *Snapshot) MarkTaskCompleted(id TaskID, output []byte, now time.Time) bool {
	if s.State.Kind != InProgress {
		return false
	}
	if s.State.CompletedTasks == nil {
		s.State.CompletedTasks = make(map[TaskID][]byte)
	}
	s.State.CompletedTasks[id] = output
	t := id
	s.State.LastCompletedTask = &t
	s.UpdatedAt = now
	return true
}

// MarkCompleted finishes the workflow with output, from any state. Task
// results, the deadline, retries and loop counters are dropped from the
// snapshot; a save of it still records the results completed before it
// (see [Snapshot.FinishedFrom]).
func (s *Snapshot) MarkCompleted(output []byte, now time.Time) {
	s.finish(State{Kind: Completed, FinalOutput: output}, now)
}

// MarkFailed finishes the workflow with an error, from any state, as
// [Snapshot.MarkCompleted] does.
func (s *Snapshot) MarkFailed(msg string, now time.Time) {
	s.finish(State{Kind: Failed, Error: msg}, now)
}

func (s *Snapshot) finish(to State, now time.Time) {
	if k := s.State.Kind; k == InProgress || k == Paused {
		from := s.State
		s.finished = &from
	}
	s.State = to
	s.clearTransient()
	s.UpdatedAt = now
}

// MarkCancelled stops the workflow, from any state. Completed task results
// are kept only when it was in progress.
func (s *Snapshot) MarkCancelled(req SignalRequest, interruptedAt *TaskID, now time.Time) {
	var tasks map[TaskID][]byte
	if s.State.Kind == InProgress {
		tasks = s.State.CompletedTasks
	}
	s.State = State{Kind: Cancelled, Reason: req.Reason, By: req.RequestedBy, At: req.RequestedAt,
		CompletedTasks: tasks, InterruptedAtTask: interruptedAt}
	s.TaskDeadline = nil
	s.UpdatedAt = now
}

// MarkPaused parks an in-progress workflow and reports whether it did; the
// position and results are kept.
func (s *Snapshot) MarkPaused(req SignalRequest, now time.Time) bool {
	if s.State.Kind != InProgress {
		return false
	}
	st := s.State
	s.State = State{Kind: Paused, Position: st.Position, LastCompletedTask: st.LastCompletedTask,
		CompletedTasks: st.CompletedTasks, Reason: req.Reason, By: req.RequestedBy, At: req.RequestedAt}
	s.TaskDeadline = nil
	s.UpdatedAt = now
	return true
}

// MarkUnpaused resumes a paused workflow at the same position and reports
// whether it did.
func (s *Snapshot) MarkUnpaused(now time.Time) bool {
	if s.State.Kind != Paused {
		return false
	}
	st := s.State
	s.State = State{Kind: InProgress, Position: st.Position, LastCompletedTask: st.LastCompletedTask,
		CompletedTasks: st.CompletedTasks}
	s.UpdatedAt = now
	return true
}

func (s *Snapshot) clearTransient() {
	s.TaskDeadline = nil
	s.TaskRetries = nil
	s.LoopIterations = nil
}

// CurrentTaskID returns the task an in-progress snapshot is positioned at.
func (s *Snapshot) CurrentTaskID() (TaskID, bool) {
	if s.State.Kind == InProgress && s.State.Position.Kind == AtTask {
		return s.State.Position.TaskID, true
	}
	return TaskID{}, false
}

// CompletedTaskCount returns the number of stored task results.
func (s *Snapshot) CompletedTaskCount() int { return len(s.State.CompletedTasks) }

// TaskResult returns a stored task output.
func (s *Snapshot) TaskResult(id TaskID) ([]byte, bool) {
	out, ok := s.State.CompletedTasks[id]
	return out, ok
}
