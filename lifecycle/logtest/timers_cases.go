package logtest

import (
	"slices"
	"testing"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/workflow"
)

// park moves id to pos (a delay or a signal wait) through a checkpoint.
func (h *storeHarness) park(id string, pos workflow.Position) {
	h.t.Helper()
	snap, rev := h.load(id)
	snap.MarkTaskCompleted(stTasks[0], []byte("first-out"), snap.UpdatedAt)
	if !snap.UpdatePosition(pos, snap.UpdatedAt) {
		h.t.Fatalf("park %s at %v refused", id, pos.Kind)
	}
	if _, err := h.store.SaveSnapshot(h.ctx, snap, rev); err != nil {
		h.t.Fatal(err)
	}
}

// Timers: a run parked at a delay or a signal wait with a timeout is moved
// on by AdvanceDue once its wake time has come, by any number of callers,
// exactly once.
var timerCases = []storeCase{
	{"AdvanceDueDelay", func(t *testing.T, h *storeHarness) {
		h.start("d")
		wake := time.Now().Add(time.Hour)
		next := stTasks[1]
		h.park("d", workflow.Position{Kind: workflow.AtDelay, NodeID: stTasks[7], EnteredAt: time.Now(), WakeAt: &wake, NextTaskID: &next})
		before := len(h.commits("d"))
		if ok, err := h.store.AdvanceDue(h.ctx, "d", wake.Add(-time.Second)); err != nil || ok {
			t.Fatalf("before the wake time: %v %v", ok, err)
		}
		if len(h.commits("d")) != before {
			t.Fatal("an early AdvanceDue wrote")
		}
		// Two callers at once: one commit.
		var results [2]bool
		other := h.other()
		done := make(chan struct{})
		go func() {
			results[1], _ = other.AdvanceDue(h.ctx, "d", wake)
			close(done)
		}()
		var err error
		results[0], err = h.store.AdvanceDue(h.ctx, "d", wake)
		<-done
		if err != nil || results[0] == results[1] {
			t.Fatalf("two callers: %v, %v: want exactly one to advance", results, err)
		}
		snap, _ := h.load("d")
		if task, ok := snap.CurrentTaskID(); !ok || task != next {
			t.Fatalf("after the delay: %v, want at task %s", snap.State.Position, next)
		}
		if n := len(h.commits("d")); n != before+1 {
			t.Fatalf("%d commits for one advance", n-before)
		}
	}},
	{"AdvanceDueLastNodeCompletes", func(t *testing.T, h *storeHarness) {
		h.start("l")
		wake := time.Now().Add(-time.Minute)
		h.park("l", workflow.Position{Kind: workflow.AtDelay, NodeID: stTasks[7], EnteredAt: time.Now(), WakeAt: &wake})
		if ok, err := h.store.AdvanceDue(h.ctx, "l", time.Now()); err != nil || !ok {
			t.Fatalf("AdvanceDue: %v %v", ok, err)
		}
		snap, _ := h.load("l")
		if snap.State.Kind != workflow.Completed || string(snap.State.FinalOutput) != "first-out" {
			t.Fatalf("after the last delay: %s output %q, want completed with the delay's input", snap.State.Kind, snap.State.FinalOutput)
		}
		cs := h.commits("l")
		if last := cs[len(cs)-1]; !slices.Contains(last, events.WorkflowCompleted) {
			t.Fatalf("last commit %v", last)
		}
	}},
	{"AdvanceDueSignalTimeout", func(t *testing.T, h *storeHarness) {
		h.start("s")
		h.start("e")
		wake := time.Now().Add(-time.Minute)
		next := stTasks[2]
		for _, id := range []string{"s", "e"} {
			h.park(id, workflow.Position{Kind: workflow.AtSignal, NodeID: stTasks[6], SignalName: "approval", WakeAt: &wake, NextTaskID: &next})
		}
		// An event arrived at e: it is consumed, not timed out.
		if err := h.store.SendEvent(h.ctx, "e", "approval", []byte("yes")); err != nil {
			t.Fatal(err)
		}
		if ok, err := h.store.AdvanceDue(h.ctx, "e", time.Now()); err != nil || ok {
			t.Fatalf("a signal wait with a buffered event: %v %v, want left for ConsumeEvent", ok, err)
		}
		if ok, err := h.store.AdvanceDue(h.ctx, "s", time.Now()); err != nil || !ok {
			t.Fatalf("a timed-out signal wait: %v %v", ok, err)
		}
		snap, _ := h.load("s")
		if task, ok := snap.CurrentTaskID(); !ok || task != next {
			t.Fatalf("after the timeout: %v", snap.State.Position)
		}
		// A run at a task is not parked: nothing to do.
		if ok, err := h.store.AdvanceDue(h.ctx, "s", time.Now()); err != nil || ok {
			t.Fatalf("AdvanceDue on a run at a task: %v %v", ok, err)
		}
	}},
}
