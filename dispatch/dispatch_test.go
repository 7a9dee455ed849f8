package dispatch_test

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/runlog/runlog/dispatch"
	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

var (
	t0    = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	def   = workflow.DefinitionHashOf("dispatch v1")
	taskA = workflow.NewTaskID("a")
	taskB = workflow.NewTaskID("b")
)

// clock is a settable clock for the store's commit times.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

type env struct {
	t      *testing.T
	ctx    context.Context
	store  *lifecycle.Store
	leases lifecycle.Leases
	clock  *clock
	idx    *dispatch.MemIndex
}

// logs runs fn on the in-memory log and on JetStream.
func logs(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, name := range []string{"memlog", "jetstream"} {
		t.Run(name, func(t *testing.T) {
			var log lifecycle.Log
			var leases lifecycle.Leases
			if name == "memlog" {
				l := memlog.New(nil)
				log, leases = l, l.Leases()
			} else {
				js, err := jetstream.Open(t.Context(), natstest.Connect(t, natstest.Start(t)), jetstream.Config{})
				if err != nil {
					t.Fatal(err)
				}
				log, leases = js, js.Leases()
			}
			c := &clock{t: t0}
			st, err := lifecycle.New(log, lifecycle.Config{Now: c.Now, Leases: leases})
			if err != nil {
				t.Fatal(err)
			}
			fn(t, &env{t: t, ctx: t.Context(), store: st, leases: leases, clock: c, idx: dispatch.NewMemIndex()})
		})
	}
}

// start creates id at task a with priority p (nil: unset) and tags, at
// time at.
func (e *env) start(id string, p *uint8, tags []string, at time.Time) {
	e.t.Helper()
	e.clock.set(at)
	if _, err := e.store.PrepareRun(e.ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: def, Input: []byte("in-" + id),
		FirstTask: workflow.TaskHint{ID: taskA, Priority: p, Tags: tags}}); err != nil {
		e.t.Fatal(err)
	}
}

// find rebuilds the index from the log and finds for worker.
func (e *env) find(worker string, limit int, opts dispatch.Options) []string {
	e.t.Helper()
	if err := e.idx.Rebuild(e.ctx, e.store); err != nil {
		e.t.Fatal(err)
	}
	got, err := dispatch.Find(e.ctx, e.idx, e.store, e.leases, worker, limit, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	var ids []string
	for _, a := range got {
		ids = append(ids, a.Instance)
	}
	// The index keeps its entries in rank order, which Find walks with
	// a limit: over the same index without the order, it finds the same.
	plain, err := dispatch.Find(e.ctx, unordered{e.idx}, e.store, e.leases, worker, limit, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	same := func(a, b dispatch.AvailableTask) bool { return a.Instance == b.Instance && a.Task == b.Task }
	if !slices.EqualFunc(got, plain, same) {
		e.t.Fatalf("Find over the index in rank order found %v, over the same entries unordered %v", ids, instances(plain))
	}
	// And with every limit, the walk in rank order finds the first tasks
	// of the whole answer.
	all, err := dispatch.Find(e.ctx, unordered{e.idx}, e.store, e.leases, worker, 0, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	for k := 1; k <= len(all); k++ {
		first, err := dispatch.Find(e.ctx, e.idx, e.store, e.leases, worker, k, opts)
		if err != nil {
			e.t.Fatal(err)
		}
		if !slices.EqualFunc(first, all[:k], same) {
			e.t.Fatalf("Find in rank order with limit %d found %v, want the first of %v", k, instances(first), instances(all))
		}
	}
	return ids
}

// unordered is an index without its rank order.
type unordered struct{ dispatch.Index }

func instances(ts []dispatch.AvailableTask) []string {
	var ids []string
	for _, a := range ts {
		ids = append(ids, a.Instance)
	}
	return ids
}

func p(v uint8) *uint8 { return &v }

func TestPriorityAndAging(t *testing.T) {
	logs(t, func(t *testing.T, e *env) {
		e.start("p5", p(5), nil, t0)
		e.start("p1", p(1), nil, t0)
		e.start("p3", nil, nil, t0) // unset reads as 3
		if got := e.find("w", 0, dispatch.Options{Now: t0}); !slices.Equal(got, []string{"p1", "p3", "p5"}) {
			t.Fatalf("by priority: %v, want p1 p3 p5", got)
		}
		// Priority 5 waiting 600 s with a 60 s interval (5 - 10) beats a
		// fresh priority 1.
		e.start("fresh1", p(1), nil, t0.Add(600*time.Second))
		got := e.find("w", 2, dispatch.Options{Now: t0.Add(600 * time.Second), AgingInterval: time.Minute})
		if len(got) != 2 || got[0] != "p1" || got[1] != "p3" {
			// p1 (1-10), p3 (3-10), p5 (5-10), fresh1 (1-0)
			t.Fatalf("aged: %v, want p1 p3 first", got)
		}
		all := e.find("w", 0, dispatch.Options{Now: t0.Add(600 * time.Second), AgingInterval: time.Minute})
		if i5, i1 := slices.Index(all, "p5"), slices.Index(all, "fresh1"); i5 < 0 || i1 < 0 || i5 > i1 {
			t.Fatalf("aged order %v: p5 (waited 600 s) must come before a fresh priority 1", all)
		}
		// A zero interval is clamped to 1 s, no panic.
		if got := e.find("w", 0, dispatch.Options{Now: t0.Add(time.Hour), AgingInterval: 1}); len(got) != 4 {
			t.Fatalf("with a tiny interval: %v", got)
		}
	})
}

func TestTags(t *testing.T) {
	logs(t, func(t *testing.T, e *env) {
		e.start("gpu", nil, []string{"gpu"}, t0)
		e.start("gpu-eu", nil, []string{"gpu", "eu"}, t0.Add(time.Second))
		e.start("any", nil, nil, t0.Add(2*time.Second))
		for _, tc := range []struct {
			tags []string
			want []string
		}{
			{nil, []string{"gpu", "gpu-eu", "any"}},   // an untagged worker takes everything
			{[]string{"gpu"}, []string{"gpu", "any"}}, // subset: gpu-eu needs eu too
			{[]string{"eu", "gpu"}, []string{"gpu", "gpu-eu", "any"}},
			{[]string{"cpu"}, []string{"any"}}, // untagged tasks go to anyone
		} {
			if got := e.find("w", 0, dispatch.Options{Tags: tc.tags, Now: t0.Add(time.Minute)}); !slices.Equal(got, tc.want) {
				t.Errorf("worker tags %v: %v, want %v", tc.tags, got, tc.want)
			}
		}
	})
}

func TestSkipsAndBackoffAndBias(t *testing.T) {
	logs(t, func(t *testing.T, e *env) {
		for _, id := range []string{"run", "cancel", "pause", "done", "retry", "failed-here"} {
			e.start(id, nil, nil, t0)
		}
		if err := e.store.StoreSignal(e.ctx, "cancel", workflow.Cancel, workflow.SignalRequest{Reason: "r"}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.StoreSignal(e.ctx, "pause", workflow.Pause, workflow.SignalRequest{Reason: "r"}); err != nil {
			t.Fatal(err)
		}
		snap, rev, err := e.store.LoadSnapshot(e.ctx, "done")
		if err != nil {
			t.Fatal(err)
		}
		snap.MarkCompleted([]byte("out"), t0)
		if _, err := e.store.SaveSnapshot(e.ctx, snap, rev); err != nil {
			t.Fatal(err)
		}
		retry := func(id, worker string, at time.Time) {
			snap, rev, err := e.store.LoadSnapshot(e.ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			snap.TaskRetries = map[workflow.TaskID]workflow.TaskRetryState{taskA: {Attempts: 1, LastError: "boom", LastFailedWorker: worker, NextRetryAt: at}}
			if _, err := e.store.SaveSnapshot(e.ctx, snap, rev); err != nil {
				t.Fatal(err)
			}
		}
		retry("retry", "w-9", t0.Add(time.Hour))
		retry("failed-here", "w-1", t0)
		if got := e.find("w-1", 0, dispatch.Options{Now: t0.Add(time.Minute)}); !slices.Equal(got, []string{"run", "failed-here"}) {
			t.Fatalf("w-1: %v, want run then failed-here (cancel, pause, done skipped; retry backing off; failed-here last: it failed on w-1)", got)
		}
		// For w-2 (no bias), after the backoff: the three, equal in
		// priority and wait (the clock stood at t0), by instance id.
		if got := e.find("w-2", 0, dispatch.Options{Now: t0.Add(2 * time.Hour)}); !slices.Equal(got, []string{"failed-here", "retry", "run"}) {
			t.Fatalf("w-2 after the backoff: %v, want failed-here retry run", got)
		}
	})
}

func TestClaimedAndInputAndStale(t *testing.T) {
	logs(t, func(t *testing.T, e *env) {
		e.start("x", nil, nil, t0)
		e.start("y", nil, nil, t0.Add(time.Second))
		c, err := e.store.ClaimTask(e.ctx, "x", taskA, "w-1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.find("w-2", 0, dispatch.Options{Now: t0.Add(time.Minute)}); !slices.Equal(got, []string{"y"}) {
			t.Fatalf("with x claimed: %v, want y", got)
		}
		// x's task completes with its claim released: x is at task b, its
		// input is a's output.
		snap, rev, err := e.store.LoadSnapshot(e.ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		snap.MarkTaskCompleted(taskA, []byte("a-out"), t0)
		snap.UpdatePosition(workflow.AtTaskPosition(taskB), t0)
		if _, err := e.store.SaveSnapshot(e.ctx, snap, rev, lifecycle.WithClaim(c, true)); err != nil {
			t.Fatal(err)
		}
		if err := e.idx.Rebuild(e.ctx, e.store); err != nil {
			t.Fatal(err)
		}
		got, err := dispatch.Find(e.ctx, e.idx, e.store, e.leases, "w-2", 0, dispatch.Options{Now: t0.Add(time.Minute)})
		if err != nil || len(got) != 2 {
			t.Fatalf("Find: %v, %v", got, err)
		}
		for _, a := range got {
			want := map[string]string{"x": "a-out", "y": "in-y"}[a.Instance]
			if !bytes.Equal(a.Input, []byte(want)) || a.Definition != def || a.Snapshot == nil || a.Revision.Run.IsZero() {
				t.Errorf("%s: input %q, want %q (%+v)", a.Instance, a.Input, want, a)
			}
			if a.Instance == "x" && a.Task != taskB {
				t.Errorf("x: task %s, want b", a.Task)
			}
		}
		// The index goes stale (y cancelled, not re-indexed): the log wins.
		if err := e.store.StoreSignal(e.ctx, "y", workflow.Cancel, workflow.SignalRequest{Reason: "stop"}); err != nil {
			t.Fatal(err)
		}
		got, err = dispatch.Find(e.ctx, e.idx, e.store, e.leases, "w-2", 0, dispatch.Options{Now: t0.Add(time.Minute)})
		if err != nil || len(got) != 1 || got[0].Instance != "x" {
			t.Fatalf("with a stale entry for y: %v, %v; want x only", got, err)
		}
	})
}

// TestMemIndexPutOrder: updates may arrive in any order; an older
// projection never replaces a newer entry, and a rebuilt index equals one
// kept up to date by Update after every write.
func TestMemIndexPutOrder(t *testing.T) {
	logs(t, func(t *testing.T, e *env) {
		kept := dispatch.NewMemIndex()
		for i := range 8 {
			id := fmt.Sprintf("i-%d", i)
			e.start(id, p(uint8(i%4)), nil, t0.Add(time.Duration(i)*time.Second))
			if err := kept.Update(e.ctx, e.store, id); err != nil {
				t.Fatal(err)
			}
		}
		old, err := e.store.Load(e.ctx, "i-3")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.store.StoreSignal(e.ctx, "i-3", workflow.Pause, workflow.SignalRequest{}); err != nil {
			t.Fatal(err)
		}
		if err := kept.Update(e.ctx, e.store, "i-3"); err != nil {
			t.Fatal(err)
		}
		kept.Put(&old) // a late, older update
		if kept.Len() != 7 {
			t.Fatalf("after a late older update: %d entries, want 7 (i-3 paused)", kept.Len())
		}
		rebuilt := dispatch.NewMemIndex()
		if err := rebuilt.Rebuild(e.ctx, e.store); err != nil {
			t.Fatal(err)
		}
		var a, b []dispatch.Entry
		for x, err := range kept.Entries(e.ctx) {
			if err != nil {
				t.Fatal(err)
			}
			a = append(a, x)
		}
		for x, err := range rebuilt.Entries(e.ctx) {
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, x)
		}
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("kept %v\nrebuilt %v", a, b)
		}
	})
}

// TestRankLimitIsThePrefix: Rank with a limit returns the first limit of
// Rank without one, on random entries with ties in every key.
func TestRankLimitIsThePrefix(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for round := range 50 {
		var entries []dispatch.Entry
		for range 1 + rng.IntN(300) {
			e := dispatch.Entry{Instance: fmt.Sprintf("i%03d", rng.IntN(400)), Priority: uint8(rng.IntN(4)), Since: now.Add(-time.Duration(rng.IntN(5)) * time.Minute)}
			if rng.IntN(5) == 0 {
				e.LastFailedWorker = "w"
			}
			if rng.IntN(7) == 0 {
				e.RetryAt = now.Add(time.Minute)
			}
			entries = append(entries, e)
		}
		all := dispatch.Rank(entries, "w", 0, dispatch.Options{Now: now}, nil)
		for _, limit := range []int{1, 2, 16, len(entries) + 1} {
			got := dispatch.Rank(entries, "w", limit, dispatch.Options{Now: now}, nil)
			want := all[:min(limit, len(all))]
			if len(got) != len(want) {
				t.Fatalf("round %d limit %d: %d entries, want %d", round, limit, len(got), len(want))
			}
			for i := range got {
				if got[i].Instance != want[i].Instance || !got[i].Since.Equal(want[i].Since) || got[i].Priority != want[i].Priority || got[i].LastFailedWorker != want[i].LastFailedWorker {
					t.Fatalf("round %d limit %d: entry %d is %+v, want %+v", round, limit, i, got[i], want[i])
				}
			}
		}
	}
}

// TestFindResumable: Sayiir's find_resumable_instances — a fork, a delay
// and a signal wait whose wake times passed are ready, a signal wait
// with its event buffered is signalled, a task unchanged for StaleAfter
// and held by no live claim is stale; a wake time still to come, a
// claimed task and a completed run are not; the longest resumable first.
func TestFindResumable(t *testing.T) {
	logs(t, func(t *testing.T, e *env) {
		park := func(id string, pos workflow.Position) {
			t.Helper()
			snap, rev, err := e.store.LoadSnapshot(e.ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			snap.UpdatePosition(pos, e.clock.Now())
			if _, err := e.store.SaveSnapshot(e.ctx, snap, rev); err != nil {
				t.Fatal(err)
			}
		}
		at := func(d time.Duration) *time.Time { v := t0.Add(d); return &v }
		for _, id := range []string{"fork", "fork-later", "delay", "signal", "signalled", "stale", "claimed", "fresh", "done"} {
			e.start(id, nil, nil, t0)
		}
		e.clock.set(t0.Add(time.Minute))
		park("fork", workflow.Position{Kind: workflow.AtFork, NodeID: workflow.NewTaskID("f"), Branches: map[string]workflow.TaskResult{"left": {TaskID: taskA, Output: []byte("l")}}, WakeAt: at(3 * time.Minute)})
		park("fork-later", workflow.Position{Kind: workflow.AtFork, NodeID: workflow.NewTaskID("f"), Branches: map[string]workflow.TaskResult{}, WakeAt: at(time.Hour)})
		park("delay", workflow.Position{Kind: workflow.AtDelay, NodeID: workflow.NewTaskID("d"), EnteredAt: t0, WakeAt: at(2 * time.Minute), NextTaskID: &taskB})
		park("signal", workflow.Position{Kind: workflow.AtSignal, NodeID: workflow.NewTaskID("s"), SignalName: "go", WakeAt: at(4 * time.Minute), NextTaskID: &taskB})
		park("signalled", workflow.Position{Kind: workflow.AtSignal, NodeID: workflow.NewTaskID("s"), SignalName: "go", NextTaskID: &taskB})
		if err := e.store.SendEvent(e.ctx, "signalled", "go", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.ClaimTask(e.ctx, "claimed", taskA, "w-1", time.Hour); err != nil {
			t.Fatal(err)
		}
		e.clock.set(t0.Add(9 * time.Minute))
		park("fresh", workflow.AtTaskPosition(taskB)) // changed at t0+9m: not stale
		snap, rev, err := e.store.LoadSnapshot(e.ctx, "done")
		if err != nil {
			t.Fatal(err)
		}
		snap.MarkCompleted(nil, e.clock.Now())
		if _, err := e.store.SaveSnapshot(e.ctx, snap, rev); err != nil {
			t.Fatal(err)
		}
		if err := e.idx.Rebuild(e.ctx, e.store); err != nil {
			t.Fatal(err)
		}
		find := func(opts dispatch.ResumeOptions) []string {
			t.Helper()
			got, err := dispatch.FindResumable(e.ctx, e.idx, e.idx, e.store, e.leases, opts)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range got {
				out = append(out, r.Instance+":"+string(r.Reason))
			}
			return out
		}
		now := t0.Add(10 * time.Minute)
		want := []string{"stale:stale", "signalled:signalled", "delay:ready", "fork:ready", "signal:ready"}
		if got := find(dispatch.ResumeOptions{Now: now, StaleAfter: 5 * time.Minute}); !slices.Equal(got, want) {
			t.Fatalf("resumable at t0+10m: %v, want %v", got, want)
		}
		if got := find(dispatch.ResumeOptions{Now: now, StaleAfter: 5 * time.Minute, Limit: 2}); !slices.Equal(got, want[:2]) {
			t.Fatalf("limit 2: %v, want %v", got, want[:2])
		}
		if got := find(dispatch.ResumeOptions{Now: t0.Add(150 * time.Second)}); !slices.Equal(got, []string{"signalled:signalled", "delay:ready"}) {
			t.Fatalf("at t0+2.5m, no stale: %v, want the signalled and the delay only", got)
		}
		// The index only proposes: a run moved on since it was indexed is
		// not listed.
		e.clock.set(t0.Add(10 * time.Minute))
		if _, err := e.store.AdvanceDue(e.ctx, "delay", now); err != nil {
			t.Fatal(err)
		}
		if got := find(dispatch.ResumeOptions{Now: now}); slices.Contains(got, "delay:ready") {
			t.Fatalf("a delay the store moved on is still listed: %v", got)
		}
	})
}

// TestRankSkip: Options.Skip leaves entries out as if they were not in
// the index (with a limit, the best of the others fill the places), and
// with a limit it is asked only of entries that would be kept: a pool's
// checks cost a few calls, not one per entry.
func TestRankSkip(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var entries []dispatch.Entry
	for i := range 1000 {
		entries = append(entries, dispatch.Entry{Instance: fmt.Sprintf("i%04d", i), Priority: uint8(i % 4), Since: now.Add(-time.Duration(i%7) * time.Minute)})
	}
	skipped := func(e dispatch.Entry) bool { return e.Instance[len(e.Instance)-1] == '0' } // one in ten
	var without []dispatch.Entry
	for _, e := range entries {
		if !skipped(e) {
			without = append(without, e)
		}
	}
	for _, limit := range []int{1, 16, 0} {
		asked := 0
		skip := func(e dispatch.Entry) bool { asked++; return skipped(e) }
		got := dispatch.Rank(entries, "w", limit, dispatch.Options{Now: now, Skip: skip}, nil)
		want := dispatch.Rank(without, "w", limit, dispatch.Options{Now: now}, nil)
		if !slices.EqualFunc(got, want, func(a, b dispatch.Entry) bool { return a.Instance == b.Instance }) {
			t.Errorf("limit %d: ranked %d entries with Skip, not the ranking of the others (%d)", limit, len(got), len(want))
		}
		if limit > 0 && asked > len(entries)/4 {
			t.Errorf("limit %d: Skip asked of %d of %d entries, want only of those that would be kept", limit, asked, len(entries))
		}
	}
}

// TestRankOrdered: over entries in rank order (CompareRank), RankOrdered
// answers what RankSeq answers over the same entries in any order, for
// random entries (priorities, waits before and after the search's time,
// tags, backoff, soft bias, claims, skips) and every limit; and with a
// limit it stops early: it looks at the entries ahead of its answer, not
// at all of them.
func TestRankOrdered(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(7, 22))
	for round := range 200 {
		n := 1 + rng.IntN(300)
		entries := make([]dispatch.Entry, n)
		for i := range entries {
			e := dispatch.Entry{Instance: fmt.Sprintf("r%d-i%04d", round, i), Priority: uint8(rng.IntN(6)),
				Since: now.Add(time.Duration(rng.IntN(int(11*time.Minute))) - 10*time.Minute)}
			if rng.IntN(8) == 0 {
				e.Since = e.Since.Truncate(time.Minute) // ties
			}
			if round%2 == 0 && rng.IntN(3) == 0 {
				e.LastFailedWorker = "w" // many a soft bias
			}
			switch rng.IntN(10) {
			case 0:
				e.Tags = []string{"gpu"}
			case 1:
				e.RetryAt = now.Add(time.Minute)
			case 2:
				e.RetryAt = now.Add(-time.Minute)
			case 3:
				e.LastFailedWorker = "w"
			case 4:
				e.Claim = &projection.Claim{Worker: "other"}
			}
			entries[i] = e
		}
		aging := []time.Duration{0, time.Second, 10 * time.Minute}[rng.IntN(3)]
		opts := dispatch.Options{Now: now, AgingInterval: aging, Skip: func(e dispatch.Entry) bool { return e.Instance[len(e.Instance)-1] == '7' }}
		taken := func(e dispatch.Entry) bool { return e.Instance[len(e.Instance)-2] < '5' }
		ordered := slices.Clone(entries)
		slices.SortFunc(ordered, func(a, b dispatch.Entry) int { return dispatch.CompareRank(a, b, opts.Aging()) })
		for _, limit := range []int{0, 1, 2, 5, 16, n} {
			want := dispatch.RankSeq(slices.Values(entries), "w", limit, opts, taken)
			seen := 0
			counted := func(yield func(dispatch.Entry) bool) {
				for _, e := range ordered {
					seen++
					if !yield(e) {
						return
					}
				}
			}
			got := dispatch.RankOrdered(counted, "w", limit, opts, taken)
			if !slices.EqualFunc(got, want, func(a, b dispatch.Entry) bool { return a.Instance == b.Instance }) {
				t.Fatalf("round %d, %d entries, aging %v, limit %d: RankOrdered gave %d entries, RankSeq %d:\n%v\n%v", round, n, aging, limit, len(got), len(want), names(got), names(want))
			}
			if limit == 1 && n >= 200 && seen == n && len(got) == 1 && got[0].LastFailedWorker == "" {
				t.Errorf("round %d: RankOrdered with limit 1 looked at all %d entries", round, n)
			}
		}
	}
}

func names(es []dispatch.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Instance
	}
	return out
}

// TestMemIndexInRankOrder: the in-memory index yields its entries in rank
// order, the same ones Entries yields, as they come, change and go; it
// keeps no order for another aging interval.
func TestMemIndexInRankOrder(t *testing.T) {
	ctx := t.Context()
	x := dispatch.NewMemIndex()
	store, err := lifecycle.New(memlog.New(nil), lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		p := uint8(i * 7 % 5)
		id := fmt.Sprintf("m-%02d", i)
		if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA, Priority: &p}}); err != nil {
			t.Fatal(err)
		}
		if err := x.Update(ctx, store, id); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 { // removed again
			if err := store.StoreSignal(ctx, id, workflow.Pause, workflow.SignalRequest{}); err != nil {
				t.Fatal(err)
			}
			if err := x.Update(ctx, store, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(what string) {
		t.Helper()
		var all, ordered []dispatch.Entry
		for e, err := range x.Entries(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, e)
		}
		seq, ok := x.InRankOrder(ctx, dispatch.DefaultAgingInterval)
		if !ok {
			t.Fatalf("%s: no rank order", what)
		}
		for e, err := range seq {
			if err != nil {
				t.Fatal(err)
			}
			ordered = append(ordered, e)
		}
		cmpRank := func(a, b dispatch.Entry) int { return dispatch.CompareRank(a, b, dispatch.DefaultAgingInterval) }
		slices.SortFunc(all, cmpRank)
		if len(all) != 22 || !slices.EqualFunc(all, ordered, func(a, b dispatch.Entry) bool { return a.Instance == b.Instance && a.Seq == b.Seq }) {
			t.Fatalf("%s: in rank order %v, Entries sorted %v (want 22)", what, names(ordered), names(all))
		}
	}
	check("kept per instance")
	if err := x.Rebuild(ctx, store); err != nil {
		t.Fatal(err)
	}
	check("rebuilt")
	if _, ok := x.InRankOrder(ctx, time.Hour); ok {
		t.Error("a rank order for an aging interval the index does not keep")
	}
}

// TestMemIndexPassed: MemIndex.Passed drops an entry older than the
// commit, ignores an older projection put after it, and takes the state
// at the commit or later; an entry as new as the commit stays.
func TestMemIndexPassed(t *testing.T) {
	ctx := t.Context()
	x := dispatch.NewMemIndex()
	store, err := lifecycle.New(memlog.New(nil), lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "p", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Load(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	count := func(entries iter.Seq2[dispatch.Entry, error]) int {
		n := 0
		for _, err := range entries {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		return n
	}
	listed := func() int { return count(x.Entries(ctx)) }
	x.Put(&st)
	x.Passed("p", st.LastSeq) // as new as the entry: kept
	if listed() != 1 {
		t.Fatal("Passed dropped an entry as new as the commit")
	}
	x.Passed("p", st.LastSeq+2)
	if listed() != 0 {
		t.Fatal("an entry older than the commit passed is still listed")
	}
	x.Put(&st) // late and older
	if listed() != 0 {
		t.Fatal("an older projection put after Passed is listed")
	}
	at := st
	at.LastSeq += 2
	x.Put(&at)
	if listed() != 1 {
		t.Fatal("the state at the commit passed is not listed")
	}
	if ranked, _ := x.InRankOrder(ctx, dispatch.DefaultAgingInterval); count(ranked) != 1 {
		t.Fatal("the rank order does not list the entry the index lists")
	}
}
