package test

import (
	"testing"

	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// State survives closing and reopening the embedded store: the instance,
// its run, its checkpoint and its pending signal are all there, and the
// store keeps building on them.
func TestStateSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	def := workflow.DefinitionHashOf("reopen")
	task := workflow.NewTaskID("t0")

	open := func() (*jetstream.Log, *lifecycle.Store) {
		t.Helper()
		js, err := jetstream.OpenEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := lifecycle.New(js, lifecycle.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return js, s
	}

	js, s := open()
	p, err := s.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "a.b c/é", DefinitionHash: def, Input: []byte("in"), FirstTask: workflow.TaskHint{ID: task}})
	if err != nil {
		t.Fatal(err)
	}
	snap := p.Snapshot
	snap.MarkTaskCompleted(task, []byte("out"), snap.UpdatedAt)
	rev, err := s.SaveSnapshot(ctx, snap, p.Revision)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreSignal(ctx, "a.b c/é", workflow.Pause, workflow.SignalRequest{Reason: "hold"}); err != nil {
		t.Fatal(err)
	}
	if err := js.Close(); err != nil {
		t.Fatal(err)
	}

	js, s = open()
	defer js.Close()
	got, gotRev, err := s.LoadSnapshot(ctx, "a.b c/é")
	if err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	if gotRev != rev || string(got.InitialInput) != "in" {
		t.Fatalf("after reopen: revision %+v input %q, want %+v \"in\"", gotRev, got.InitialInput, rev)
	}
	if out, _ := got.TaskResult(task); string(out) != "out" {
		t.Fatalf("after reopen: result %q", out)
	}
	if req, ok, _ := s.GetSignal(ctx, "a.b c/é", workflow.Pause); !ok || req.Reason != "hold" {
		t.Fatalf("after reopen: pause %+v %v", req, ok)
	}
	// The reopened store refuses a duplicate and builds on the history.
	if _, err := s.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "a.b c/é", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: task}}); err == nil {
		t.Fatal("a duplicate run was created after reopen")
	}
	if ok, err := s.CheckAndPause(ctx, "a.b c/é"); !ok || err != nil {
		t.Fatalf("CheckAndPause after reopen: %v %v", ok, err)
	}
}
