package audit_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

// TestDescribeAndQuery: Describe reads an instance's status, workflow,
// actors, pending signals and event types from its history, and each
// Query filter selects by them; a bad query is refused.
func TestDescribeAndQuery(t *testing.T) {
	ctx := t.Context()
	log := memlog.New(nil)
	st, err := lifecycle.New(log, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	checkout := &workflow.Definition{Name: "checkout", Version: "v2", Tasks: []string{"reserve", "charge"}}
	if _, err := st.PrepareRun(lifecycle.WithActor(ctx, "api"), lifecycle.PrepareRunRequest{InstanceID: "named", DefinitionHash: workflow.DefinitionHashOf("checkout v2"),
		FirstTask: workflow.NewTaskHint("reserve"), Workflow: checkout}); err != nil {
		t.Fatal(err)
	}
	if err := st.StoreSignal(ctx, "named", workflow.Pause, workflow.SignalRequest{RequestedBy: "alice", Reason: "look"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "plain", DefinitionHash: workflow.DefinitionHashOf("other"),
		FirstTask: workflow.NewTaskHint("x")}); err != nil {
		t.Fatal(err)
	}
	named, err := audit.Describe(ctx, log, "named")
	if err != nil {
		t.Fatal(err)
	}
	if named.Status != "in_progress" || named.WorkflowLabel() != "checkout v2" || !slices.Equal(named.Actors, []string{"api", "alice"}) ||
		!slices.Equal(named.Signals, []workflow.SignalKind{workflow.Pause}) || !slices.Contains(named.Types, events.SignalStored) || named.Commits != 2 {
		t.Fatalf("Describe(named) = %+v", named)
	}
	plain, err := audit.Describe(ctx, log, "plain")
	if err != nil {
		t.Fatal(err)
	}
	pause := workflow.Pause
	for what, c := range map[string]struct {
		q    audit.Query
		want []string
	}{
		"all":        {audit.Query{}, []string{"named", "plain"}},
		"workflow":   {audit.Query{Workflow: "checkout"}, []string{"named"}},
		"version":    {audit.Query{Workflow: "checkout v1"}, nil},
		"actor":      {audit.Query{Actor: "alice"}, []string{"named"}},
		"signal":     {audit.Query{Signal: &pause}, []string{"named"}},
		"event type": {audit.Query{EventType: events.SignalStored}, []string{"named"}},
		"definition": {audit.Query{Definition: workflow.DefinitionHashOf("other").String()[:8]}, []string{"plain"}},
		"status":     {audit.Query{Statuses: []string{"completed"}}, nil},
	} {
		var got []string
		for _, in := range []audit.Instance{named, plain} {
			if c.q.Matches(&in) {
				got = append(got, in.ID)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", what, got, c.want)
		}
	}
	for what, q := range map[string]audit.Query{
		"status":     {Statuses: []string{"asleep"}},
		"definition": {Definition: "xyz"},
		"event type": {EventType: "nope"},
	} {
		if err := q.Check(); !errors.Is(err, audit.ErrInvalidQuery) {
			t.Errorf("%s: %v, want ErrInvalidQuery", what, err)
		}
	}
}

// TestImportProgressCounts: import's progress counts instances and bytes
// in both passes, and the write pass ends with every instance done.
func TestImportProgressCounts(t *testing.T) {
	ctx := t.Context()
	src := memlog.New(nil)
	st, err := lifecycle.New(src, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"p-1", "p-2", "p-3"} {
		if _, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: workflow.DefinitionHashOf("p"), FirstTask: workflow.NewTaskHint("t")}); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := audit.Export(ctx, src, &buf, audit.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	last := map[string]audit.Progress{}
	var writes []audit.Progress
	if _, err := audit.Import(ctx, bytes.NewReader(buf.Bytes()), memlog.New(nil), audit.ImportOptions{Progress: func(p audit.Progress) {
		last[p.Phase] = p
		if p.Phase == "write" {
			writes = append(writes, p)
		}
	}}); err != nil {
		t.Fatal(err)
	}
	if w := last["write"]; w.Instances != 3 || w.Total != 3 || w.Messages != 3 || w.Bytes == 0 {
		t.Errorf("last write progress %+v", w)
	}
	if len(writes) < 3 || writes[0].Instances != 1 {
		t.Errorf("write progress per instance: %+v", writes)
	}
}
