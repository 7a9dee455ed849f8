package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/runlog/runlog/dispatch"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

func indexEntries(t *testing.T, x dispatch.Index) []dispatch.Entry {
	t.Helper()
	var es []dispatch.Entry
	for e, err := range x.Entries(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b dispatch.Entry) int { return compareStr(a.Instance, b.Instance) })
	return es
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// waitIndex waits until the KV index holds what a rebuild from the log
// gives (a memory index), at most 20 s.
func waitIndex(t *testing.T, x *RunnableIndex, store *lifecycle.Store, what string) []dispatch.Entry {
	t.Helper()
	want := dispatch.NewMemIndex()
	if err := want.Rebuild(t.Context(), store); err != nil {
		t.Fatal(err)
	}
	w := indexEntries(t, want)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := indexEntries(t, x)
		if reflect.DeepEqual(normalize(got), normalize(w)) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the maintained index\n%v\nwant (rebuilt from the log)\n%v", what, got, w)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// normalize drops what JSON does not keep exactly (monotonic clock
// readings, nil versus empty).
func normalize(es []dispatch.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = fmt.Sprintf("%s %s %s %d %v %s %s %v %d", e.Instance, e.Run, e.Task, e.Priority, e.Tags, e.Since.UTC().Format(time.RFC3339Nano),
			e.LastFailedWorker, e.Claim != nil, e.Seq)
	}
	return out
}

// TestRunnableIndexer: indexers kept running keep the KV index equal to
// one rebuilt from the log as instances are created, paused, claimed,
// advanced and completed, on 2 partitions; when the working indexer
// stops, the other takes over within the pinned TTL; Find over the KV
// index answers as over the rebuilt one.
func TestRunnableIndexer(t *testing.T) {
	s, _, _ := newStore(t, Config{Partitions: 2})
	ctx := t.Context()
	store, err := lifecycle.New(s, lifecycle.Config{Leases: s.Leases()})
	if err != nil {
		t.Fatal(err)
	}
	x := s.RunnableIndex()
	run := func() (context.CancelFunc, *sync.WaitGroup) {
		ictx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { _ = x.Run(ictx, store, IndexerOptions{PinnedTTL: time.Second}) })
		return cancel, &wg
	}
	stop1, wg1 := run()
	stop2, wg2 := run()
	defer func() { stop2(); wg2.Wait() }()

	task := workflow.NewTaskID("a")
	for i := range 10 {
		if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: fmt.Sprintf("j-%d", i), DefinitionHash: workflow.DefinitionHashOf("x"),
			FirstTask: workflow.TaskHint{ID: task, Tags: []string{fmt.Sprint("t", i%2)}}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := waitIndex(t, x, store, "after 10 creates"); len(got) != 10 {
		t.Fatalf("%d entries", len(got))
	}
	if err := store.StoreSignal(ctx, "j-1", workflow.Pause, workflow.SignalRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.ClaimTask(ctx, "j-2", task, "w", time.Minute); err != nil {
		t.Fatal(err)
	}
	snap, rev, err := store.LoadSnapshot(ctx, "j-3")
	if err != nil {
		t.Fatal(err)
	}
	snap.MarkCompleted([]byte("o"), snap.UpdatedAt)
	if _, err := store.SaveSnapshot(ctx, snap, rev); err != nil {
		t.Fatal(err)
	}
	if got := waitIndex(t, x, store, "after a pause, a claim and a completion"); len(got) != 8 {
		t.Fatalf("%d entries, want 8", len(got))
	}

	// The first indexer stops; the index keeps up through the other.
	stop1()
	wg1.Wait()
	if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "late", DefinitionHash: workflow.DefinitionHashOf("x"), FirstTask: workflow.TaskHint{ID: task}}); err != nil {
		t.Fatal(err)
	}
	if err := store.StoreSignal(ctx, "j-4", workflow.Cancel, workflow.SignalRequest{}); err != nil {
		t.Fatal(err)
	}
	waitIndex(t, x, store, "after the first indexer stopped")

	// Find agrees with the rebuilt index.
	mem := dispatch.NewMemIndex()
	if err := mem.Rebuild(ctx, store); err != nil {
		t.Fatal(err)
	}
	opts := dispatch.Options{Tags: []string{"t0"}, Now: time.Now().Add(time.Hour)}
	a, err := dispatch.Find(ctx, x, store, s.Leases(), "w-9", 0, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dispatch.Find(ctx, mem, store, s.Leases(), "w-9", 0, opts)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(ts []dispatch.AvailableTask) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.Instance)
		}
		return out
	}
	if !slices.Equal(ids(a), ids(b)) || len(a) == 0 {
		t.Fatalf("Find over the KV index %v, over the rebuilt one %v", ids(a), ids(b))
	}
}

// TestRunnableIndexRebuild: a rebuild from the log equals the index the
// indexer keeps, and fixes an index someone damaged.
func TestRunnableIndexRebuild(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	ctx := t.Context()
	store, err := lifecycle.New(s, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: fmt.Sprintf("r-%d", i), DefinitionHash: workflow.DefinitionHashOf("x"),
			FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("a")}}); err != nil {
			t.Fatal(err)
		}
	}
	x := s.RunnableIndex()
	if err := x.Rebuild(ctx, store); err != nil {
		t.Fatal(err)
	}
	if got := indexEntries(t, x); len(got) != 5 {
		t.Fatalf("rebuilt: %d entries", len(got))
	}
	// Damage: a bogus key and a missing one.
	kv, err := x.b.get(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "bogus", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, EncodeID("r-0")); err != nil {
		t.Fatal(err)
	}
	if err := x.Rebuild(ctx, store); err != nil {
		t.Fatal(err)
	}
	got := indexEntries(t, x)
	var names []string
	for _, e := range got {
		names = append(names, e.Instance)
	}
	if !slices.Equal(names, []string{"r-0", "r-1", "r-2", "r-3", "r-4"}) {
		t.Fatalf("after the rebuild: %v, want r-0 … r-4", names)
	}
	if _, err := kv.Get(ctx, "bogus"); err == nil {
		t.Fatal("the rebuild left a stray key")
	}
}

// TestRunnableWakeups: an idle worker waiting on wake-ups hears of a task
// as soon as it is indexed, FindHinted confirms it, and the same hint is
// refused once the task is claimed.
func TestRunnableWakeups(t *testing.T) {
	s, store, x, _ := indexEnv(t, true)
	ctx := t.Context()
	w := indexingWakeups(t, x, store)
	if _, ok, err := w.Wait(ctx, 50*time.Millisecond); err != nil || ok {
		t.Fatalf("a hint before any work: %v %v", ok, err)
	}
	task := workflow.NewTaskID("a")
	if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "woken", DefinitionHash: workflow.DefinitionHashOf("x"), FirstTask: workflow.TaskHint{ID: task}}); err != nil {
		t.Fatal(err)
	}
	hint, ok, err := w.Wait(ctx, 20*time.Second)
	if err != nil || !ok || hint.Instance != "woken" || hint.Task != task {
		t.Fatalf("hint %+v, %v, %v; want woken's task", hint, ok, err)
	}
	a, ok, err := dispatch.FindHinted(ctx, hint, store, s.Leases())
	if err != nil || !ok || a.Instance != "woken" {
		t.Fatalf("FindHinted: %+v %v %v", a, ok, err)
	}
	if _, err := store.ClaimTask(ctx, "woken", task, "w-1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := dispatch.FindHinted(ctx, hint, store, s.Leases()); err != nil || ok {
		t.Fatalf("FindHinted of a claimed task: %v %v, want refused", ok, err)
	}
}

// TestWakeupsOncePerCommit: with the writer's hints, the indexer's hints
// and the index's updates all announcing each new task, a waiting worker
// hears of each commit once; the indexer's hint comes without the
// writer's.
func TestWakeupsOncePerCommit(t *testing.T) {
	for _, writerHints := range []bool{false, true} {
		t.Run(fmt.Sprintf("writer-hints=%v", writerHints), func(t *testing.T) {
			s, _, _ := newStore(t, Config{})
			x := s.RunnableIndex()
			cfg := lifecycle.Config{}
			if writerHints {
				cfg.AfterCommit = x.Hints()
			}
			store, err := lifecycle.New(s, cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			w := indexingWakeups(t, x, store)
			const n = 5
			for i := range n {
				if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: fmt.Sprintf("once-%d", i), DefinitionHash: workflow.DefinitionHashOf("x"), FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("a")}}); err != nil {
					t.Fatal(err)
				}
			}
			waitIndex(t, x, store, "after the creates")
			heard := map[string]int{}
			for {
				h, ok, err := w.Wait(ctx, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
				heard[h.Instance]++
			}
			for i := range n {
				if id := fmt.Sprintf("once-%d", i); heard[id] != 1 {
					t.Errorf("%s: heard %d times, want once (all: %v)", id, heard[id], heard)
				}
			}
		})
	}
}

// rebuiltLive rebuilds x from the log and returns a live copy of it,
// stopped when the test ends.
func rebuiltLive(t *testing.T, x *RunnableIndex, store *lifecycle.Store) *LiveIndex {
	t.Helper()
	if err := x.Rebuild(t.Context(), store); err != nil {
		t.Fatal(err)
	}
	live, err := x.Live(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.Stop() })
	return live
}

// indexingWakeups runs an indexer of x until the test ends and returns
// wake-ups of x, stopped then.
func indexingWakeups(t *testing.T, x *RunnableIndex, store *lifecycle.Store) *Wakeups {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = x.Run(ctx, store, IndexerOptions{}) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	w, err := x.Wakeups(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	return w
}

// TestIndexerHints: the indexer announces a new task on the hint subject
// before the entry's put; with IndexerOptions.NoHints it publishes
// nothing there and the index is kept all the same.
func TestIndexerHints(t *testing.T) {
	for _, noHints := range []bool{false, true} {
		t.Run(fmt.Sprintf("no-hints=%v", noHints), func(t *testing.T) {
			_, store, x, nc := indexEnv(t, false)
			ctx, cancel := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			defer func() { cancel(); wg.Wait() }()
			sub, err := nc.SubscribeSync(x.HintSubject())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			wg.Go(func() { _ = x.Run(ctx, store, IndexerOptions{NoHints: noHints}) })
			if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "h-1", DefinitionHash: workflow.DefinitionHashOf("x"), FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("a")}}); err != nil {
				t.Fatal(err)
			}
			waitIndex(t, x, store, "after the create")
			m, err := sub.NextMsg(500 * time.Millisecond)
			switch {
			case noHints && err == nil:
				t.Fatalf("an indexer with NoHints published %s", m.Data)
			case !noHints && err != nil:
				t.Fatalf("no hint from the indexer: %v", err)
			case !noHints:
				var e dispatch.Entry
				if err := json.Unmarshal(m.Data, &e); err != nil || e.Instance != "h-1" {
					t.Fatalf("hint %s (%v)", m.Data, err)
				}
			}
		})
	}
}

// indexAndFire runs an indexer and the timers of x until the test ends.
func indexAndFire(t *testing.T, x *RunnableIndex, store *lifecycle.Store, opts TimerOptions) {
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = x.Run(ctx, store, IndexerOptions{}) })
	wg.Go(func() { _ = x.RunTimers(ctx, store, opts) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// TestDurableTimers: a run parked at a delay moves on by itself when its
// wake time comes, with no caller but a timer process; a delay whose time
// passed while no timer process ran fires when one starts; a retried task
// is announced to waiting workers when its backoff ends.
func TestDurableTimers(t *testing.T) {
	_, store, x, _ := indexEnv(t, false)
	ctx := t.Context()
	a, b := workflow.NewTaskID("a"), workflow.NewTaskID("b")
	park := func(id string, wake time.Time) {
		if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: workflow.DefinitionHashOf("x"), FirstTask: workflow.TaskHint{ID: a}}); err != nil {
			t.Fatal(err)
		}
		snap, rev, err := store.LoadSnapshot(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		snap.MarkTaskCompleted(a, []byte("a-out"), snap.UpdatedAt)
		snap.UpdatePosition(workflow.Position{Kind: workflow.AtDelay, NodeID: workflow.NewTaskID("delay"), EnteredAt: time.Now(), WakeAt: &wake, NextTaskID: &b}, snap.UpdatedAt)
		if _, err := store.SaveSnapshot(ctx, snap, rev); err != nil {
			t.Fatal(err)
		}
	}
	// Parked while nothing ran, its time already past.
	park("overdue", time.Now().Add(-time.Minute))
	if err := x.Rebuild(ctx, store); err != nil {
		t.Fatal(err)
	}
	indexAndFire(t, x, store, TimerOptions{Poll: 100 * time.Millisecond})
	park("soon", time.Now().Add(1500*time.Millisecond))

	atB := func(id string) bool {
		snap, _, err := store.LoadSnapshot(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		task, ok := snap.CurrentTaskID()
		return ok && task == b
	}
	deadline := time.Now().Add(20 * time.Second)
	for !atB("overdue") || !atB("soon") {
		if time.Now().After(deadline) {
			t.Fatalf("timers did not fire: overdue at b %v, soon at b %v", atB("overdue"), atB("soon"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Both are runnable at b now, and their timers are gone.
	waitIndex(t, x, store, "after the timers fired")
	for tm, err := range x.Timers(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		t.Errorf("a timer left after firing: %+v", tm)
	}

	// A retry backing off for 1.5 s: a waiting worker hears of it when it
	// ends.
	w, err := x.Wakeups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	snap, rev, err := store.LoadSnapshot(ctx, "soon")
	if err != nil {
		t.Fatal(err)
	}
	retryAt := time.Now().Add(1500 * time.Millisecond)
	snap.TaskRetries = map[workflow.TaskID]workflow.TaskRetryState{b: {Attempts: 1, LastError: "boom", NextRetryAt: retryAt}}
	if _, err := store.SaveSnapshot(ctx, snap, rev); err != nil {
		t.Fatal(err)
	}
	for {
		h, ok, err := w.Wait(ctx, 20*time.Second)
		if err != nil || !ok {
			t.Fatalf("no wake-up for the retry: %v %v", ok, err)
		}
		if h.Instance == "soon" && !time.Now().Before(retryAt) {
			break // the announcement at the end of the backoff
		}
	}
}

// TestForkTimers: a run parked at a fork with a wake time is its
// runtime's to move: when the time comes the timers announce it on the
// resume subject, again after ResumeAgain while it has not moved, and no
// more once it has.
func TestForkTimers(t *testing.T) {
	_, store, x, nc := indexEnv(t, false)
	ctx := t.Context()
	a := workflow.NewTaskID("a")
	if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "forked", DefinitionHash: workflow.DefinitionHashOf("x"), FirstTask: workflow.TaskHint{ID: a}}); err != nil {
		t.Fatal(err)
	}
	snap, rev, err := store.LoadSnapshot(ctx, "forked")
	if err != nil {
		t.Fatal(err)
	}
	wake := time.Now().Add(time.Second)
	snap.UpdatePosition(workflow.Position{Kind: workflow.AtFork, NodeID: workflow.NewTaskID("fork"), WakeAt: &wake}, snap.UpdatedAt)
	if rev, err = store.SaveSnapshot(ctx, snap, rev); err != nil {
		t.Fatal(err)
	}
	announced := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(x.ResumeSubject(), announced)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	indexAndFire(t, x, store, TimerOptions{Poll: 50 * time.Millisecond, ResumeAgain: 300 * time.Millisecond})
	next := func(within time.Duration) (dispatch.Resumable, bool) {
		select {
		case m := <-announced:
			var r dispatch.Resumable
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatal(err)
			}
			return r, true
		case <-time.After(within):
			return dispatch.Resumable{}, false
		}
	}
	r, ok := next(20 * time.Second)
	switch {
	case !ok:
		t.Fatal("the fork was not announced")
	case r.Instance != "forked" || r.Reason != dispatch.ResumeReady || !r.Since.Equal(wake.UTC()) && !r.Since.Equal(wake):
		t.Fatalf("announced %+v, want forked ready since %v", r, wake)
	case time.Now().Before(wake):
		t.Fatal("announced before its wake time")
	}
	if r, ok := next(5 * time.Second); !ok || r.Instance != "forked" {
		t.Fatalf("not announced again after ResumeAgain: %+v %v", r, ok)
	}
	// The runtime resumes it: no more announcements.
	snap.UpdatePosition(workflow.AtTaskPosition(a), time.Now())
	if _, err := store.SaveSnapshot(ctx, snap, rev); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // an announcement already under way
	for len(announced) > 0 {
		<-announced
	}
	if r, ok := next(time.Second); ok {
		t.Fatalf("announced after the run moved on: %+v", r)
	}
}

// TestLiveIndex: a live copy of the index follows puts and removals.
func TestLiveIndex(t *testing.T) {
	_, store, x, _ := indexEnv(t, false)
	ctx := t.Context()
	for i := range 3 {
		if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: fmt.Sprintf("l-%d", i), DefinitionHash: workflow.DefinitionHashOf("x"), FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("a")}}); err != nil {
			t.Fatal(err)
		}
	}
	live := rebuiltLive(t, x, store)
	if live.Len() != 3 {
		t.Fatalf("live index holds %d entries, want 3", live.Len())
	}
	if err := store.StoreSignal(ctx, "l-1", workflow.Pause, workflow.SignalRequest{}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Load(ctx, "l-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Put(ctx, &st); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for live.Len() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("live index holds %d entries after a removal, want 2", live.Len())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLiveIndexOrder: a live index yields its entries in rank order
// (dispatch.CompareRank for the default aging interval), the bucket's
// entries and no others, while entries come, change and go; it keeps no
// order for another aging interval.
func TestLiveIndexOrder(t *testing.T) {
	_, store, x, _ := indexEnv(t, false)
	ctx := t.Context()
	create := func(id string, priority uint8) {
		t.Helper()
		if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: workflow.DefinitionHashOf("x"),
			FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("a"), Priority: &priority}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		create(fmt.Sprintf("o-%02d", i), uint8(i*7%5))
	}
	live := rebuiltLive(t, x, store)
	go func() { _ = x.Run(ctx, store, IndexerOptions{}) }()
	check := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			bucket := indexEntries(t, x)
			seq, ok := live.InRankOrder(ctx, dispatch.DefaultAgingInterval)
			if !ok {
				t.Fatal("no rank order for the default aging interval")
			}
			var got []dispatch.Entry
			for e, err := range seq {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, e)
			}
			slices.SortFunc(bucket, func(a, b dispatch.Entry) int { return dispatch.CompareRank(a, b, dispatch.DefaultAgingInterval) })
			same := slices.EqualFunc(got, bucket, func(a, b dispatch.Entry) bool { return a.Instance == b.Instance && a.Seq == b.Seq })
			if same && len(got) == want {
				if !slices.IsSortedFunc(got, func(a, b dispatch.Entry) int { return dispatch.CompareRank(a, b, dispatch.DefaultAgingInterval) }) {
					t.Fatal("the live index's order is not the rank order")
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("live index in rank order: %d entries %v, the bucket sorted: %d entries %v, want %d", len(got), names(got), len(bucket), names(bucket), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	check(40)
	for i := range 10 { // removed
		if err := store.StoreSignal(ctx, fmt.Sprintf("o-%02d", i*3), workflow.Pause, workflow.SignalRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 { // new, ahead of every other
		create(fmt.Sprintf("n-%d", i), 0)
	}
	check(35)
	if _, ok := live.InRankOrder(ctx, 10*time.Minute); ok {
		t.Error("a rank order for an aging interval the index does not keep")
	}
}

func names(es []dispatch.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Instance
	}
	return out
}

func TestRunnableIndexerBadOptions(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	store, err := lifecycle.New(s, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RunnableIndex().Run(t.Context(), store, IndexerOptions{PinnedTTL: -time.Second}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Run with a negative pinned TTL: %v, want ErrInvalidConfig", err)
	}
}

// TestWriterHints: a store whose AfterCommit is RunnableIndex.Hints
// announces each task it leaves runnable, with no indexer running; a
// commit that leaves nothing to run (a paused run) announces nothing.
func TestWriterHints(t *testing.T) {
	s, _, _ := newStore(t, Config{Partitions: 2})
	x := s.RunnableIndex()
	store, err := lifecycle.New(s, lifecycle.Config{AfterCommit: x.Hints()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	w, err := x.Wakeups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	task := workflow.NewTaskID("first")
	if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "hinted", DefinitionHash: workflow.DefinitionHashOf("h"),
		FirstTask: workflow.TaskHint{ID: task, Tags: []string{"gpu"}}}); err != nil {
		t.Fatal(err)
	}
	h, ok, err := w.Wait(ctx, 5*time.Second)
	if err != nil || !ok || h.Instance != "hinted" || h.Task != task || !slices.Equal(h.Tags, []string{"gpu"}) {
		t.Fatalf("hint %+v %v %v", h, ok, err)
	}
	if err := store.StoreSignal(ctx, "hinted", workflow.Pause, workflow.SignalRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := w.Wait(ctx, 300*time.Millisecond); err != nil || ok {
		t.Fatalf("a commit that leaves nothing runnable announced a hint: %v %v", ok, err)
	}
}

// TestControlTimers: a cancel requested of a run in progress is applied
// by the timers at once, but not while the task is held by a live claim:
// then once the claim is released.
func TestControlTimers(t *testing.T) {
	_, store, x, _ := indexEnv(t, true)
	ctx := t.Context()
	a := workflow.NewTaskID("a")
	for _, id := range []string{"idle", "held"} {
		if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: workflow.DefinitionHashOf("x"), FirstTask: workflow.TaskHint{ID: a}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.ClaimTask(ctx, "held", a, "w-1", time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"idle", "held"} {
		if err := store.StoreSignal(ctx, id, workflow.Cancel, workflow.SignalRequest{Reason: "stop", RequestedBy: "ops"}); err != nil {
			t.Fatal(err)
		}
	}
	indexAndFire(t, x, store, TimerOptions{Poll: 50 * time.Millisecond})
	kind := func(id string) workflow.StateKind {
		snap, _, err := store.LoadSnapshot(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return snap.State.Kind
	}
	waitCancelled := func(id string) {
		deadline := time.Now().Add(20 * time.Second)
		for kind(id) != workflow.Cancelled {
			if time.Now().After(deadline) {
				t.Fatalf("%s is %s, want cancelled by the timers", id, kind(id))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCancelled("idle")
	time.Sleep(300 * time.Millisecond) // several polls of the timers
	if k := kind("held"); k != workflow.InProgress {
		t.Fatalf("held is %s while its task's claim is live, want in progress (left to its worker)", k)
	}
	if err := store.ReleaseTaskClaim(ctx, "held", a, "w-1"); err != nil {
		t.Fatal(err)
	}
	waitCancelled("held")
}

// TestIndexEndsAsTheLogIs: puts are unconditional, so a writer that
// loaded an older state (a second indexer during a take-over, a rebuild)
// may put it after a newer one: a finished run's entry comes back, or a
// new run's entry is removed and its task never found. The indexer's and
// the rebuild's step (index) checks the log after its put and puts the
// state the log has: here the slow writer is the one whose first load is
// the older state.
func TestIndexEndsAsTheLogIs(t *testing.T) {
	_, store, x, _ := indexEnv(t, false)
	ctx := t.Context()
	task := workflow.NewTaskID("a")
	entry := func(id string) bool {
		t.Helper()
		for e, err := range x.Entries(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			if e.Instance == id {
				return true
			}
		}
		return false
	}
	load := func(id string) projection.State {
		t.Helper()
		st, err := store.Load(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	create := func(id string) {
		t.Helper()
		if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: workflow.DefinitionHashOf("x"), FirstTask: workflow.TaskHint{ID: task}}); err != nil {
			t.Fatal(err)
		}
	}

	// A run that finished, its older runnable state put last.
	create("done")
	older := load("done")
	snap, rev, err := store.LoadSnapshot(ctx, "done")
	if err != nil {
		t.Fatal(err)
	}
	snap.MarkTaskCompleted(task, []byte("out"), time.Now())
	snap.MarkCompleted([]byte("out"), time.Now())
	if _, err := store.SaveSnapshot(ctx, snap, rev); err != nil {
		t.Fatal(err)
	}
	newer := load("done")
	for _, st := range []*projection.State{&newer, &older} {
		if err := x.Put(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	if !entry("done") {
		t.Fatal("the older state put last did not bring the finished run's entry back: the race this test is about did not happen")
	}
	slow(t, x, store, "done", older)
	if entry("done") {
		t.Error("after index, the finished run still has an entry")
	}

	// A new run, the older state (no history) put last: its entry is gone.
	before := load("new")
	create("new")
	after := load("new")
	for _, st := range []*projection.State{&after, &before} {
		if err := x.Put(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	if entry("new") {
		t.Fatal("the older state put last left the new run's entry: the race this test is about did not happen")
	}
	slow(t, x, store, "new", before)
	if !entry("new") {
		t.Error("after index, the new run's task has no entry: it would never be found")
	}
}

// slow indexes id as a writer whose first load returned first (an older
// state), its later loads reading the log.
func slow(t *testing.T, x *RunnableIndex, store *lifecycle.Store, id string, first projection.State) {
	t.Helper()
	loads := 0
	_, err := x.indexFrom(t.Context(), id, func() (projection.State, error) {
		loads++
		if loads == 1 {
			return first, nil
		}
		return store.Load(t.Context(), id)
	})
	if err != nil {
		t.Fatal(err)
	}
	if loads != 2 {
		t.Errorf("%d loads, want 2: the older state, then the log's after the check", loads)
	}
}

// indexEnv is a log on a fresh server, a store on it (with the log's
// leases, for claims, when leases is set) and its runnable index.
func indexEnv(t *testing.T, leases bool) (*Log, *lifecycle.Store, *RunnableIndex, *nats.Conn) {
	t.Helper()
	s, _, nc := newStore(t, Config{})
	var cfg lifecycle.Config
	if leases {
		cfg.Leases = s.Leases()
	}
	store, err := lifecycle.New(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, store, s.RunnableIndex(), nc
}

// TestLiveIndexPassed: an entry older than a commit the process told the
// live index of (Passed) is left out — the one it held, and one the
// watch delivers late — until the watch delivers the state at that
// commit or later; a newer entry is never dropped.
func TestLiveIndexPassed(t *testing.T) {
	_, store, x, _ := indexEnv(t, false)
	ctx := t.Context()
	for _, id := range []string{"p-old", "p-new", "p-late"} {
		if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: workflow.DefinitionHashOf("x"),
			FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("a")}}); err != nil {
			t.Fatal(err)
		}
	}
	live := rebuiltLive(t, x, store)
	entry := func(id string) (dispatch.Entry, bool) {
		for e, err := range live.Entries(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			if e.Instance == id {
				return e, true
			}
		}
		return dispatch.Entry{}, false
	}
	// delivered waits until the watch has delivered every change made to
	// the bucket so far (a marker put after them has come).
	marks := 0
	delivered := func() {
		t.Helper()
		marks++
		mark := dispatch.Entry{Instance: fmt.Sprintf("mark-%d", marks), Seq: 1}
		if err := putOrRemove(ctx, x.b, mark.Instance, mark, true); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, ok := entry(mark.Instance); ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the watch did not deliver a put")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// put stores an entry of id at seq in the bucket, as the indexer
	// would, and waits until the watch has delivered it.
	put := func(id string, seq uint64) {
		t.Helper()
		e, _ := entry("p-new")
		e.Instance, e.Seq = id, seq
		if err := putOrRemove(ctx, x.b, id, e, true); err != nil {
			t.Fatal(err)
		}
		delivered()
	}
	old, ok := entry("p-old")
	if !ok {
		t.Fatal("no entry for p-old")
	}
	live.Passed("p-old", old.Seq+10)
	if _, ok := entry("p-old"); ok {
		t.Error("an entry older than the commit passed is still listed")
	}
	put("p-old", old.Seq+5) // late, and older than the commit: left out
	if e, ok := entry("p-old"); ok {
		t.Errorf("a late entry at %d, older than the commit passed at %d, is listed", e.Seq, old.Seq+10)
	}
	put("p-old", old.Seq+10) // the state at the commit: listed again
	if e, ok := entry("p-old"); !ok || e.Seq != old.Seq+10 {
		t.Errorf("the entry at the commit passed: %+v %v", e, ok)
	}
	put("p-old", old.Seq+5) // the mark is gone: the index follows the bucket again
	if e, ok := entry("p-old"); !ok || e.Seq != old.Seq+5 {
		t.Errorf("after the state at the commit came, a put is listed as is: %+v %v", e, ok)
	}

	newer, _ := entry("p-new")
	live.Passed("p-new", newer.Seq) // not older than its own state: kept
	if _, ok := entry("p-new"); !ok {
		t.Error("Passed dropped an entry as new as the commit")
	}
	late, _ := entry("p-late")
	live.Passed("p-late", late.Seq+3)
	if err := putOrRemove(ctx, x.b, "p-late", nil, false); err != nil { // the instance removed: the mark ends
		t.Fatal(err)
	}
	// Once the watch has delivered the removal: a KV watch delivers the
	// last value of each key, so a put that replaces the removal before
	// the watch reads it hides it (the mark then stays, which is as
	// right: the instance's later states are never older than the
	// commit passed).
	delivered()
	put("p-late", late.Seq+1)
	if _, ok := entry("p-late"); !ok {
		t.Error("after the instance's removal, an older put is left out still")
	}
}

// TestIndexerSkipsBacklog: an indexer behind the log puts an instance's
// current state once, and acknowledges the instance's older commits it
// is delivered after that without writing again: each of them is in the
// state it put.
func TestIndexerSkipsBacklog(t *testing.T) {
	s, store, x, _ := indexEnv(t, false)
	ctx := t.Context()
	if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "backlog", DefinitionHash: workflow.DefinitionHashOf("x"),
		FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("a")}}); err != nil {
		t.Fatal(err)
	}
	const commits = 20
	for i := range commits {
		if err := store.StoreSignal(ctx, "backlog", workflow.Pause, workflow.SignalRequest{Reason: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := x.b.get(ctx, true); err != nil { // the bucket, before the indexer writes
		t.Fatal(err)
	}
	go func() { _ = x.Run(ctx, store, IndexerOptions{}) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := s.js.Consumer(ctx, s.Streams()[0], "runlog-indexer")
		if err == nil {
			if i := c.CachedInfo(); i.NumPending == 0 && i.NumAckPending == 0 && i.AckFloor.Stream > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the indexer did not catch up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	info, err := s.js.Stream(ctx, "KV_"+x.b.cfg.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if writes := info.CachedInfo().State.LastSeq; writes > 2 {
		t.Errorf("the indexer wrote the bucket %d times for %d commits of one instance it was behind on, want the current state once", writes, commits+1)
	}
	if got := indexEntries(t, x); len(got) != 0 {
		t.Errorf("a paused instance is indexed: %v", names(got))
	}
}
