package workflow_test

import (
	"reflect"
	"testing"

	"github.com/runlog/runlog/workflow"
)

func TestAsStatusByState(t *testing.T) {
	t.Parallel()
	want := map[workflow.StateKind]workflow.Status{
		workflow.InProgress: {Kind: workflow.StatusInProgress},
		workflow.Completed:  {Kind: workflow.StatusCompleted},
		workflow.Failed:     {Kind: workflow.StatusFailed, Error: "exploded"},
		workflow.Cancelled:  {Kind: workflow.StatusCancelled, Reason: "r", By: "ops"},
		workflow.Paused:     {Kind: workflow.StatusPaused, Reason: "r", By: "ops"},
	}
	for k, s := range states() {
		if got := s.State.AsStatus(); !reflect.DeepEqual(got, want[k]) {
			t.Errorf("%v.AsStatus() = %+v, want %+v", k, got, want[k])
		}
	}
}

func TestAsStatusByPosition(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pos  workflow.Position
		want workflow.Status
	}{
		{workflow.Position{Kind: workflow.NotStarted}, workflow.Status{Kind: workflow.StatusInProgress}},
		{workflow.AtTaskPosition(taskA), workflow.Status{Kind: workflow.StatusInProgress}},
		{workflow.Position{Kind: workflow.AtJoin, NodeID: node}, workflow.Status{Kind: workflow.StatusInProgress}},
		{workflow.Position{Kind: workflow.InLoop, NodeID: node, Iteration: 2, NextTaskID: ptr(taskA)}, workflow.Status{Kind: workflow.StatusInProgress}},
		{
			workflow.Position{Kind: workflow.AtDelay, NodeID: node, EnteredAt: t0, WakeAt: ptr(wakeAt), NextTaskID: ptr(taskB)},
			workflow.Status{Kind: workflow.StatusWaiting, WakeAt: ptr(wakeAt), DelayID: ptr(node)},
		},
		{
			workflow.Position{Kind: workflow.AtFork, NodeID: node, WakeAt: ptr(wakeAt), Branches: map[string]workflow.TaskResult{"l": {TaskID: taskA}}},
			workflow.Status{Kind: workflow.StatusWaiting, WakeAt: ptr(wakeAt), DelayID: ptr(node)},
		},
		{
			workflow.Position{Kind: workflow.AtSignal, NodeID: node, SignalName: "approved", WakeAt: ptr(wakeAt)},
			workflow.Status{Kind: workflow.StatusAwaitingSignal, SignalID: ptr(node), SignalName: "approved", WakeAt: ptr(wakeAt)},
		},
		{
			workflow.Position{Kind: workflow.AtSignal, NodeID: node, SignalName: "approved"},
			workflow.Status{Kind: workflow.StatusAwaitingSignal, SignalID: ptr(node), SignalName: "approved"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.pos.Kind.String(), func(t *testing.T) {
			t.Parallel()
			st := workflow.State{Kind: workflow.InProgress, Position: tt.pos}
			got := st.AsStatus()
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("AsStatus() at %v = %+v, want %+v", tt.pos.Kind, got, tt.want)
			}
			// The status does not alias the state.
			if got.WakeAt != nil {
				*got.WakeAt = t1
				if !tt.pos.WakeAt.Equal(wakeAt) {
					t.Error("Status.WakeAt aliases the position's")
				}
			}
			if got.DelayID != nil {
				got.DelayID[0] ^= 0xff
				if st.Position.NodeID != node {
					t.Error("Status.DelayID aliases the position's")
				}
			}
			// A paused snapshot at the same position reports paused.
			paused := workflow.State{Kind: workflow.Paused, Position: tt.pos, Reason: "why", By: "who"}
			if got := paused.AsStatus(); !reflect.DeepEqual(got, workflow.Status{Kind: workflow.StatusPaused, Reason: "why", By: "who"}) {
				t.Errorf("paused at %v: AsStatus() = %+v", tt.pos.Kind, got)
			}
		})
	}
}

func TestCompletedOutput(t *testing.T) {
	t.Parallel()
	for k, s := range states() {
		out, ok := s.State.CompletedOutput()
		if k == workflow.Completed {
			if !ok || string(out) != "final" {
				t.Errorf("Completed: CompletedOutput() = %q, %v", out, ok)
			}
			continue
		}
		if ok || out != nil {
			t.Errorf("%v: CompletedOutput() = %q, %v; want nil, false", k, out, ok)
		}
	}
	// A completed workflow with an empty output still reports it.
	st := workflow.State{Kind: workflow.Completed}
	if _, ok := st.CompletedOutput(); !ok {
		t.Error("Completed with nil output: ok = false")
	}
}

func TestStatusKindNames(t *testing.T) {
	t.Parallel()
	want := []string{"in_progress", "completed", "failed", "cancelled", "paused", "waiting", "awaiting_signal"}
	for i, name := range want {
		k := workflow.StatusKind(i)
		if k.String() != name {
			t.Errorf("StatusKind(%d) = %q, want %q", i, k, name)
		}
		back, err := workflow.ParseStatusKind(name)
		if err != nil || back != k {
			t.Errorf("ParseStatusKind(%q) = %v, %v", name, back, err)
		}
	}
	if _, err := workflow.ParseStatusKind("running"); err == nil {
		t.Error("ParseStatusKind(running) = nil error")
	}
}
