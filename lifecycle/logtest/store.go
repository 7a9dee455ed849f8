package logtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// RunStore runs the store-operation cases (Sayiir's SnapshotStore,
// SignalStore and TaskResultStore contracts, and the fencing Sayiir lacks)
// against the log newLog returns. Each case gets a fresh log.
func RunStore(t *testing.T, newLog func(t *testing.T) lifecycle.Log) {
	for _, c := range slices.Concat(storeCases, claimCases, timerCases, catalogCases) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newStoreHarness(t, newLog(t))
			c.run(t, h)
		})
	}
}

type storeHarness struct {
	t       *testing.T
	ctx     context.Context
	log     lifecycle.Log
	catalog lifecycle.Log // the log's definition catalog; nil if it has none
	store   *lifecycle.Store
}

// catalogLog is a log that brings its own definition catalog
// (jetstream.Log, memlog.Log).
type catalogLog interface {
	Catalog(ctx context.Context) (lifecycle.Log, error)
}

// catalogOf returns log's definition catalog, or nil.
func catalogOf(t *testing.T, log lifecycle.Log) lifecycle.Log {
	t.Helper()
	c, ok := log.(catalogLog)
	if !ok {
		return nil
	}
	cat, err := c.Catalog(t.Context())
	if err != nil {
		t.Fatalf("definition catalog: %v", err)
	}
	return cat
}

// leaseLog is a log that brings its own lease store for task claims
// (jetstream.Log, memlog.Log).
type leaseLog interface{ Leases() lifecycle.Leases }

// leasesOf returns log's lease store, or nil.
func leasesOf(log lifecycle.Log) lifecycle.Leases {
	if l, ok := log.(leaseLog); ok {
		return l.Leases()
	}
	return nil
}

func newStoreHarness(t *testing.T, log lifecycle.Log) *storeHarness {
	t.Helper()
	cat := catalogOf(t, log)
	s, err := lifecycle.New(log, lifecycle.Config{MaxAttempts: 200, MaxPayload: 64 << 10, Leases: leasesOf(log), Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	return &storeHarness{t: t, ctx: t.Context(), log: log, catalog: cat, store: s}
}

// other returns a second store on the same log: another process.
func (h *storeHarness) other() *lifecycle.Store {
	s, err := lifecycle.New(h.log, lifecycle.Config{MaxAttempts: 200, Leases: leasesOf(h.log), Catalog: h.catalog})
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

var (
	stDef   = workflow.DefinitionHashOf("store-conformance")
	stTasks = func() []workflow.TaskID {
		ids := make([]workflow.TaskID, 8)
		for i := range ids {
			ids[i] = workflow.NewTaskID(fmt.Sprintf("task-%d", i))
		}
		return ids
	}()
)

func (h *storeHarness) start(id string) lifecycle.Prepared {
	h.t.Helper()
	p, err := h.store.PrepareRun(h.ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: stDef, Input: []byte("in"),
		FirstTask: workflow.TaskHint{ID: stTasks[0]}})
	if err != nil {
		h.t.Fatalf("PrepareRun(%q): %v", id, err)
	}
	return p
}

// lastSeq returns the instance's last sequence in the log (0 if none).
func (h *storeHarness) lastSeq(id string) uint64 {
	h.t.Helper()
	var last uint64
	for m, err := range h.log.Read(h.ctx, id, 0) {
		if err != nil {
			h.t.Fatal(err)
		}
		last = m.Seq
	}
	return last
}

// records returns the instance's commits, decoded.
func (h *storeHarness) records(id string) []events.Record {
	h.t.Helper()
	var out []events.Record
	for m, err := range h.log.Read(h.ctx, id, 0) {
		if err != nil {
			h.t.Fatal(err)
		}
		rec, err := events.Decode(m, id)
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

// commits returns the event types of each commit of the instance.
func (h *storeHarness) commits(id string) [][]events.Type {
	h.t.Helper()
	var out [][]events.Type
	for _, rec := range h.records(id) {
		out = append(out, rec.Commit.Types())
	}
	return out
}

func (h *storeHarness) load(id string) (*workflow.Snapshot, lifecycle.Revision) {
	h.t.Helper()
	snap, rev, err := h.store.LoadSnapshot(h.ctx, id)
	if err != nil {
		h.t.Fatalf("LoadSnapshot(%q): %v", id, err)
	}
	return snap, rev
}

// checkpoint completes task i and moves to task i+1.
func (h *storeHarness) checkpoint(snap *workflow.Snapshot, rev lifecycle.Revision, i int, out []byte) lifecycle.Revision {
	h.t.Helper()
	snap.MarkTaskCompleted(stTasks[i], out, snap.UpdatedAt)
	snap.UpdatePosition(workflow.AtTaskPosition(stTasks[(i+1)%len(stTasks)]), snap.UpdatedAt)
	rev, err := h.store.SaveSnapshot(h.ctx, snap, rev)
	if err != nil {
		h.t.Fatalf("SaveSnapshot after task %d: %v", i, err)
	}
	return rev
}

// finish moves the instance to a terminal (or paused) state through the API.
func (h *storeHarness) finish(id string, state workflow.StateKind) {
	h.t.Helper()
	snap, rev := h.load(id)
	switch state {
	case workflow.Completed:
		snap.MarkCompleted([]byte("final"), snap.UpdatedAt)
	case workflow.Failed:
		snap.MarkFailed("boom", snap.UpdatedAt)
	case workflow.Cancelled:
		snap.MarkCancelled(workflow.SignalRequest{Reason: "stop"}, nil, snap.UpdatedAt)
	case workflow.Paused:
		snap.MarkPaused(workflow.SignalRequest{Reason: "hold"}, snap.UpdatedAt)
	}
	if _, err := h.store.SaveSnapshot(h.ctx, snap, rev); err != nil {
		h.t.Fatalf("moving %q to %s: %v", id, state, err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want one matching %v", err, target)
	}
}

func (h *storeHarness) unchanged(id string, before uint64) {
	h.t.Helper()
	if after := h.lastSeq(id); after != before {
		h.t.Fatalf("instance %q: last sequence moved from %d to %d: the refused call wrote", id, before, after)
	}
}

type storeCase struct {
	name string
	run  func(t *testing.T, h *storeHarness)
}

var storeCases = []storeCase{
	{"SaveAndLoad", func(t *testing.T, h *storeHarness) {
		p := h.start("wf")
		snap, rev := h.load("wf")
		if snap.InstanceID != "wf" || snap.DefinitionHash != stDef || rev != p.Revision {
			t.Fatalf("loaded %q %s rev %+v, want wf %s rev %+v", snap.InstanceID, snap.DefinitionHash, rev, stDef, p.Revision)
		}
		rev = h.checkpoint(snap, rev, 0, []byte("r0"))
		got, rev2 := h.load("wf")
		if out, _ := got.TaskResult(stTasks[0]); string(out) != "r0" || rev2 != rev {
			t.Fatalf("after checkpoint: result %q rev %+v, want r0 rev %+v", out, rev2, rev)
		}
		if id, _ := got.CurrentTaskID(); id != stTasks[1] {
			t.Fatalf("position %v, want AtTask(task-1)", got.State.Position)
		}
	}},
	{"LoadNotFound", func(t *testing.T, h *storeHarness) {
		_, _, err := h.store.LoadSnapshot(h.ctx, "missing")
		wantErr(t, err, lifecycle.ErrNotFound)
	}},
	{"SaveUnchangedWritesNothing", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		snap, rev := h.load("wf")
		before := h.lastSeq("wf")
		rev2, err := h.store.SaveSnapshot(h.ctx, snap, rev)
		if err != nil || rev2 != rev {
			t.Fatalf("SaveSnapshot(unchanged) = %+v, %v", rev2, err)
		}
		h.unchanged("wf", before)
	}},
	{"DeleteThenNotFound", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		if err := h.store.DeleteSnapshot(h.ctx, "wf", "test"); err != nil {
			t.Fatal(err)
		}
		_, _, err := h.store.LoadSnapshot(h.ctx, "wf")
		var nf *lifecycle.NotFoundError
		if !errors.As(err, &nf) || !nf.Deleted {
			t.Fatalf("LoadSnapshot after delete = %v, want NotFoundError{Deleted}", err)
		}
		wantErr(t, h.store.DeleteSnapshot(h.ctx, "wf", "again"), lifecycle.ErrNotFound)
		wantErr(t, h.store.DeleteSnapshot(h.ctx, "never", ""), lifecycle.ErrNotFound)
		if n := len(h.commits("wf")); n != 2 {
			t.Fatalf("history holds %d commits, want 2 (created, deleted): a delete keeps the history", n)
		}
	}},
	{"DeleteLeavesNoOrphans", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		h.must(h.store.StoreSignal(h.ctx, "wf", workflow.Cancel, workflow.SignalRequest{Reason: "x"}))
		h.must(h.store.StoreSignal(h.ctx, "wf", workflow.Pause, workflow.SignalRequest{Reason: "y"}))
		h.must(h.store.SendEvent(h.ctx, "wf", "approval", []byte("yes")))
		h.must(h.store.DeleteSnapshot(h.ctx, "wf", "cleanup"))
		st, err := h.store.Load(h.ctx, "wf")
		h.must(err)
		if len(st.Signals) != 0 || st.Pending() != 0 {
			t.Fatalf("after delete: %d signals, %d buffered events left", len(st.Signals), st.Pending())
		}
		h.start("wf") // a new run inherits nothing
		got, err := h.store.ConsumeEvent(h.ctx, lifecycle.ConsumeRequest{InstanceID: "wf", Name: "approval"})
		h.must(err)
		if got.OK {
			t.Fatal("a new run consumed an event buffered for the deleted one")
		}
		if _, ok, _ := h.store.GetSignal(h.ctx, "wf", workflow.Cancel); ok {
			t.Fatal("a new run inherited a cancel request")
		}
	}},
	{"ListInstances", func(t *testing.T, h *storeHarness) {
		if _, ok := h.log.(lifecycle.Lister); !ok {
			t.Skip("log does not implement lifecycle.Lister")
		}
		ids := []string{"a", "b.c", "d e", "é"}
		for _, id := range ids {
			h.start(id)
		}
		var got []string
		after := ""
		for {
			page, err := h.store.ListInstances(h.ctx, after, 3)
			h.must(err)
			if len(page) == 0 {
				break
			}
			if len(page) > 3 {
				t.Fatalf("page of %d ids, limit 3", len(page))
			}
			got = append(got, page...)
			after = page[len(page)-1]
		}
		if fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Fatalf("listed %q, want %q", got, ids)
		}
	}},
	{"SaveTaskResultConcurrentBranches", func(t *testing.T, h *storeHarness) {
		p := h.start("fork")
		var wg sync.WaitGroup
		errs := make([]error, len(stTasks))
		for i := range stTasks {
			wg.Go(func() {
				s := h.store
				if i%2 == 1 {
					s = h.other() // branches in other processes
				}
				_, errs[i] = s.SaveTaskResult(h.ctx, "fork", p.Revision, stTasks[i], fmt.Appendf(nil, "branch-%d", i))
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("branch %d: %v", i, err)
			}
		}
		snap, _ := h.load("fork")
		for i, id := range stTasks {
			if out, ok := snap.TaskResult(id); !ok || string(out) != fmt.Sprintf("branch-%d", i) {
				t.Fatalf("branch %d result = %q, %v: a branch write was lost", i, out, ok)
			}
		}
	}},
	{"TerminalIsAbsorbing", func(t *testing.T, h *storeHarness) {
		for _, state := range []workflow.StateKind{workflow.Completed, workflow.Failed, workflow.Cancelled} {
			id := "t-" + state.String()
			h.start(id)
			stale, rev := h.load(id)
			h.finish(id, state)
			_, rev = h.load(id)
			before := h.lastSeq(id)
			stale.UpdatePosition(workflow.AtTaskPosition(stTasks[3]), stale.UpdatedAt)
			_, err := h.store.SaveSnapshot(h.ctx, stale, rev)
			var te *lifecycle.TerminalError
			if !errors.As(err, &te) || te.State != state {
				t.Fatalf("%s: save after terminal = %v, want TerminalError{%s}", state, err, state)
			}
			_, err = h.store.SaveTaskResult(h.ctx, id, rev, stTasks[2], []byte("late"))
			wantErr(t, err, lifecycle.ErrTerminal)
			wantErr(t, h.store.SendEvent(h.ctx, id, "e", nil), lifecycle.ErrTerminal)
			h.unchanged(id, before)
			got, _ := h.load(id)
			if got.State.Kind != state {
				t.Fatalf("state is %s, want %s", got.State.Kind, state)
			}
		}
	}},
	{"StaleCheckpointRefused", func(t *testing.T, h *storeHarness) {
		p := h.start("wf")
		a, _ := h.load("wf")
		b, _ := h.load("wf")
		rev := h.checkpoint(a, p.Revision, 0, []byte("writer-a"))
		before := h.lastSeq("wf")
		b.MarkTaskCompleted(stTasks[0], []byte("writer-b"), b.UpdatedAt)
		_, err := h.other().SaveSnapshot(h.ctx, b, p.Revision)
		var se *lifecycle.StaleError
		if !errors.As(err, &se) || se.Current != rev {
			t.Fatalf("stale save = %v, want StaleError with current %+v", err, rev)
		}
		h.unchanged("wf", before)
		got, _ := h.load("wf")
		if out, _ := got.TaskResult(stTasks[0]); string(out) != "writer-a" {
			t.Fatalf("result %q: the lost update happened", out)
		}
	}},
	{"SignalDoesNotMakeCheckpointStale", func(t *testing.T, h *storeHarness) {
		p := h.start("wf")
		snap, rev := h.load("wf")
		h.must(h.other().StoreSignal(h.ctx, "wf", workflow.Cancel, workflow.SignalRequest{Reason: "later"}))
		h.must(h.other().SendEvent(h.ctx, "wf", "ev", []byte("x")))
		if _, err := h.store.SaveSnapshot(h.ctx, func() *workflow.Snapshot {
			snap.MarkTaskCompleted(stTasks[0], []byte("r"), snap.UpdatedAt)
			return snap
		}(), rev); err != nil {
			t.Fatalf("checkpoint after a signal: %v", err)
		}
		_ = p
		if _, ok, _ := h.store.GetSignal(h.ctx, "wf", workflow.Cancel); !ok {
			t.Fatal("the checkpoint dropped the pending cancel")
		}
	}},
	{"StaleRunAfterTerminateExisting", func(t *testing.T, h *storeHarness) {
		old := h.start("wf")
		snap, rev := h.load("wf")
		p, err := h.other().PrepareRun(h.ctx, lifecycle.PrepareRunRequest{InstanceID: "wf", DefinitionHash: stDef, Input: []byte("new"),
			FirstTask: workflow.TaskHint{ID: stTasks[0]}, Policy: workflow.TerminateExisting})
		h.must(err)
		before := h.lastSeq("wf")
		snap.MarkTaskCompleted(stTasks[0], []byte("old-executor"), snap.UpdatedAt)
		_, err = h.store.SaveSnapshot(h.ctx, snap, rev)
		var se *lifecycle.StaleError
		if !errors.As(err, &se) || se.Have.Run != old.Run || se.Current.Run != p.Run {
			t.Fatalf("old executor's save = %v, want StaleError naming runs %s and %s", err, old.Run, p.Run)
		}
		_, err = h.store.SaveTaskResult(h.ctx, "wf", rev, stTasks[1], []byte("old-branch"))
		wantErr(t, err, lifecycle.ErrStale)
		h.unchanged("wf", before)
		got, _ := h.load("wf")
		if got.CompletedTaskCount() != 0 || string(got.InitialInput) != "new" {
			t.Fatalf("new run was written into: %d results, input %q", got.CompletedTaskCount(), got.InitialInput)
		}
	}},
	{"SignalAdmissionMatrix", func(t *testing.T, h *storeHarness) {
		type row struct {
			state         workflow.StateKind
			cancel, pause error // nil: accepted
			cancelStored  bool
			pauseStored   bool
		}
		rows := []row{
			{workflow.InProgress, nil, nil, true, true},
			{workflow.Paused, nil, nil, true, false},
			{workflow.Cancelled, nil, lifecycle.ErrCannotPause, false, false},
			{workflow.Completed, lifecycle.ErrCannotCancel, lifecycle.ErrCannotPause, false, false},
			{workflow.Failed, lifecycle.ErrCannotCancel, lifecycle.ErrCannotPause, false, false},
		}
		for _, r := range rows {
			id := "m-" + r.state.String()
			h.start(id)
			if r.state != workflow.InProgress {
				h.finish(id, r.state)
			}
			for _, k := range []struct {
				kind   workflow.SignalKind
				want   error
				stored bool
			}{{workflow.Cancel, r.cancel, r.cancelStored}, {workflow.Pause, r.pause, r.pauseStored}} {
				before := h.lastSeq(id)
				err := h.store.StoreSignal(h.ctx, id, k.kind, workflow.SignalRequest{Reason: "r", RequestedBy: "op"})
				if k.want == nil && err != nil || k.want != nil && !errors.Is(err, k.want) {
					t.Fatalf("%s %s: error %v, want %v", r.state, k.kind, err, k.want)
				}
				var refused *lifecycle.SignalRefusedError
				if k.want != nil && (!errors.As(err, &refused) || refused.State != r.state || refused.Kind != k.kind) {
					t.Fatalf("%s %s: %v is not a SignalRefusedError naming the state", r.state, k.kind, err)
				}
				_, ok, _ := h.store.GetSignal(h.ctx, id, k.kind)
				if ok != k.stored {
					t.Fatalf("%s %s: pending = %v, want %v", r.state, k.kind, ok, k.stored)
				}
				if !k.stored {
					h.unchanged(id, before)
				}
			}
		}
		wantErr(t, h.store.StoreSignal(h.ctx, "none", workflow.Cancel, workflow.SignalRequest{}), lifecycle.ErrNotFound)
		wantErr(t, h.store.StoreSignal(h.ctx, "m-InProgress", workflow.SignalKind(9), workflow.SignalRequest{}), lifecycle.ErrInvalidRequest)
	}},
	{"SignalLatestWinsAndKindsIndependent", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		h.must(h.store.StoreSignal(h.ctx, "wf", workflow.Cancel, workflow.SignalRequest{Reason: "first", RequestedBy: "a"}))
		h.must(h.store.StoreSignal(h.ctx, "wf", workflow.Cancel, workflow.SignalRequest{Reason: "second", RequestedBy: "b", RequestedAt: at}))
		h.must(h.store.StoreSignal(h.ctx, "wf", workflow.Pause, workflow.SignalRequest{Reason: "p"}))
		req, ok, err := h.store.GetSignal(h.ctx, "wf", workflow.Cancel)
		h.must(err)
		if !ok || req.Reason != "second" || req.RequestedBy != "b" || !req.RequestedAt.Equal(at) {
			t.Fatalf("cancel = %+v %v, want the second request", req, ok)
		}
		h.must(h.store.ClearSignal(h.ctx, "wf", workflow.Cancel))
		if _, ok, _ := h.store.GetSignal(h.ctx, "wf", workflow.Pause); !ok {
			t.Fatal("clearing cancel cleared pause")
		}
		before := h.lastSeq("wf")
		h.must(h.store.ClearSignal(h.ctx, "wf", workflow.Cancel)) // none pending
		h.unchanged("wf", before)
	}},
	{"CheckAndCancel", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		ok, err := h.store.CheckAndCancel(h.ctx, "wf", nil)
		if ok || err != nil {
			t.Fatalf("no request: %v %v", ok, err)
		}
		snap, rev := h.load("wf")
		h.checkpoint(snap, rev, 0, []byte("r0"))
		h.must(h.store.StoreSignal(h.ctx, "wf", workflow.Cancel, workflow.SignalRequest{Reason: "user", RequestedBy: "ops"}))
		ok, err = h.store.CheckAndCancel(h.ctx, "wf", &stTasks[1])
		if !ok || err != nil {
			t.Fatalf("CheckAndCancel = %v, %v", ok, err)
		}
		got, _ := h.load("wf")
		if got.State.Kind != workflow.Cancelled || got.State.Reason != "user" || got.State.By != "ops" ||
			got.State.InterruptedAtTask == nil || *got.State.InterruptedAtTask != stTasks[1] || got.CompletedTaskCount() != 1 {
			t.Fatalf("after cancel: %+v", got.State)
		}
		if _, pending, _ := h.store.GetSignal(h.ctx, "wf", workflow.Cancel); pending {
			t.Fatal("signal not cleared")
		}
		last := h.commits("wf")[len(h.commits("wf"))-1]
		if fmt.Sprint(last) != "[workflow.cancelled signal.cleared]" {
			t.Fatalf("last commit %v: the cancel and the clearing must be one commit", last)
		}
	}},
	{"CheckAndCancelNotInProgressLeavesSignal", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		h.finish("wf", workflow.Paused)
		h.must(h.store.StoreSignal(h.ctx, "wf", workflow.Cancel, workflow.SignalRequest{Reason: "r"}))
		before := h.lastSeq("wf")
		ok, err := h.store.CheckAndCancel(h.ctx, "wf", nil)
		if ok || err != nil {
			t.Fatalf("CheckAndCancel on paused = %v, %v", ok, err)
		}
		h.unchanged("wf", before)
		if _, pending, _ := h.store.GetSignal(h.ctx, "wf", workflow.Cancel); !pending {
			t.Fatal("the signal was dropped")
		}
	}},
	{"CheckAndPausePreservesPosition", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		snap, rev := h.load("wf")
		h.checkpoint(snap, rev, 0, []byte("r0"))
		h.must(h.store.StoreSignal(h.ctx, "wf", workflow.Pause, workflow.SignalRequest{Reason: "hold", RequestedBy: "ops"}))
		ok, err := h.store.CheckAndPause(h.ctx, "wf")
		if !ok || err != nil {
			t.Fatalf("CheckAndPause = %v, %v", ok, err)
		}
		got, _ := h.load("wf")
		if got.State.Kind != workflow.Paused || got.State.Position.TaskID != stTasks[1] || got.CompletedTaskCount() != 1 ||
			got.State.LastCompletedTask == nil || *got.State.LastCompletedTask != stTasks[0] || got.State.Reason != "hold" {
			t.Fatalf("paused state %+v", got.State)
		}
		un, err := h.store.Unpause(h.ctx, "wf")
		h.must(err)
		if un.State.Kind != workflow.InProgress || un.State.Position.TaskID != stTasks[1] || un.CompletedTaskCount() != 1 {
			t.Fatalf("unpaused state %+v", un.State)
		}
		_, err = h.store.Unpause(h.ctx, "wf")
		var np *lifecycle.NotPausedError
		if !errors.As(err, &np) || np.State != workflow.InProgress {
			t.Fatalf("Unpause of a running workflow = %v, want NotPausedError", err)
		}
		_, err = h.store.Unpause(h.ctx, "missing")
		wantErr(t, err, lifecycle.ErrNotFound)
	}},
	{"CancelWinsOverPause", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		h.must(h.store.StoreSignal(h.ctx, "wf", workflow.Pause, workflow.SignalRequest{}))
		h.must(h.store.StoreSignal(h.ctx, "wf", workflow.Cancel, workflow.SignalRequest{}))
		sig, err := h.store.CheckControlSignals(h.ctx, "wf", nil)
		if sig != lifecycle.ControlCancelled || err != nil {
			t.Fatalf("CheckControlSignals = %v, %v", sig, err)
		}
		if ok, _ := h.store.CheckAndPause(h.ctx, "wf"); ok {
			t.Fatal("paused a cancelled workflow")
		}
	}},
	{"CheckControlSignalsNoneWritesNothing", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		before := h.lastSeq("wf")
		for range 3 {
			sig, err := h.store.CheckControlSignals(h.ctx, "wf", nil)
			if sig != lifecycle.ControlNone || err != nil {
				t.Fatalf("= %v, %v", sig, err)
			}
		}
		h.unchanged("wf", before)
	}},
	{"CancelWhilePausedAppliedAtUnpause", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		h.must(h.store.StoreSignal(h.ctx, "wf", workflow.Pause, workflow.SignalRequest{Reason: "hold"}))
		if ok, err := h.store.CheckAndPause(h.ctx, "wf"); !ok || err != nil {
			t.Fatalf("pause: %v %v", ok, err)
		}
		h.must(h.store.StoreSignal(h.ctx, "wf", workflow.Cancel, workflow.SignalRequest{Reason: "abandon", RequestedBy: "ops"}))
		snap, _ := h.load("wf")
		if snap.State.Kind != workflow.Paused {
			t.Fatalf("a cancel while paused changed the state to %s before unpause", snap.State.Kind)
		}
		un, err := h.store.Unpause(h.ctx, "wf")
		h.must(err)
		if un.State.Kind != workflow.Cancelled || un.State.Reason != "abandon" {
			t.Fatalf("after unpause: %+v, want Cancelled with the request's reason", un.State)
		}
		cs := h.commits("wf")
		if last := fmt.Sprint(cs[len(cs)-1]); last != "[workflow.unpaused workflow.cancelled signal.cleared]" {
			t.Fatalf("last commit %s", last)
		}
	}},
	{"ExternalEventsFIFOPerName", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		for i := range 3 {
			h.must(h.store.SendEvent(h.ctx, "wf", "a", fmt.Appendf(nil, "a%d", i)))
		}
		h.must(h.store.SendEvent(h.ctx, "wf", "b", []byte("b0")))
		for i := range 3 {
			got, err := h.store.ConsumeEvent(h.ctx, lifecycle.ConsumeRequest{InstanceID: "wf", Name: "a"})
			h.must(err)
			if !got.OK || string(got.Payload) != fmt.Sprintf("a%d", i) {
				t.Fatalf("consume %d = %+v", i, got)
			}
		}
		before := h.lastSeq("wf")
		got, err := h.store.ConsumeEvent(h.ctx, lifecycle.ConsumeRequest{InstanceID: "wf", Name: "a"})
		if err != nil || got.OK {
			t.Fatalf("empty queue: %+v %v", got, err)
		}
		h.unchanged("wf", before)
		got, _ = h.store.ConsumeEvent(h.ctx, lifecycle.ConsumeRequest{InstanceID: "wf", Name: "b"})
		if string(got.Payload) != "b0" {
			t.Fatalf("b = %q", got.Payload)
		}
	}},
	{"ConsumeAndAdvanceAtomic", func(t *testing.T, h *storeHarness) {
		p := h.start("wf")
		snap := p.Snapshot
		next := stTasks[2]
		snap.UpdatePosition(workflow.Position{Kind: workflow.AtSignal, NodeID: stTasks[1], SignalName: "go", NextTaskID: &next}, snap.UpdatedAt)
		rev, err := h.store.SaveSnapshot(h.ctx, snap, p.Revision)
		h.must(err)
		h.must(h.store.SendEvent(h.ctx, "wf", "go", []byte("payload")))
		advance := func(s *workflow.Snapshot, payload []byte) error {
			s.MarkTaskCompleted(stTasks[1], payload, s.UpdatedAt)
			s.UpdatePosition(workflow.AtTaskPosition(next), s.UpdatedAt)
			return nil
		}
		// A stale revision is refused and consumes nothing.
		_, err = h.store.ConsumeEvent(h.ctx, lifecycle.ConsumeRequest{InstanceID: "wf", Name: "go", Revision: p.Revision, Advance: advance})
		wantErr(t, err, lifecycle.ErrStale)
		got, err := h.store.ConsumeEvent(h.ctx, lifecycle.ConsumeRequest{InstanceID: "wf", Name: "go", Revision: rev, Advance: advance})
		h.must(err)
		if !got.OK || string(got.Payload) != "payload" {
			t.Fatalf("consume = %+v", got)
		}
		cs := h.commits("wf")
		if last := fmt.Sprint(cs[len(cs)-1]); last != "[event.consumed checkpoint.saved]" {
			t.Fatalf("last commit %s: consuming and advancing must be one commit", last)
		}
		after, rev2 := h.load("wf")
		if id, _ := after.CurrentTaskID(); id != next || rev2 != got.Revision {
			t.Fatalf("position %v rev %+v", after.State.Position, rev2)
		}
		if out, _ := after.TaskResult(stTasks[1]); string(out) != "payload" {
			t.Fatalf("signal node result %q", out)
		}
	}},
	{"CheckpointRacingCancel", func(t *testing.T, h *storeHarness) {
		// An executor checkpoints task after task while an operator
		// cancels from another store. Whatever the interleaving, the
		// history explains the end state: every acknowledged checkpoint
		// is in it before the cancel, every refused one got ErrTerminal
		// or ErrStale, and the run ends Cancelled with the results of
		// exactly the checkpoints that landed before it.
		p := h.start("race")
		operator := h.other()
		var acked []int
		var execErr error
		var wg sync.WaitGroup
		wg.Go(func() {
			snap, rev := p.Snapshot, p.Revision
			for i := range 50 {
				id := workflow.NewTaskID(fmt.Sprint("race-", i))
				snap.MarkTaskCompleted(id, []byte{byte(i)}, snap.UpdatedAt)
				next, err := h.store.SaveSnapshot(h.ctx, snap, rev)
				if err != nil {
					if !errors.Is(err, lifecycle.ErrTerminal) && !errors.Is(err, lifecycle.ErrStale) {
						execErr = err
					}
					return
				}
				acked = append(acked, i)
				rev = next
				if sig, err := h.store.CheckControlSignals(h.ctx, "race", nil); err != nil || sig != lifecycle.ControlNone {
					execErr = err
					return
				}
			}
		})
		var opErr error
		wg.Go(func() {
			if opErr = operator.StoreSignal(h.ctx, "race", workflow.Cancel, workflow.SignalRequest{Reason: "stop", RequestedBy: "op"}); opErr != nil {
				return
			}
			_, opErr = operator.CheckAndCancel(h.ctx, "race", nil)
		})
		wg.Wait()
		if execErr != nil || opErr != nil {
			t.Fatalf("executor: %v; operator: %v", execErr, opErr)
		}
		st, err := h.other().Load(h.ctx, "race")
		h.must(err)
		cancelledAt := -1
		results := 0
		for i, types := range h.commits("race") {
			for _, ty := range types {
				switch ty {
				case events.CheckpointSaved:
					if cancelledAt >= 0 {
						t.Fatalf("a checkpoint landed after the cancel (commit %d)", i)
					}
					results++
				case events.WorkflowCancelled:
					cancelledAt = i
				}
			}
		}
		if results != len(acked) {
			t.Fatalf("%d checkpoints in the history, %d acknowledged", results, len(acked))
		}
		snap := st.Snapshot
		if cancelledAt >= 0 {
			if snap.State.Kind != workflow.Cancelled || snap.CompletedTaskCount() != len(acked) {
				t.Fatalf("end state %s with %d results; %d checkpoints landed before the cancel", snap.State.Kind, snap.CompletedTaskCount(), len(acked))
			}
		} else if len(acked) != 50 {
			// The cancel was applied by the executor's own check, or it
			// came after the last checkpoint and is still pending.
			if snap.State.Kind != workflow.Cancelled {
				t.Fatalf("executor stopped after %d checkpoints, state %s", len(acked), snap.State.Kind)
			}
		}
	}},
	{"TaskResultsAfterCompletion", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		snap, rev := h.load("wf")
		h.checkpoint(snap, rev, 0, []byte("r0"))
		h.finish("wf", workflow.Completed)
		out, ok, err := h.store.LoadTaskResult(h.ctx, "wf", stTasks[0])
		if err != nil || !ok || string(out) != "r0" {
			t.Fatalf("LoadTaskResult after completion = %q %v %v", out, ok, err)
		}
		_, ok, err = h.store.LoadTaskResult(h.ctx, "wf", stTasks[5])
		if err != nil || ok {
			t.Fatalf("missing task: %v %v", ok, err)
		}
		_, _, err = h.store.LoadTaskResult(h.ctx, "nope", stTasks[0])
		wantErr(t, err, lifecycle.ErrNotFound)
	}},
	{"BadInputWritesNothing", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		before := h.lastSeq("wf")
		big := bytes.Repeat([]byte("x"), 64<<10+1)
		wantErr(t, h.store.SendEvent(h.ctx, "wf", "e", big), lifecycle.ErrInvalidRequest)
		wantErr(t, h.store.SendEvent(h.ctx, "wf", "", nil), lifecycle.ErrInvalidRequest)
		snap, rev := h.load("wf")
		_, err := h.store.SaveTaskResult(h.ctx, "wf", rev, stTasks[0], big)
		wantErr(t, err, lifecycle.ErrInvalidRequest)
		snap.DefinitionHash = workflow.DefinitionHashOf("other")
		_, err = h.store.SaveSnapshot(h.ctx, snap, rev)
		wantErr(t, err, lifecycle.ErrInvalidRequest)
		_, err = h.store.SaveSnapshot(h.ctx, nil, rev)
		wantErr(t, err, lifecycle.ErrInvalidRequest)
		_, err = h.store.PrepareRun(h.ctx, lifecycle.PrepareRunRequest{InstanceID: "big", Input: big})
		wantErr(t, err, lifecycle.ErrInvalidRequest)
		_, err = h.store.PrepareRun(h.ctx, lifecycle.PrepareRunRequest{InstanceID: "no-first-task", DefinitionHash: stDef})
		wantErr(t, err, lifecycle.ErrInvalidRequest)
		wantErr(t, h.store.SendEvent(h.ctx, "missing", "e", nil), lifecycle.ErrNotFound)
		wantErr(t, h.store.SendEvent(h.ctx, "", "e", nil), lifecycle.ErrInvalidInstanceID)
		h.unchanged("wf", before)
		if h.lastSeq("big") != 0 || h.lastSeq("missing") != 0 || h.lastSeq("no-first-task") != 0 {
			t.Fatal("a refused call created history")
		}
	}},
	{"NamesRecordedOncePerHistory", func(t *testing.T, h *storeHarness) {
		// The definition's names ride on the first snapshot.created of
		// that definition in the history, not on later runs of it (a
		// definition change is refused anyway); the projection, read by
		// another store, names the tasks; a bad definition is refused and
		// writes nothing.
		names := make([]string, len(stTasks))
		for i := range names {
			names[i] = fmt.Sprintf("task-%d", i)
		}
		v1 := &workflow.Definition{Name: "conformance", Version: "v1", Tasks: names}
		req := lifecycle.PrepareRunRequest{InstanceID: "named", DefinitionHash: stDef, FirstTask: workflow.NewTaskHint("task-0"), Workflow: v1}
		if _, err := h.store.PrepareRun(h.ctx, req); err != nil {
			t.Fatal(err)
		}
		req.Policy = workflow.TerminateExisting
		if _, err := h.store.PrepareRun(h.ctx, req); err != nil {
			t.Fatal(err)
		}
		other := workflow.DefinitionHashOf("store-conformance v2")
		v2 := &workflow.Definition{Name: "conformance", Version: "v2", Tasks: []string{"first", "second"}}
		if _, err := h.store.PrepareRun(h.ctx, lifecycle.PrepareRunRequest{InstanceID: "named", DefinitionHash: other, FirstTask: workflow.NewTaskHint("first"),
			Policy: workflow.TerminateExisting, Workflow: v2}); err == nil {
			t.Fatal("TerminateExisting with another definition was not refused") // PrepareRun refuses a definition change
		}
		var recorded []string
		for _, rec := range h.records("named") {
			for _, e := range rec.Commit.Events {
				if d, ok := e.Data.(*events.SnapshotCreatedData); ok {
					if d.Workflow != nil {
						recorded = append(recorded, d.Workflow.Name+" "+d.Workflow.Version)
					} else {
						recorded = append(recorded, "-")
					}
				}
			}
		}
		if fmt.Sprint(recorded) != "[conformance v1 -]" {
			t.Errorf("snapshot.created workflow fields %v, want [conformance v1 -]", recorded)
		}
		st, err := h.other().Load(h.ctx, "named")
		if err != nil {
			t.Fatal(err)
		}
		if n, ok := st.TaskName(stTasks[3]); !ok || n != "task-3" {
			t.Errorf("TaskName = %q %v, want task-3", n, ok)
		}
		if wf, ok := st.Workflow(); !ok || wf.Version != "v1" {
			t.Errorf("Workflow = %+v %v", wf, ok)
		}
		for what, bad := range map[string]lifecycle.PrepareRunRequest{
			"no workflow name":   {InstanceID: "bad-def", DefinitionHash: stDef, FirstTask: workflow.NewTaskHint("a"), Workflow: &workflow.Definition{Tasks: []string{"a"}}},
			"a repeated task":    {InstanceID: "bad-def", DefinitionHash: stDef, FirstTask: workflow.NewTaskHint("a"), Workflow: &workflow.Definition{Name: "w", Tasks: []string{"a", "a"}}},
			"first task unnamed": {InstanceID: "bad-def", DefinitionHash: stDef, FirstTask: workflow.NewTaskHint("z"), Workflow: &workflow.Definition{Name: "w", Tasks: []string{"a"}}},
		} {
			if _, err := h.store.PrepareRun(h.ctx, bad); !errors.Is(err, lifecycle.ErrInvalidRequest) {
				t.Errorf("%s: %v, want ErrInvalidRequest", what, err)
			}
		}
		if h.lastSeq("bad-def") != 0 {
			t.Error("a refused definition wrote")
		}
	}},
	{"CheckpointHistoryIsLinear", func(t *testing.T, h *storeHarness) {
		// A workflow of N tasks writes O(N) bytes of history, not O(N²):
		// 1,000 tasks, a checkpoint after each.
		const n = 1000
		out := bytes.Repeat([]byte("o"), 100)
		p := h.start("long")
		snap, rev := p.Snapshot, p.Revision
		for i := range n {
			snap.MarkTaskCompleted(workflow.NewTaskID(fmt.Sprint("t", i)), out, snap.UpdatedAt)
			snap.UpdatePosition(workflow.AtTaskPosition(workflow.NewTaskID(fmt.Sprint("t", i+1))), snap.UpdatedAt)
			var err error
			if rev, err = h.store.SaveSnapshot(h.ctx, snap, rev); err != nil {
				t.Fatal(err)
			}
		}
		total := 0
		for m, err := range h.log.Read(h.ctx, "long", 0) {
			h.must(err)
			total += len(m.Data)
		}
		// Each checkpoint carries one 100-byte output (136 in base64), a
		// task id and a position: bounded by 1.2 × changed bytes + 512.
		perCheckpoint := float64(total) / n
		if limit := 1.2*136 + 512; perCheckpoint > limit {
			t.Fatalf("%.0f history bytes per checkpoint, limit %.0f: checkpoints are not carrying only what changed", perCheckpoint, limit)
		}
	}},
	{"InvalidUTF8Refused", func(t *testing.T, h *storeHarness) {
		// Text that JSON cannot carry is refused, writing nothing: the
		// wire would hold U+FFFD while the writer kept the raw bytes.
		h.start("wf")
		before := h.lastSeq("wf")
		bad := "name\xff"
		wantErr(t, h.store.SendEvent(h.ctx, "wf", bad, []byte("x")), lifecycle.ErrInvalidRequest)
		_, err := h.store.ConsumeEvent(h.ctx, lifecycle.ConsumeRequest{InstanceID: "wf", Name: bad})
		if err != nil && !errors.Is(err, lifecycle.ErrInvalidRequest) {
			t.Fatalf("ConsumeEvent with invalid UTF-8: %v", err)
		}
		wantErr(t, h.store.StoreSignal(h.ctx, "wf", workflow.Cancel, workflow.SignalRequest{Reason: bad}), lifecycle.ErrInvalidRequest)
		wantErr(t, h.store.StoreSignal(h.ctx, "wf", workflow.Pause, workflow.SignalRequest{RequestedBy: bad}), lifecycle.ErrInvalidRequest)
		wantErr(t, h.store.StoreSignal(lifecycle.WithActor(h.ctx, bad), "wf", workflow.Pause, workflow.SignalRequest{}), lifecycle.ErrInvalidRequest)
		wantErr(t, h.store.DeleteSnapshot(h.ctx, "wf", bad), lifecycle.ErrInvalidRequest)
		snap, rev := h.load("wf")
		snap.MarkFailed(bad, snap.UpdatedAt)
		_, err = h.store.SaveSnapshot(h.ctx, snap, rev)
		wantErr(t, err, lifecycle.ErrInvalidRequest)
		h.unchanged("wf", before)
		// The store's cache was not changed either.
		if st, err := h.store.Load(h.ctx, "wf"); err != nil || st.Pending() != 0 || len(st.Signals) != 0 || st.Snapshot.State.Kind != workflow.InProgress {
			t.Fatalf("after refused writes: %v, %d events, %d signals, state %v", err, st.Pending(), len(st.Signals), st.Snapshot.State.Kind)
		}
	}},
	{"CheckpointResumesTheFold", func(t *testing.T, h *storeHarness) {
		cps := checkpointsOf(t, h.log)
		counted := &countingCheckpoints{Checkpoints: cps}
		a, err := lifecycle.New(h.log, lifecycle.Config{Checkpoints: counted, CheckpointEvery: 8})
		h.must(err)
		long := checkpointedHistory(t, h, a, "wf")
		if counted.saves.Load() == 0 {
			t.Fatalf("no checkpoint written over %d commits (every 8)", long)
		}
		full, err := projection.Fold("wf", h.log.Read(h.ctx, "wf", 0))
		h.must(err)
		// A store that never saw the instance starts from the checkpoint
		// and reads only the commits after it.
		reads := &countingLog{Log: h.log}
		b, err := lifecycle.New(reads, lifecycle.Config{Checkpoints: counted, CheckpointEvery: 8})
		h.must(err)
		st, err := b.Load(h.ctx, "wf")
		h.must(err)
		sameState(t, st, full)
		if counted.hits.Load() == 0 || reads.read.Load() >= int64(long) {
			t.Fatalf("the cold load read %d messages of %d (checkpoints used: %d)", reads.read.Load(), long, counted.hits.Load())
		}
		// And it goes on writing from there.
		snap, rev, err := b.LoadSnapshot(h.ctx, "wf")
		h.must(err)
		snap.MarkTaskCompleted(stTasks[3], []byte("late"), snap.UpdatedAt)
		_, err = b.SaveSnapshot(h.ctx, snap, rev)
		h.must(err)
		full, err = projection.Fold("wf", h.log.Read(h.ctx, "wf", 0))
		h.must(err)
		c, err := lifecycle.New(h.log, lifecycle.Config{Checkpoints: counted})
		h.must(err)
		st, err = c.Load(h.ctx, "wf")
		h.must(err)
		sameState(t, st, full)
	}},
	{"BadCheckpointIgnored", func(t *testing.T, h *storeHarness) {
		cps := checkpointsOf(t, h.log)
		a, err := lifecycle.New(h.log, lifecycle.Config{Checkpoints: cps, CheckpointEvery: 8})
		h.must(err)
		checkpointedHistory(t, h, a, "wf")
		full, err := projection.Fold("wf", h.log.Read(h.ctx, "wf", 0))
		h.must(err)
		good, ok, err := cps.LoadCheckpoint(h.ctx, "wf")
		if err != nil || !ok {
			t.Fatalf("no checkpoint: %v", err)
		}
		cp, err := projection.UnmarshalCheckpoint("wf", good)
		h.must(err)
		forge := func(edit func(st *projection.State)) []byte {
			st := cp.Clone()
			edit(&st)
			b, err := st.MarshalCheckpoint()
			h.must(err)
			return b
		}
		for name, data := range map[string][]byte{
			"garbage":          []byte("not a checkpoint"),
			"wrong head":       forge(func(st *projection.State) { st.Head[0] ^= 1; st.Exists, st.Snapshot = false, nil }),
			"beyond the end":   forge(func(st *projection.State) { st.LastSeq += 1 << 40 }),
			"another instance": forge(func(st *projection.State) { st.Instance = "other" }),
		} {
			h.must(cps.SaveCheckpoint(h.ctx, "wf", data))
			b, err := lifecycle.New(h.log, lifecycle.Config{Checkpoints: cps, Logger: slog.New(slog.DiscardHandler)})
			h.must(err)
			st, err := b.Load(h.ctx, "wf")
			if err != nil {
				t.Fatalf("%s: Load: %v", name, err)
			}
			sameState(t, st, full)
		}
	}},
	{"RefusalConfirmedOnFreshState", func(t *testing.T, h *storeHarness) {
		// This store's cache says the instance was deleted; another
		// store has started it again since. A refusal decided on the
		// cache (not found) must be confirmed on fresh state, where the
		// instance exists: the event is sent.
		h.start("wf")
		h.must(h.store.DeleteSnapshot(h.ctx, "wf", "gone"))
		if _, err := h.other().PrepareRun(h.ctx, lifecycle.PrepareRunRequest{InstanceID: "wf", DefinitionHash: stDef, FirstTask: workflow.TaskHint{ID: stTasks[0]}}); err != nil {
			t.Fatal(err)
		}
		if err := h.store.SendEvent(h.ctx, "wf", "go", []byte("p")); err != nil {
			t.Fatalf("SendEvent after another store re-created the instance: %v", err)
		}
	}},
	{"ClearSignalUnknownKind", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		h.must(h.store.StoreSignal(h.ctx, "wf", workflow.Cancel, workflow.SignalRequest{Reason: "x"}))
		before := h.lastSeq("wf")
		wantErr(t, h.store.ClearSignal(h.ctx, "wf", workflow.SignalKind(99)), lifecycle.ErrInvalidRequest)
		h.unchanged("wf", before)
	}},
	{"CheckpointCannotChangeCreatedAt", func(t *testing.T, h *storeHarness) {
		h.start("wf")
		snap, rev := h.load("wf")
		before := h.lastSeq("wf")
		snap.CreatedAt = snap.CreatedAt.Add(-time.Hour)
		snap.MarkTaskCompleted(stTasks[0], []byte("r0"), snap.UpdatedAt)
		_, err := h.store.SaveSnapshot(h.ctx, snap, rev)
		wantErr(t, err, lifecycle.ErrInvalidRequest)
		h.unchanged("wf", before)
	}},
	{"CompleteWithLastTaskKeepsResult", func(t *testing.T, h *storeHarness) {
		// The last task and the workflow completed in one save: the
		// task's result is recorded in the same commit (Sayiir's
		// Postgres backend keeps it), for SaveSnapshot and for an
		// advancing ConsumeEvent, completing and failing.
		for _, tc := range []struct {
			id      string
			consume bool
			state   workflow.StateKind
		}{{"save", false, workflow.Completed}, {"consume", true, workflow.Completed}, {"fail", false, workflow.Failed}} {
			h.start(tc.id)
			snap, rev := h.load(tc.id)
			rev = h.checkpoint(snap, rev, 0, []byte("r0"))
			before := len(h.commits(tc.id))
			finish := func(s *workflow.Snapshot) {
				s.MarkTaskCompleted(stTasks[1], []byte("r1"), s.UpdatedAt)
				if tc.state == workflow.Completed {
					s.MarkCompleted([]byte("final"), s.UpdatedAt)
				} else {
					s.MarkFailed("boom", s.UpdatedAt)
				}
			}
			if tc.consume {
				h.must(h.store.SendEvent(h.ctx, tc.id, "go", []byte("p")))
				before++
				c, err := h.store.ConsumeEvent(h.ctx, lifecycle.ConsumeRequest{InstanceID: tc.id, Name: "go", Revision: rev,
					Advance: func(s *workflow.Snapshot, _ []byte) error { finish(s); return nil }})
				h.must(err)
				if !c.OK {
					t.Fatalf("%s: nothing consumed", tc.id)
				}
			} else {
				finish(snap)
				_, err := h.store.SaveSnapshot(h.ctx, snap, rev)
				h.must(err)
			}
			cs := h.commits(tc.id)
			if len(cs) != before+1 {
				t.Fatalf("%s: %d commits, want %d: the finishing save is one commit", tc.id, len(cs), before+1)
			}
			if last := cs[len(cs)-1]; !slices.Contains(last, events.CheckpointSaved) {
				t.Errorf("%s: the finishing commit is %v, without the task's checkpoint", tc.id, last)
			}
			for _, s := range []*lifecycle.Store{h.store, h.other()} {
				for i, want := range []string{"r0", "r1"} {
					out, ok, err := s.LoadTaskResult(h.ctx, tc.id, stTasks[i])
					if err != nil || !ok || string(out) != want {
						t.Errorf("%s: LoadTaskResult(task-%d) = %q, %v, %v, want %q", tc.id, i, out, ok, err, want)
					}
				}
			}
			got, _ := h.load(tc.id)
			if got.State.Kind != tc.state || len(got.State.CompletedTasks) != 0 {
				t.Errorf("%s: state %v with %d task results, want %v with none (Sayiir's snapshot)", tc.id, got.State.Kind, len(got.State.CompletedTasks), tc.state)
			}
		}
	}},
}

func (h *storeHarness) must(err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
}

// checkpointsOf returns the log's own checkpoint store, or skips.
func checkpointsOf(t *testing.T, log lifecycle.Log) lifecycle.Checkpoints {
	t.Helper()
	l, ok := log.(interface{ Checkpoints() lifecycle.Checkpoints })
	if !ok {
		t.Skipf("%T keeps no checkpoints", log)
	}
	return l.Checkpoints()
}

// checkpointedHistory writes a history of some 40 commits through s
// (checkpoints, signals, external events, a result), and returns its
// number of messages.
func checkpointedHistory(t *testing.T, h *storeHarness, s *lifecycle.Store, id string) int {
	t.Helper()
	p, err := s.PrepareRun(h.ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: stDef, Input: []byte("in"), FirstTask: workflow.TaskHint{ID: stTasks[0]}})
	h.must(err)
	snap, rev := p.Snapshot, p.Revision
	for i := range 30 {
		snap.MarkTaskCompleted(stTasks[i%len(stTasks)], []byte(fmt.Sprint("out", i)), snap.UpdatedAt)
		snap.UpdatePosition(workflow.AtTaskPosition(stTasks[(i+1)%len(stTasks)]), snap.UpdatedAt)
		rev, err = s.SaveSnapshot(h.ctx, snap, rev)
		h.must(err)
		if i%10 == 3 {
			h.must(s.SendEvent(h.ctx, id, "ev", []byte(fmt.Sprint(i))))
			h.must(s.StoreSignal(h.ctx, id, workflow.Pause, workflow.SignalRequest{Reason: fmt.Sprint(i)}))
			h.must(s.ClearSignal(h.ctx, id, workflow.Pause))
		}
	}
	n := 0
	for _, err := range h.log.Read(h.ctx, id, 0) {
		h.must(err)
		n++
	}
	return n
}

// sameState fails unless got and want fold the same (their canonical
// checkpoint encodings are equal).
func sameState(t *testing.T, got, want projection.State) {
	t.Helper()
	g, err := got.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	w, err := want.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Fatalf("states differ:\ngot:  %s\nwant: %s", g, w)
	}
}

// countingCheckpoints counts the checkpoints found and written.
type countingCheckpoints struct {
	lifecycle.Checkpoints
	hits, saves atomic.Int64
}

func (c *countingCheckpoints) LoadCheckpoint(ctx context.Context, id string) ([]byte, bool, error) {
	b, ok, err := c.Checkpoints.LoadCheckpoint(ctx, id)
	if ok {
		c.hits.Add(1)
	}
	return b, ok, err
}

func (c *countingCheckpoints) SaveCheckpoint(ctx context.Context, id string, data []byte) error {
	c.saves.Add(1)
	return c.Checkpoints.SaveCheckpoint(ctx, id, data)
}

// countingLog counts the messages its Read yields (and hides Last, so
// that every read is counted).
type countingLog struct {
	lifecycle.Log
	read atomic.Int64
}

func (l *countingLog) Read(ctx context.Context, id string, after uint64) iter.Seq2[events.Message, error] {
	return func(yield func(events.Message, error) bool) {
		for m, err := range l.Log.Read(ctx, id, after) {
			if err == nil {
				l.read.Add(1)
			}
			if !yield(m, err) {
				return
			}
		}
	}
}
