package visibility_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/visibility"
	"github.com/runlog/runlog/workflow"
)

// log is what the tests need of a log: appended to through lifecycle,
// read by the index and by audit.Describe.
type log interface {
	lifecycle.Log
	visibility.Log
	audit.Source
	Catalog(ctx context.Context) (lifecycle.Log, error)
}

// logs returns the two logs the index must agree on: memlog, and
// JetStream with k partitions.
func logs(t *testing.T, k int) map[string]func(t *testing.T) log {
	return map[string]func(t *testing.T) log{
		"memlog": func(t *testing.T) log { return memlog.New(nil) },
		fmt.Sprintf("jetstream-%d", k): func(t *testing.T) log {
			s, err := jetstream.Open(t.Context(), natstest.Connect(t, natstest.Start(t)), jetstream.Config{Partitions: k})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

// clock is a deterministic clock, 1 s a call, safe for concurrent use.
func clock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

var (
	workflows = []*workflow.Definition{
		{Name: "checkout", Version: "v1", Tasks: []string{"reserve", "pay", "ship"}},
		{Name: "checkout", Version: "v2", Tasks: []string{"reserve", "pay", "ship"}},
		{Name: "refund", Tasks: []string{"check", "refund"}},
		nil,        // a run whose history names no workflow
		catalogued, // named only by the definition catalog, registered after its first runs
	}
	catalogued     = &workflow.Definition{Name: "payout", Version: "v3", Tasks: []string{"reserve"}}
	cataloguedHash = workflow.DefinitionHashOf("catalogued")
	actors         = []string{"alice@support", "bob@ops", "worker-1", ""}
)

// workload drives n instances through random lifecycles: runs created and
// replaced, checkpoints, completions and failures, cancel and pause
// requests by named actors, external events, deletes. It returns the
// instance ids.
func workload(t *testing.T, st *lifecycle.Store, rng *rand.Rand, n, steps int) []string {
	t.Helper()
	ctx := t.Context()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("order-%03d", i)
	}
	for range steps {
		i := rng.IntN(n)
		id := ids[i]
		actx := lifecycle.WithActor(ctx, actors[rng.IntN(len(actors))])
		cur, err := st.Load(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !cur.Exists || rng.IntN(10) == 0 {
			wf := workflows[i%len(workflows)] // a replacing run must be of the same definition
			req := lifecycle.PrepareRunRequest{InstanceID: id, Input: []byte(`{}`), Policy: workflow.TerminateExisting,
				FirstTask: workflow.NewTaskHint("reserve"), DefinitionHash: workflow.DefinitionHashOf("anon"), Workflow: wf}
			switch wf {
			case catalogued:
				req.DefinitionHash, req.Workflow = cataloguedHash, nil
			case nil:
			default:
				req.DefinitionHash = workflow.DefinitionHashOf(wf.Name + " " + wf.Version)
				req.FirstTask = workflow.NewTaskHint(wf.Tasks[0])
			}
			if _, err := st.PrepareRun(actx, req); err != nil {
				t.Fatalf("prepare %s: %v", id, err)
			}
			continue
		}
		snap := cur.Snapshot.Clone()
		rev := cur.Revision()
		if _, done := snap.FinishedFrom(); done || snap.State.Kind != workflow.InProgress {
			if rng.IntN(3) == 0 {
				if err := st.DeleteSnapshot(actx, id, "cleanup"); err != nil {
					t.Fatalf("delete %s: %v", id, err)
				}
			}
			continue
		}
		switch rng.IntN(7) {
		case 0:
			snap.MarkCompleted([]byte(`{"ok":true}`), time.Now())
			_, err = st.SaveSnapshot(actx, snap, rev)
		case 1:
			snap.MarkFailed("card expired", time.Now())
			_, err = st.SaveSnapshot(actx, snap, rev)
		case 2:
			err = st.StoreSignal(actx, id, workflow.Cancel, workflow.SignalRequest{Reason: "customer asked", RequestedBy: actors[rng.IntN(2)]})
			if err == nil && rng.IntN(2) == 0 {
				_, err = st.CheckAndCancel(actx, id, nil)
			}
		case 3:
			err = st.StoreSignal(actx, id, workflow.Pause, workflow.SignalRequest{Reason: "hold", RequestedBy: actors[rng.IntN(2)]})
		case 4:
			err = st.SendEvent(actx, id, "approval", []byte(`{"approved":true}`))
		case 5:
			_, err = st.CheckControlSignals(actx, id, nil)
		default:
			task, ok := snap.CurrentTaskID()
			if !ok {
				continue
			}
			_, err = st.SaveTaskResult(actx, id, rev, task, []byte(`{"step":"done"}`))
		}
		if err != nil {
			t.Fatalf("step on %s: %v", id, err)
		}
	}
	return ids
}

// describeAll folds every instance's whole history with audit.Describe
// (named by the catalog cat, when not nil): what the index must agree
// with.
func describeAll(t *testing.T, src audit.Source, ids []string, cat projection.Catalog) []audit.Instance {
	t.Helper()
	var out []audit.Instance
	for _, id := range ids {
		in, err := audit.DescribeNamed(t.Context(), src, id, cat)
		if err != nil {
			t.Fatal(err)
		}
		if in.Commits > 0 {
			out = append(out, in)
		}
	}
	return out
}

// queries are the filters whose answers the index must share with
// audit.Query.Matches, each alone and some together.
func queries(since time.Time) []audit.Query {
	cancel, pause := workflow.Cancel, workflow.Pause
	waitSignal := workflow.StatusAwaitingSignal
	return []audit.Query{
		{},
		{Statuses: []string{"failed"}},
		{Statuses: []string{"completed", "cancelled"}},
		{Statuses: []string{audit.StatusDeleted}},
		{Statuses: []string{"in_progress"}, Workflow: "checkout"},
		{Workflow: "checkout v2"},
		{Workflow: "refund"},
		{Workflow: "nosuch"},
		{Actor: "alice@support"},
		{Actor: "bob@ops", Statuses: []string{"cancelled"}},
		{Signal: &cancel},
		{Signal: &pause},
		{Waiting: &waitSignal},
		{Since: since},
		{Until: since},
		{CreatedSince: since},
		{EventType: events.EventSent},
		{EventType: events.SnapshotDeleted, Workflow: "checkout"},
		{Definition: workflow.DefinitionHashOf("refund ").String()[:6]},
		{Workflow: "payout"},
		{Workflow: "payout v3", Statuses: []string{"in_progress", "completed"}},
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantOf(ins []audit.Instance, q audit.Query) []audit.Instance {
	var out []audit.Instance
	for i := range ins {
		if q.Matches(&ins[i]) {
			out = append(out, ins[i])
		}
	}
	return out
}

func ids(ins []audit.Instance) []string {
	var out []string
	for _, in := range ins {
		out = append(out, in.ID)
	}
	return out
}

// TestIndexAgreesWithDescribe: after random lifecycles, caught up in
// several rounds while the log grows (so that instances are folded in
// pieces across catch-ups and batches), every query answers what
// audit.Describe of each whole history and audit.Query.Matches answer, on
// both logs; so do Count and the row of each instance.
func TestIndexAgreesWithDescribe(t *testing.T) {
	for name, open := range logs(t, 3) {
		t.Run(name, func(t *testing.T) {
			lg := open(t)
			now := clock()
			cat, err := lg.Catalog(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			st, err := lifecycle.New(lg, lifecycle.Config{Now: now, Catalog: cat})
			if err != nil {
				t.Fatal(err)
			}
			// Two indexes: one folds every instance changed again from its
			// history (no folds kept), one keeps five (evicting).
			var ixs []*visibility.Index
			for _, folds := range []int{0, 5} {
				ix, err := visibility.Open(filepath.Join(t.TempDir(), "index.db"))
				if err != nil {
					t.Fatal(err)
				}
				defer ix.Close()
				ix.SetBatch(37) // batches that end inside histories
				visibility.SetFoldCache(ix, folds)
				ixs = append(ixs, ix)
			}
			rng := rand.New(rand.NewPCG(uint64(len(name)), 7))
			var all []string
			var mid time.Time
			for round := range 3 {
				all = workload(t, st, rng, 40, 250)
				if round == 1 {
					mid = now()
					// Runs of it are indexed, unnamed, by now: the index
					// names them once the catalog does.
					if err := st.RegisterDefinition(t.Context(), cataloguedHash, catalogued); err != nil {
						t.Fatal(err)
					}
				}
				for _, ix := range ixs {
					if _, err := ix.CatchUp(t.Context(), lg, nil); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, ix := range ixs {
				agree(t, ix, lg, all, mid, st.Names(t.Context()))
			}
		})
	}
}

// agree checks that ix answers every query as audit.Describe and
// audit.Query.Matches do on the whole histories of lg.
func agree(t *testing.T, ix *visibility.Index, lg log, all []string, mid time.Time, cat projection.Catalog) {
	t.Helper()
	want := describeAll(t, lg, all, cat)
	for _, q := range queries(mid) {
		var w []string
		for i := range want {
			if q.Matches(&want[i]) {
				w = append(w, want[i].ID)
			}
		}
		got, err := ix.Search(t.Context(), q, visibility.SearchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(got), w) {
			t.Errorf("query %+v: index %v, describe %v", q, ids(got), w)
		} else if gb, wb := jsonOf(t, got), jsonOf(t, wantOf(want, q)); gb != wb {
			t.Errorf("query %+v: the rows differ:\nindex    %s\ndescribe %s", q, gb, wb)
		}
		groups, err := ix.Count(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		wantGroups := map[[2]string]int{}
		for i := range want {
			if q.Matches(&want[i]) {
				wantGroups[[2]string{want[i].Status, want[i].WorkflowLabel()}]++
			}
		}
		gotGroups := map[[2]string]int{}
		for _, g := range groups {
			gotGroups[[2]string{g.Status, g.Workflow}] += g.Count
		}
		if !maps.Equal(gotGroups, wantGroups) {
			t.Errorf("count %+v: %v, describe %v", q, gotGroups, wantGroups)
		}
	}
	statuses := map[string]bool{}
	for _, in := range want {
		statuses[in.Status] = true
		got, ok, err := ix.Get(t.Context(), in.ID)
		if err != nil || !ok {
			t.Fatalf("get %s: %v %v", in.ID, ok, err)
		}
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(in)
		if string(gb) != string(wb) {
			t.Errorf("row of %s:\nindex    %s\ndescribe %s", in.ID, gb, wb)
		}
	}
	// The catalog must have named some instances, or the agreement
	// above proves little of it.
	if n := len(wantOf(want, audit.Query{Workflow: "payout"})); n == 0 {
		t.Error("no instance is named by the catalog")
	}
	// The workload must have reached the statuses the queries ask
	// about, or the agreement above proves little.
	for _, s := range []string{"in_progress", "completed", "failed", "cancelled", audit.StatusDeleted} {
		if !statuses[s] {
			t.Errorf("the workload left no instance %s", s)
		}
	}
}

// TestSearchOrderAndPages: the orders and the id cursor.
func TestSearchOrderAndPages(t *testing.T) {
	lg := memlog.New(nil)
	st, err := lifecycle.New(lg, lifecycle.Config{Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	all := workload(t, st, rand.New(rand.NewPCG(1, 2)), 30, 200)
	ix, err := visibility.Open(filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if _, err := ix.CatchUp(t.Context(), lg, nil); err != nil {
		t.Fatal(err)
	}
	want := describeAll(t, lg, all, nil)
	var paged []string
	after := ""
	for {
		page, err := ix.Search(t.Context(), audit.Query{}, visibility.SearchOptions{Limit: 7, After: after})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, ids(page)...)
		after = page[len(page)-1].ID
	}
	if !slices.Equal(paged, ids(want)) {
		t.Errorf("paged by id: %v, want %v", paged, ids(want))
	}
	newest, err := ix.Search(t.Context(), audit.Query{}, visibility.SearchOptions{Order: visibility.ByUpdated, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	byTime := slices.Clone(want)
	slices.SortStableFunc(byTime, func(a, b audit.Instance) int { return b.Updated.Compare(a.Updated) })
	if !slices.Equal(ids(newest), ids(byTime[:5])) {
		t.Errorf("newest first: %v, want %v", ids(newest), ids(byTime[:5]))
	}
	if _, err := ix.Search(t.Context(), audit.Query{Statuses: []string{"bogus"}}, visibility.SearchOptions{}); err == nil {
		t.Error("a bad status was accepted")
	}
}

// TestIndexRebuildsForAnotherLog: an index built from one log, caught up
// with another of the same name (a stream deleted and made again), is
// rebuilt, not mixed.
func TestIndexRebuildsForAnotherLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	build := func(n int) (log, []string) {
		lg := memlog.New(clock())
		st, err := lifecycle.New(lg, lifecycle.Config{Now: clock()})
		if err != nil {
			t.Fatal(err)
		}
		return lg, workload(t, st, rand.New(rand.NewPCG(uint64(n), 3)), n, n*5)
	}
	ix, err := visibility.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	first, _ := build(20)
	if _, err := ix.CatchUp(t.Context(), first, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // another creation time
	second, ids2 := build(5)
	stats, err := ix.CatchUp(t.Context(), second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !stats.Rebuilt {
		t.Error("an index of another log was not rebuilt")
	}
	info, err := second.PartitionInfo(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if pos, err := ix.Position(t.Context()); err != nil || len(pos) != 1 || pos[0] != info.LastSeq {
		t.Errorf("position after the rebuild: %v %v, want [%d]", pos, err, info.LastSeq)
	}
	got, err := ix.Search(t.Context(), audit.Query{}, visibility.SearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if w := describeAll(t, second, ids2, nil); !slices.Equal(ids(got), ids(w)) {
		t.Errorf("after a rebuild: %v, want %v", ids(got), ids(w))
	}
}

// TestConcurrentCatchUps: several catch-ups of one index file, from two
// handles as two processes would have, while the log grows, end with the
// index a single catch-up builds.
func TestConcurrentCatchUps(t *testing.T) {
	lg := memlog.New(nil)
	st, err := lifecycle.New(lg, lifecycle.Config{Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "index.db")
	a, err := visibility.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := visibility.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a.SetBatch(11)
	b.SetBatch(13)
	rng := rand.New(rand.NewPCG(5, 5))
	var all []string
	for range 4 {
		all = workload(t, st, rng, 25, 120)
		var wg sync.WaitGroup
		for _, ix := range []*visibility.Index{a, b} {
			wg.Go(func() {
				if _, err := ix.CatchUp(context.Background(), lg, nil); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	want := describeAll(t, lg, all, nil)
	for _, ix := range []*visibility.Index{a, b} {
		got, err := ix.Search(t.Context(), audit.Query{}, visibility.SearchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if i >= len(got) {
				t.Fatalf("index has %d instances, want %d", len(got), len(want))
			}
			gb, _ := json.Marshal(got[i])
			wb, _ := json.Marshal(want[i])
			if string(gb) != string(wb) {
				t.Errorf("row of %s:\nindex    %s\ndescribe %s", want[i].ID, gb, wb)
			}
		}
	}
}
