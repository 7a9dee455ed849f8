package lifecycle_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

func ExampleStore_PrepareRun() {
	ctx := context.Background()
	store, _ := lifecycle.New(memlog.New(nil), lifecycle.Config{})
	def := workflow.DefinitionHashOf("order-pipeline v1")
	first := workflow.TaskHint{ID: workflow.NewTaskID("reserve-stock")}
	req := lifecycle.PrepareRunRequest{InstanceID: "order-42", DefinitionHash: def, Input: []byte(`{"qty":3}`), FirstTask: first}

	p, _ := store.PrepareRun(ctx, req)
	fmt.Println("first run:", p.Outcome, p.Status.Kind, p.Snapshot.State.Position.Kind)

	_, err := store.PrepareRun(ctx, req) // policy Fail (the zero value)
	fmt.Println("again under fail:", errors.Is(err, lifecycle.ErrAlreadyExists))

	req.Policy = workflow.UseExisting
	p2, _ := store.PrepareRun(ctx, req)
	fmt.Println("use existing:", p2.Outcome, p2.Run == p.Run)

	req.Policy = workflow.TerminateExisting
	p3, _ := store.PrepareRun(ctx, req)
	fmt.Println("terminate existing:", p3.Outcome, p3.PreviousRun == p.Run, p3.Run != p.Run)

	req.DefinitionHash = workflow.DefinitionHashOf("order-pipeline v2")
	_, err = store.PrepareRun(ctx, req)
	var mismatch *lifecycle.DefinitionMismatchError
	fmt.Println("other definition:", errors.As(err, &mismatch))
	// Output:
	// first run: created in_progress AtTask
	// again under fail: true
	// use existing: used_existing true
	// terminate existing: replaced true true
	// other definition: true
}

// A run from start to completion: checkpoint after each task, then finish.
func ExampleStore_SaveSnapshot() {
	ctx := context.Background()
	store, _ := lifecycle.New(memlog.New(nil), lifecycle.Config{})
	tasks := []workflow.TaskID{workflow.NewTaskID("a"), workflow.NewTaskID("b")}
	p, _ := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "job-1",
		DefinitionHash: workflow.DefinitionHashOf("two-steps"), FirstTask: workflow.TaskHint{ID: tasks[0]}})

	snap, rev := p.Snapshot, p.Revision
	for i, task := range tasks {
		snap.MarkTaskCompleted(task, fmt.Appendf(nil, "out-%d", i), snap.UpdatedAt)
		if i+1 < len(tasks) {
			snap.UpdatePosition(workflow.AtTaskPosition(tasks[i+1]), snap.UpdatedAt)
		}
		rev, _ = store.SaveSnapshot(ctx, snap, rev)
	}
	snap.MarkCompleted([]byte("done"), snap.UpdatedAt)
	rev, _ = store.SaveSnapshot(ctx, snap, rev)

	final, _, _ := store.LoadSnapshot(ctx, "job-1")
	out, _, _ := store.LoadTaskResult(ctx, "job-1", tasks[0])
	fmt.Println(final.State.Kind, string(final.State.FinalOutput), string(out))

	_, err := store.SaveSnapshot(ctx, snap, rev)
	fmt.Println("after completion:", errors.Is(err, lifecycle.ErrTerminal))
	// Output:
	// Completed done out-0
	// after completion: true
}

// Cancel: a request is stored, then applied by the executor at its next
// check, in one commit with the clearing of the signal.
func ExampleStore_CheckAndCancel() {
	ctx := context.Background()
	store, _ := lifecycle.New(memlog.New(nil), lifecycle.Config{})
	task := workflow.NewTaskID("charge-card")
	store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "pay-7", FirstTask: workflow.TaskHint{ID: task}})

	store.StoreSignal(ctx, "pay-7", workflow.Cancel, workflow.SignalRequest{Reason: "customer asked", RequestedBy: "support"})
	cancelled, _ := store.CheckAndCancel(ctx, "pay-7", &task)
	snap, _, _ := store.LoadSnapshot(ctx, "pay-7")
	_, pending, _ := store.GetSignal(ctx, "pay-7", workflow.Cancel)
	fmt.Println(cancelled, snap.State.Kind, snap.State.Reason, "by", snap.State.By, "pending:", pending)
	// Output:
	// true Cancelled customer asked by support pending: false
}

// Pause, unpause, resume.
func ExampleStore_Unpause() {
	ctx := context.Background()
	store, _ := lifecycle.New(memlog.New(nil), lifecycle.Config{})
	store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "etl-3", FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("extract")}})

	store.StoreSignal(ctx, "etl-3", workflow.Pause, workflow.SignalRequest{Reason: "maintenance"})
	sig, _ := store.CheckControlSignals(ctx, "etl-3", nil)
	snap, _ := store.Unpause(ctx, "etl-3")
	fmt.Println(sig, "->", snap.State.Kind, "at", snap.State.Position.Kind)
	// Output:
	// paused -> InProgress at AtTask
}

// An external event awaited at a signal node and consumed in the same
// commit that advances the workflow.
func ExampleStore_ConsumeEvent() {
	ctx := context.Background()
	store, _ := lifecycle.New(memlog.New(nil), lifecycle.Config{})
	wait, next := workflow.NewTaskID("await-approval"), workflow.NewTaskID("ship")
	p, _ := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "po-9", FirstTask: workflow.TaskHint{ID: wait}})

	// The executor parks at the signal.
	snap := p.Snapshot
	snap.UpdatePosition(workflow.Position{Kind: workflow.AtSignal, NodeID: wait, SignalName: "approval", NextTaskID: &next}, snap.UpdatedAt)
	rev, _ := store.SaveSnapshot(ctx, snap, p.Revision)

	store.SendEvent(ctx, "po-9", "approval", []byte(`{"approved":true}`))

	got, _ := store.ConsumeEvent(ctx, lifecycle.ConsumeRequest{InstanceID: "po-9", Name: "approval", Revision: rev,
		Advance: func(s *workflow.Snapshot, payload []byte) error {
			s.MarkTaskCompleted(wait, payload, s.UpdatedAt)
			s.UpdatePosition(workflow.AtTaskPosition(next), s.UpdatedAt)
			return nil
		}})
	now, _, _ := store.LoadSnapshot(ctx, "po-9")
	id, _ := now.CurrentTaskID()
	fmt.Println(got.OK, string(got.Payload), id == next)
	// Output:
	// true {"approved":true} true
}
