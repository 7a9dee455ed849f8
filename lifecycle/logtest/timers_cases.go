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
	{"AdvanceSignaled", func(t *testing.T, h *storeHarness) {
		h.start("w")
		h.start("n")
		next := stTasks[2]
		h.park("w", workflow.Position{Kind: workflow.AtSignal, NodeID: stTasks[6], SignalName: "approval", NextTaskID: &next})
		h.park("n", workflow.Position{Kind: workflow.AtSignal, NodeID: stTasks[6], SignalName: "approval"})
		// No event yet, or an event of another name: nothing to do.
		if err := h.store.SendEvent(h.ctx, "w", "other", []byte("x")); err != nil {
			t.Fatal(err)
		}
		before := len(h.commits("w"))
		if ok, err := h.store.AdvanceSignaled(h.ctx, "w", time.Now()); err != nil || ok {
			t.Fatalf("without its event: %v %v", ok, err)
		}
		if len(h.commits("w")) != before {
			t.Fatal("AdvanceSignaled without the event wrote")
		}
		for _, id := range []string{"w", "n"} {
			if err := h.store.SendEvent(h.ctx, id, "approval", []byte("yes-"+id)); err != nil {
				t.Fatal(err)
			}
		}
		// Two callers at once: one commit, which consumes the event and
		// moves on.
		var results [2]bool
		other := h.other()
		done := make(chan struct{})
		go func() {
			results[1], _ = other.AdvanceSignaled(h.ctx, "w", time.Now())
			close(done)
		}()
		var err error
		results[0], err = h.store.AdvanceSignaled(h.ctx, "w", time.Now())
		<-done
		if err != nil || results[0] == results[1] {
			t.Fatalf("two callers: %v, %v: want exactly one to advance", results, err)
		}
		cs := h.commits("w")
		if last := cs[len(cs)-1]; !slices.Contains(last, events.EventConsumed) || !slices.Contains(last, events.CheckpointSaved) {
			t.Fatalf("the advance's commit holds %v, want the consumption and the checkpoint together", last)
		}
		st, err := h.store.Load(h.ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		if task, ok := st.Snapshot.CurrentTaskID(); !ok || task != next {
			t.Fatalf("after the event: %v, want at task %s", st.Snapshot.State.Position, next)
		}
		if out := st.Results[stTasks[6]]; string(out) != "yes-w" || len(st.Buffered["approval"]) != 0 || len(st.Buffered["other"]) != 1 {
			t.Fatalf("the signal node's result %q, buffered %v: want the payload recorded, the event consumed, the other kept", out, st.Buffered)
		}
		// The last node: the run completes with the payload.
		if ok, err := h.store.AdvanceSignaled(h.ctx, "n", time.Now()); err != nil || !ok {
			t.Fatalf("AdvanceSignaled at the last node: %v %v", ok, err)
		}
		snap, _ := h.load("n")
		if snap.State.Kind != workflow.Completed || string(snap.State.FinalOutput) != "yes-n" {
			t.Fatalf("after the last signal: %s with %q, want completed with the payload", snap.State.Kind, snap.State.FinalOutput)
		}
	}},
}
