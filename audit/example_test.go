package audit_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

// Verify a log, export it, and import the export into another log.
func Example() {
	ctx := context.Background()
	src := memlog.New(nil)
	store, _ := lifecycle.New(src, lifecycle.Config{})
	store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "order-42", FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("reserve")}})
	store.StoreSignal(ctx, "order-42", workflow.Cancel, workflow.SignalRequest{Reason: "customer asked", RequestedBy: "support"})

	rep, _ := audit.Verify(ctx, src, audit.VerifyOptions{})
	fmt.Println("verified:", rep.Instances, "instances,", rep.Messages, "messages, ok:", rep.OK())

	var file bytes.Buffer
	audit.Export(ctx, src, &file, audit.ExportOptions{})
	dst := memlog.New(nil)
	st, _ := audit.Import(ctx, bytes.NewReader(file.Bytes()), dst, audit.ImportOptions{})
	fmt.Println("imported:", st.Appended, "messages")

	st, _ = audit.Import(ctx, bytes.NewReader(file.Bytes()), dst, audit.ImportOptions{})
	fmt.Println("again:", st.Appended, "appended,", st.Unchanged, "unchanged")
	// Output:
	// verified: 1 instances, 2 messages, ok: true
	// imported: 2 messages
	// again: 0 appended, 1 unchanged
}

// A timeline of one instance, as `replay show` prints it.
func ExampleSummarize() {
	ctx := context.Background()
	t := time.Date(2026, 11, 26, 6, 20, 0, 0, time.UTC)
	clock := func() time.Time { t = t.Add(time.Second); return t }
	log := memlog.New(clock)
	store, _ := lifecycle.New(log, lifecycle.Config{Now: clock, Entropy: rand.NewChaCha8([32]byte{})})
	task := workflow.NewTaskID("charge")
	store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "pay-7", Input: []byte(`{"amount":12}`), FirstTask: workflow.TaskHint{ID: task}})
	store.StoreSignal(ctx, "pay-7", workflow.Cancel, workflow.SignalRequest{Reason: "customer asked", RequestedBy: "support"})
	store.CheckAndCancel(ctx, "pay-7", &task)

	for m := range log.Read(ctx, "pay-7", 0) {
		rec, _ := events.Decode(m, "pay-7")
		for _, ev := range rec.Commit.Events {
			fmt.Println(m.Seq, rec.Commit.Time.Format(time.TimeOnly), audit.Summarize(rec, ev))
		}
	}
	// Output:
	// 1 06:20:01 created run 01M8B85MJG86FCC9Y7DCDZP7X3 at task 97488fbab328, input {"amount":12}, policy fail, definition 000000000000
	// 2 06:20:04 cancel requested by support: "customer asked"
	// 3 06:20:06 cancelled by support: "customer asked" (at 2026-11-26T06:20:04Z), interrupted at task 97488fbab328
	// 3 06:20:06 signal cancel cleared (applied)
}
