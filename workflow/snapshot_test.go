package workflow_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/runlog/runlog/workflow"
)

var (
	t0     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	t1     = t0.Add(time.Second)
	def    = workflow.DefinitionHashOf("def-1")
	taskA  = workflow.NewTaskID("a")
	taskB  = workflow.NewTaskID("b")
	node   = workflow.NewTaskID("node")
	wakeAt = t0.Add(time.Hour)
)

func ptr[T any](v T) *T { return &v }

// states returns a snapshot in each of the five states, each with task
// results, a deadline, retries, loop counters and a hint, so that the
// transitions can be seen to keep or drop them.
func states() map[workflow.StateKind]*workflow.Snapshot {
	base := func() *workflow.Snapshot {
		s := workflow.NewSnapshot("id-1", def, []byte("in"), t0)
		s.UpdatePosition(workflow.AtTaskPosition(taskB), t0)
		s.MarkTaskCompleted(taskA, []byte("out-a"), t0)
		s.TaskDeadline = &workflow.TaskDeadline{TaskID: taskB, Deadline: wakeAt, TimeoutMS: 1000}
		s.TaskRetries = map[workflow.TaskID]workflow.TaskRetryState{taskB: {Attempts: 1, LastError: "boom", NextRetryAt: wakeAt}}
		s.LoopIterations = map[workflow.TaskID]uint32{node: 2}
		s.SetTaskHint(workflow.TaskHint{ID: taskB, Priority: ptr[uint8](1), Tags: []string{"gpu"}})
		return s
	}
	req := workflow.SignalRequest{Reason: "r", RequestedBy: "ops", RequestedAt: t0}
	m := map[workflow.StateKind]*workflow.Snapshot{}
	m[workflow.InProgress] = base()
	s := base()
	s.MarkCompleted([]byte("final"), t0)
	m[workflow.Completed] = s
	s = base()
	s.MarkFailed("exploded", t0)
	m[workflow.Failed] = s
	s = base()
	s.MarkCancelled(req, ptr(taskB), t0)
	m[workflow.Cancelled] = s
	s = base()
	s.MarkPaused(req, t0)
	m[workflow.Paused] = s
	for k, s := range m {
		if s.State.Kind != k {
			panic("fixture in the wrong state")
		}
	}
	return m
}

var allStates = []workflow.StateKind{workflow.InProgress, workflow.Completed, workflow.Failed, workflow.Cancelled, workflow.Paused}

func TestNewSnapshot(t *testing.T) {
	t.Parallel()
	s := workflow.NewSnapshot("id-1", def, []byte("in"), t0)
	if s.InstanceID != "id-1" || s.DefinitionHash != def || string(s.InitialInput) != "in" {
		t.Fatalf("NewSnapshot = %+v", s)
	}
	if s.State.Kind != workflow.InProgress || s.State.Position.Kind != workflow.NotStarted {
		t.Errorf("state = %v at %v, want InProgress at NotStarted", s.State.Kind, s.State.Position.Kind)
	}
	if !s.CreatedAt.Equal(t0) || !s.UpdatedAt.Equal(t0) {
		t.Errorf("times = %v, %v", s.CreatedAt, s.UpdatedAt)
	}
	if s.CompletedTaskCount() != 0 || s.State.LastCompletedTask != nil {
		t.Error("a new snapshot has results")
	}
	if s.CurrentTaskPriority() != 3 {
		t.Errorf("CurrentTaskPriority() = %d, want 3 when unset", s.CurrentTaskPriority())
	}
	if _, ok := s.CurrentTaskID(); ok {
		t.Error("CurrentTaskID of a NotStarted snapshot is set")
	}
}

func TestStateKind(t *testing.T) {
	t.Parallel()
	terminal := map[workflow.StateKind]bool{workflow.Completed: true, workflow.Failed: true, workflow.Cancelled: true}
	for _, k := range allStates {
		if k.Terminal() != terminal[k] {
			t.Errorf("%v.Terminal() = %v", k, k.Terminal())
		}
		back, err := workflow.ParseStateKind(k.String())
		if err != nil || back != k {
			t.Errorf("ParseStateKind(%q) = %v, %v", k.String(), back, err)
		}
	}
	if _, err := workflow.ParseStateKind("Running"); err == nil {
		t.Error("ParseStateKind(Running) = nil error")
	}
}

func TestSetTaskHint(t *testing.T) {
	t.Parallel()
	s := workflow.NewSnapshot("id", def, nil, t0)
	tags := []string{"gpu", "eu"}
	s.SetTaskHint(workflow.TaskHint{ID: taskA, Priority: ptr[uint8](5), Tags: tags})
	if s.CurrentTaskPriority() != 5 || !reflect.DeepEqual(s.TaskTags, tags) {
		t.Fatalf("hint not copied: %v %v", s.TaskPriority, s.TaskTags)
	}
	if !s.UpdatedAt.Equal(t0) {
		t.Error("SetTaskHint changed UpdatedAt")
	}
	tags[0] = "changed"
	if s.TaskTags[0] != "gpu" {
		t.Error("SetTaskHint aliases the hint's tags")
	}
	s.SetTaskHint(workflow.TaskHint{ID: taskB})
	if s.TaskPriority != nil || len(s.TaskTags) != 0 {
		t.Errorf("an empty hint left %v %v", s.TaskPriority, s.TaskTags)
	}
}

func TestUpdatePosition(t *testing.T) {
	t.Parallel()
	pos := workflow.Position{Kind: workflow.AtDelay, NodeID: node, EnteredAt: t0, WakeAt: ptr(wakeAt), NextTaskID: ptr(taskB)}
	for _, k := range allStates {
		t.Run(k.String(), func(t *testing.T) {
			t.Parallel()
			s := states()[k]
			before := s.Clone()
			ok := s.UpdatePosition(pos, t1)
			if want := k == workflow.InProgress; ok != want {
				t.Fatalf("UpdatePosition on %v = %v, want %v", k, ok, want)
			}
			if !ok {
				if !reflect.DeepEqual(s, before) {
					t.Errorf("refused UpdatePosition changed the snapshot:\n got %+v\nwant %+v", s, before)
				}
				return
			}
			if !s.State.Position.Equal(pos) || !s.UpdatedAt.Equal(t1) {
				t.Errorf("position %+v updated %v", s.State.Position, s.UpdatedAt)
			}
			if s.CompletedTaskCount() != 1 {
				t.Error("UpdatePosition dropped results")
			}
		})
	}
}

func TestMarkTaskCompleted(t *testing.T) {
	t.Parallel()
	for _, k := range allStates {
		t.Run(k.String(), func(t *testing.T) {
			t.Parallel()
			s := states()[k]
			before := s.Clone()
			ok := s.MarkTaskCompleted(taskB, []byte("out-b"), t1)
			if want := k == workflow.InProgress; ok != want {
				t.Fatalf("MarkTaskCompleted on %v = %v, want %v", k, ok, want)
			}
			if !ok {
				if !reflect.DeepEqual(s, before) {
					t.Errorf("refused MarkTaskCompleted changed the snapshot")
				}
				return
			}
			if out, ok := s.TaskResult(taskB); !ok || string(out) != "out-b" {
				t.Errorf("TaskResult(b) = %q, %v", out, ok)
			}
			if out, ok := s.TaskResult(taskA); !ok || string(out) != "out-a" {
				t.Errorf("earlier result lost: %q, %v", out, ok)
			}
			if s.State.LastCompletedTask == nil || *s.State.LastCompletedTask != taskB {
				t.Errorf("LastCompletedTask = %v", s.State.LastCompletedTask)
			}
			if !s.UpdatedAt.Equal(t1) || s.CompletedTaskCount() != 2 {
				t.Errorf("UpdatedAt %v count %d", s.UpdatedAt, s.CompletedTaskCount())
			}
		})
	}
	// The first result on a snapshot with no map.
	s := workflow.NewSnapshot("id", def, nil, t0)
	if !s.MarkTaskCompleted(taskA, nil, t1) || s.CompletedTaskCount() != 1 {
		t.Error("MarkTaskCompleted on a fresh snapshot")
	}
}

func TestMarkCompletedAndFailed(t *testing.T) {
	t.Parallel()
	for _, k := range allStates {
		for _, mark := range []string{"completed", "failed"} {
			t.Run(k.String()+"/"+mark, func(t *testing.T) {
				t.Parallel()
				s := states()[k]
				var want workflow.State
				if mark == "completed" {
					s.MarkCompleted([]byte("result"), t1)
					want = workflow.State{Kind: workflow.Completed, FinalOutput: []byte("result")}
				} else {
					s.MarkFailed("bad", t1)
					want = workflow.State{Kind: workflow.Failed, Error: "bad"}
				}
				if !reflect.DeepEqual(s.State, want) {
					t.Errorf("state = %+v, want %+v (results and position dropped)", s.State, want)
				}
				if s.TaskDeadline != nil || s.TaskRetries != nil || s.LoopIterations != nil {
					t.Errorf("deadline %v retries %v loops %v not dropped", s.TaskDeadline, s.TaskRetries, s.LoopIterations)
				}
				if !s.UpdatedAt.Equal(t1) {
					t.Errorf("UpdatedAt = %v", s.UpdatedAt)
				}
				if s.CompletedTaskCount() != 0 {
					t.Error("results kept")
				}
				if s.InstanceID != "id-1" || s.DefinitionHash != def || string(s.InitialInput) != "in" || !s.CreatedAt.Equal(t0) {
					t.Error("identity fields changed")
				}
			})
		}
	}
}

func TestMarkCancelled(t *testing.T) {
	t.Parallel()
	req := workflow.SignalRequest{Reason: "stop", RequestedBy: "alice", RequestedAt: t1}
	for _, k := range allStates {
		t.Run(k.String(), func(t *testing.T) {
			t.Parallel()
			s := states()[k]
			s.MarkCancelled(req, ptr(taskB), t1)
			st := s.State
			if st.Kind != workflow.Cancelled || st.Reason != "stop" || st.By != "alice" || !st.At.Equal(t1) {
				t.Fatalf("state = %+v", st)
			}
			if st.InterruptedAtTask == nil || *st.InterruptedAtTask != taskB {
				t.Errorf("InterruptedAtTask = %v", st.InterruptedAtTask)
			}
			keep := k == workflow.InProgress
			if got := s.CompletedTaskCount() == 1; got != keep {
				t.Errorf("results kept = %v, want %v (only from InProgress)", got, keep)
			}
			if !st.Position.IsZero() || st.LastCompletedTask != nil || st.FinalOutput != nil || st.Error != "" {
				t.Errorf("fields of other states remain: %+v", st)
			}
			if s.TaskDeadline != nil {
				t.Error("deadline kept")
			}
			if !s.UpdatedAt.Equal(t1) {
				t.Errorf("UpdatedAt = %v", s.UpdatedAt)
			}
		})
	}
	s := states()[workflow.InProgress]
	s.MarkCancelled(workflow.SignalRequest{}, nil, t1)
	if s.State.InterruptedAtTask != nil {
		t.Error("nil interrupted task became set")
	}
}

func TestMarkPaused(t *testing.T) {
	t.Parallel()
	req := workflow.SignalRequest{Reason: "maintenance", RequestedBy: "bob", RequestedAt: t1}
	for _, k := range allStates {
		t.Run(k.String(), func(t *testing.T) {
			t.Parallel()
			s := states()[k]
			before := s.Clone()
			ok := s.MarkPaused(req, t1)
			if want := k == workflow.InProgress; ok != want {
				t.Fatalf("MarkPaused on %v = %v, want %v", k, ok, want)
			}
			if !ok {
				if !reflect.DeepEqual(s, before) {
					t.Error("refused MarkPaused changed the snapshot")
				}
				return
			}
			st := s.State
			if st.Kind != workflow.Paused || st.Reason != "maintenance" || st.By != "bob" || !st.At.Equal(t1) {
				t.Fatalf("state = %+v", st)
			}
			if !st.Position.Equal(before.State.Position) {
				t.Errorf("position %+v, want %+v kept", st.Position, before.State.Position)
			}
			if !reflect.DeepEqual(st.CompletedTasks, before.State.CompletedTasks) || !reflect.DeepEqual(st.LastCompletedTask, before.State.LastCompletedTask) {
				t.Error("results or last task not kept")
			}
			if s.TaskDeadline != nil {
				t.Error("deadline kept")
			}
			if !s.UpdatedAt.Equal(t1) {
				t.Errorf("UpdatedAt = %v", s.UpdatedAt)
			}
		})
	}
}

func TestMarkUnpaused(t *testing.T) {
	t.Parallel()
	for _, k := range allStates {
		t.Run(k.String(), func(t *testing.T) {
			t.Parallel()
			s := states()[k]
			before := s.Clone()
			ok := s.MarkUnpaused(t1)
			if want := k == workflow.Paused; ok != want {
				t.Fatalf("MarkUnpaused on %v = %v, want %v", k, ok, want)
			}
			if !ok {
				if !reflect.DeepEqual(s, before) {
					t.Error("refused MarkUnpaused changed the snapshot")
				}
				return
			}
			want := workflow.State{Kind: workflow.InProgress, Position: before.State.Position,
				LastCompletedTask: before.State.LastCompletedTask, CompletedTasks: before.State.CompletedTasks}
			if !reflect.DeepEqual(s.State, want) {
				t.Errorf("state = %+v, want %+v", s.State, want)
			}
			if !s.UpdatedAt.Equal(t1) {
				t.Errorf("UpdatedAt = %v", s.UpdatedAt)
			}
		})
	}
	// Pause then unpause gives back the in-progress state.
	s := states()[workflow.InProgress]
	orig := s.State.Clone()
	s.MarkPaused(workflow.SignalRequest{Reason: "x"}, t1)
	s.MarkUnpaused(t1)
	if !reflect.DeepEqual(s.State, orig) {
		t.Errorf("pause+unpause = %+v, want %+v", s.State, orig)
	}
}

func TestCurrentTaskID(t *testing.T) {
	t.Parallel()
	for k, s := range states() {
		id, ok := s.CurrentTaskID()
		if want := k == workflow.InProgress; ok != want || ok && id != taskB {
			t.Errorf("%v: CurrentTaskID = %v, %v", k, id, ok)
		}
	}
	s := states()[workflow.InProgress]
	s.UpdatePosition(workflow.Position{Kind: workflow.AtJoin, NodeID: node}, t1)
	if _, ok := s.CurrentTaskID(); ok {
		t.Error("CurrentTaskID set at a join")
	}
}

// fullSnapshot sets every field, with every pointer, map and slice non-nil.
func fullSnapshot() *workflow.Snapshot {
	s := workflow.NewSnapshot("id-1", def, []byte("input"), t0)
	s.State.Position = workflow.Position{
		Kind:       workflow.AtFork,
		NodeID:     node,
		Branches:   map[string]workflow.TaskResult{"left": {TaskID: taskA, Output: []byte("left-out")}},
		EnteredAt:  t0,
		WakeAt:     ptr(wakeAt),
		NextTaskID: ptr(taskB),
	}
	s.State.CompletedTasks = map[workflow.TaskID][]byte{taskA: []byte("out-a")}
	s.State.LastCompletedTask = ptr(taskA)
	s.State.InterruptedAtTask = ptr(taskA)
	s.State.FinalOutput = []byte("final")
	s.TaskDeadline = &workflow.TaskDeadline{TaskID: taskB, Deadline: wakeAt, TimeoutMS: 5}
	s.TaskRetries = map[workflow.TaskID]workflow.TaskRetryState{taskB: {Attempts: 2, LastError: "e"}}
	s.LoopIterations = map[workflow.TaskID]uint32{node: 3}
	s.TaskPriority = ptr[uint8](2)
	s.TaskTags = []string{"gpu"}
	return s
}

func TestSnapshotCloneIsDeep(t *testing.T) {
	t.Parallel()
	orig := fullSnapshot()
	want, err := json.Marshal(orig)
	if err != nil {
		t.Fatal(err)
	}
	c := orig.Clone()
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("Clone differs from the original:\n got %+v\nwant %+v", c, orig)
	}

	mutations := []struct {
		name string
		fn   func(c *workflow.Snapshot)
	}{
		{"initial input bytes", func(c *workflow.Snapshot) { c.InitialInput[0] = 'X' }},
		{"completed task output bytes", func(c *workflow.Snapshot) { c.State.CompletedTasks[taskA][0] = 'X' }},
		{"completed tasks map", func(c *workflow.Snapshot) { c.State.CompletedTasks[taskB] = nil }},
		{"last completed task", func(c *workflow.Snapshot) { c.State.LastCompletedTask[0] = 0xff }},
		{"interrupted at task", func(c *workflow.Snapshot) { c.State.InterruptedAtTask[0] = 0xff }},
		{"final output bytes", func(c *workflow.Snapshot) { c.State.FinalOutput[0] = 'X' }},
		{"position wake at", func(c *workflow.Snapshot) { *c.State.Position.WakeAt = t1 }},
		{"position next task", func(c *workflow.Snapshot) { c.State.Position.NextTaskID[0] = 0xff }},
		{"position branches map", func(c *workflow.Snapshot) { c.State.Position.Branches["right"] = workflow.TaskResult{} }},
		{"position branch output bytes", func(c *workflow.Snapshot) { c.State.Position.Branches["left"].Output[0] = 'X' }},
		{"deadline", func(c *workflow.Snapshot) { c.TaskDeadline.TimeoutMS = 99 }},
		{"retries map", func(c *workflow.Snapshot) { c.TaskRetries[taskA] = workflow.TaskRetryState{} }},
		{"loops map", func(c *workflow.Snapshot) { c.LoopIterations[node] = 99 }},
		{"priority", func(c *workflow.Snapshot) { *c.TaskPriority = 5 }},
		{"tags", func(c *workflow.Snapshot) { c.TaskTags[0] = "cpu" }},
	}
	for _, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			orig := fullSnapshot()
			m.fn(orig.Clone())
			got, err := json.Marshal(orig)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("Snapshot.Clone is shallow: mutating the clone's %s changed the original", m.name)
			}
		})
	}

	var nilSnap *workflow.Snapshot
	if nilSnap.Clone() != nil {
		t.Error("Clone of nil is not nil")
	}
}

func TestPositionEqualAndClone(t *testing.T) {
	t.Parallel()
	p := fullSnapshot().State.Position
	q := p.Clone()
	if !p.Equal(q) || !q.Equal(p) {
		t.Fatal("a clone is not Equal")
	}
	for name, change := range map[string]func(*workflow.Position){
		"kind":     func(q *workflow.Position) { q.Kind = workflow.AtJoin },
		"node":     func(q *workflow.Position) { q.NodeID = taskA },
		"wake nil": func(q *workflow.Position) { q.WakeAt = nil },
		"wake":     func(q *workflow.Position) { q.WakeAt = ptr(t1) },
		"next nil": func(q *workflow.Position) { q.NextTaskID = nil },
		"branch": func(q *workflow.Position) {
			q.Branches = map[string]workflow.TaskResult{"left": {TaskID: taskA, Output: []byte("other")}}
		},
		"branch id": func(q *workflow.Position) {
			q.Branches = map[string]workflow.TaskResult{"right": {TaskID: taskA, Output: []byte("left-out")}}
		},
		"signal":    func(q *workflow.Position) { q.SignalName = "s" },
		"iteration": func(q *workflow.Position) { q.Iteration = 1 },
		"entered":   func(q *workflow.Position) { q.EnteredAt = t1 },
	} {
		q := p.Clone()
		change(&q)
		if p.Equal(q) {
			t.Errorf("Equal ignores a change of %s", name)
		}
	}
	// Equal compares instants, not locations.
	a := workflow.Position{Kind: workflow.AtDelay, EnteredAt: t0, WakeAt: ptr(wakeAt)}
	b := workflow.Position{Kind: workflow.AtDelay, EnteredAt: t0.In(time.FixedZone("x", 3600)), WakeAt: ptr(wakeAt.Local())}
	if !a.Equal(b) {
		t.Error("Equal compares time zones")
	}
	if !(workflow.Position{}).IsZero() || a.IsZero() {
		t.Error("IsZero")
	}
}

func TestPositionCloneIsDeep(t *testing.T) {
	t.Parallel()
	p := workflow.Position{Kind: workflow.AtJoin, NodeID: node,
		Branches: map[string]workflow.TaskResult{"left": {TaskID: taskA, Output: []byte("left-out")}}}
	c := p.Clone()
	c.Branches["left"].Output[0] = 'X'
	if got := string(p.Branches["left"].Output); got != "left-out" {
		t.Errorf("Position.Clone shares the branch outputs' bytes: the original's output became %q", got)
	}
}

func TestPositionKindNames(t *testing.T) {
	t.Parallel()
	// The names are Sayiir's pinned position_kind strings.
	want := []string{"NotStarted", "AtTask", "AtFork", "AtJoin", "AtDelay", "AtSignal", "InLoop"}
	for i, name := range want {
		k := workflow.PositionKind(i)
		if k.String() != name {
			t.Errorf("PositionKind(%d) = %q, want %q", i, k, name)
		}
		back, err := workflow.ParsePositionKind(name)
		if err != nil || back != k {
			t.Errorf("ParsePositionKind(%q) = %v, %v", name, back, err)
		}
	}
	if _, err := workflow.ParsePositionKind("atTask"); err == nil {
		t.Error("ParsePositionKind(atTask) = nil error")
	}
}

func TestSnapshotJSONRoundTrip(t *testing.T) {
	t.Parallel()
	orig := fullSnapshot()
	b, err := json.Marshal(orig)
	if err != nil {
		t.Fatal(err)
	}
	var back workflow.Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("Unmarshal(%s) = %v", b, err)
	}
	b2, err := json.Marshal(&back)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(b2) {
		t.Errorf("JSON round trip differs:\n%s\n%s", b, b2)
	}
	if !back.State.Position.Equal(orig.State.Position) {
		t.Error("position lost in JSON")
	}
}
