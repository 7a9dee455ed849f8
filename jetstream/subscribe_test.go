package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// collector gathers a subscription's deliveries.
type collector struct {
	mu   sync.Mutex
	seen []Delivery
}

func (c *collector) handle(_ context.Context, d Delivery) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, d)
	return nil
}

func (c *collector) deliveries() []Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.seen)
}

// subscribe runs a subscription in the background until the test (or
// the returned stop) ends it.
func subscribe(t *testing.T, s *Log, name string, opts SubscribeOptions, h Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Subscribe(ctx, name, opts, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
			if errors.Is(err, context.Canceled) {
				err = nil
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// commitsOf lists every commit of the store by instance, from the log.
func commitsOf(t *testing.T, s *Log) map[string][]uint64 {
	t.Helper()
	out := map[string][]uint64{}
	for id, err := range s.AllInstances(t.Context(), "") {
		if err != nil {
			t.Fatal(err)
		}
		for m, err := range s.Read(t.Context(), id, 0) {
			if err != nil {
				t.Fatal(err)
			}
			out[id] = append(out[id], m.Seq)
		}
	}
	return out
}

// byInstance groups deliveries' sequences by instance, in delivery order.
func byInstance(ds []Delivery) map[string][]uint64 {
	out := map[string][]uint64{}
	for _, d := range ds {
		id := d.Record.Commit.Instance
		out[id] = append(out[id], d.Record.Seq)
	}
	return out
}

func total(m map[string][]uint64) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

// workload makes a few commits on each of n instances.
func workload(t *testing.T, st *lifecycle.Store, prefix string, n int) {
	t.Helper()
	ctx := t.Context()
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		_, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: workflow.DefinitionHashOf(prefix), FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("a")},
			Workflow: &workflow.Definition{Name: "named-" + prefix, Tasks: []string{"a"}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.StoreSignal(ctx, id, workflow.Pause, workflow.SignalRequest{Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := st.StoreSignal(ctx, id, workflow.Cancel, workflow.SignalRequest{Reason: "done"}); err != nil {
				t.Fatal(err)
			}
			if ok, err := st.CheckAndCancel(ctx, id, nil); err != nil || !ok {
				t.Fatal(ok, err)
			}
		}
	}
}

// TestSubscribeInOrderAndResume: on one and on four partitions, a
// subscription delivers every commit once, in log order per instance,
// decoded; stopped and started again under its name it resumes after
// the last acknowledged commit; a second name starts from the beginning.
func TestSubscribeInOrderAndResume(t *testing.T) {
	for _, k := range []int{1, 4} {
		t.Run(fmt.Sprintf("partitions=%d", k), func(t *testing.T) {
			t.Parallel()
			s, _, _ := newStore(t, Config{Partitions: k})
			st, err := lifecycle.New(s, lifecycle.Config{})
			if err != nil {
				t.Fatal(err)
			}
			workload(t, st, "first", 12)
			var c collector
			stop := subscribe(t, s, "audit-feed", SubscribeOptions{}, c.handle)
			want := commitsOf(t, s)
			waitFor(t, func() bool { return len(c.deliveries()) >= total(want) }, "every commit delivered")
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			got := byInstance(c.deliveries())
			for id, seqs := range want {
				if !slices.Equal(got[id], seqs) {
					t.Errorf("%s: delivered %v, want the log's %v", id, got[id], seqs)
				}
			}
			for _, d := range c.deliveries() {
				if d.Subscription != "audit-feed" || d.Attempt != 1 || d.Redelivered || len(d.Record.Commit.Events) == 0 || d.Partition != PartitionOf(d.Record.Commit.Instance, k) {
					t.Fatalf("delivery %+v", d)
				}
			}

			// Resume: only what came after.
			workload(t, st, "second", 5)
			var again collector
			stop = subscribe(t, s, "audit-feed", SubscribeOptions{Start: StartAll()}, again.handle)
			all := commitsOf(t, s)
			waitFor(t, func() bool { return len(again.deliveries()) >= total(all)-total(want) }, "the new commits delivered")
			time.Sleep(200 * time.Millisecond) // nothing more comes
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			for _, d := range again.deliveries() {
				if id := d.Record.Commit.Instance; len(want[id]) > 0 {
					t.Errorf("resumed subscription delivered %s seq %d again", id, d.Record.Seq)
				}
			}
			if n := len(again.deliveries()); n != total(all)-total(want) {
				t.Errorf("resumed: %d deliveries, want %d", n, total(all)-total(want))
			}

			// Another name: everything.
			var other collector
			subscribe(t, s, "other", SubscribeOptions{}, other.handle)
			waitFor(t, func() bool { return len(other.deliveries()) >= total(all) }, "a new name reads from the beginning")
		})
	}
}

// TestSubscribeRetriesThenParks: a handler that fails for one commit is
// called MaxAttempts times, the commit is parked (recorded, reported)
// and acknowledged, and the instance's later commits come after it, in
// order; a handler that succeeds on the second attempt is not parked.
func TestSubscribeRetriesThenParks(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t, Config{})
	st, err := lifecycle.New(s, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	workload(t, st, "p", 2) // p-0: create, pause, cancel request, cancelled; p-1: create, pause
	log := commitsOf(t, s)
	bad, flaky := log["p-0"][1], log["p-1"][0]
	var mu sync.Mutex
	calls := map[uint64]int{}
	var order []uint64
	var parked []Parked
	h := func(_ context.Context, d Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		calls[d.Record.Seq]++
		if calls[d.Record.Seq] != d.Attempt {
			return fmt.Errorf("attempt %d on call %d", d.Attempt, calls[d.Record.Seq])
		}
		switch {
		case d.Record.Seq == bad:
			return errors.New("downstream refuses it")
		case d.Record.Seq == flaky && d.Attempt == 1:
			panic("a handler bug on the first try")
		}
		order = append(order, d.Record.Seq)
		return nil
	}
	opts := SubscribeOptions{MaxAttempts: 3, Backoff: []time.Duration{10 * time.Millisecond}, OnPark: func(p Parked) {
		mu.Lock()
		defer mu.Unlock()
		parked = append(parked, p)
	}}
	subscribe(t, s, "parker", opts, h)
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == total(log)-1 }, "every other commit handled")
	mu.Lock()
	defer mu.Unlock()
	if calls[bad] != 3 || calls[flaky] != 2 {
		t.Errorf("handler calls: bad commit %d (want 3), flaky %d (want 2)", calls[bad], calls[flaky])
	}
	if len(parked) != 1 || parked[0].Seq != bad || parked[0].Instance != "p-0" || parked[0].Attempts != 3 || parked[0].Error != "downstream refuses it" || parked[0].Commit.IsZero() {
		t.Errorf("parked %+v", parked)
	}
	var listed []Parked
	for p, err := range s.Parked(t.Context(), "parker") {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, p)
	}
	if len(listed) != 1 || listed[0].Seq != bad {
		t.Errorf("Store.Parked lists %+v", listed)
	}
	if !slices.IsSorted(order) {
		t.Errorf("handled out of log order: %v", order)
	}
	if err := s.DeleteSubscription(t.Context(), "parker"); err != nil {
		t.Fatal(err)
	}
	for p, err := range s.Parked(t.Context(), "parker") {
		t.Errorf("after DeleteSubscription: %+v %v", p, err)
	}
}

// TestSubscribeFilters: instances (server-side), event types and
// commands (headers), definitions (the run's workflow) and the start
// positions each deliver exactly the commits they name.
func TestSubscribeFilters(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t, Config{Partitions: 2})
	st, err := lifecycle.New(s, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	workload(t, st, "a", 4)
	mid := time.Now()
	time.Sleep(20 * time.Millisecond)
	workload(t, st, "b", 4)
	type check struct {
		name string
		opts SubscribeOptions
		want func(Delivery) bool
	}
	created := func(d Delivery) bool {
		return slices.ContainsFunc(d.Record.Commit.Events, func(e events.Event) bool { return e.Type == events.WorkflowCancelled })
	}
	checks := []check{
		{"instances", SubscribeOptions{Instances: []string{"a-1", "b-2", "b-3"}}, func(d Delivery) bool {
			return slices.Contains([]string{"a-1", "b-2", "b-3"}, d.Record.Commit.Instance)
		}},
		{"types", SubscribeOptions{Types: []events.Type{events.WorkflowCancelled}}, created},
		{"commands", SubscribeOptions{Commands: []string{"store_signal"}}, func(d Delivery) bool { return d.Record.Commit.Command == "store_signal" }},
		{"definitions", SubscribeOptions{Definitions: []workflow.DefinitionHash{workflow.DefinitionHashOf("b")}}, func(d Delivery) bool {
			return d.Record.Commit.Instance[0] == 'b'
		}},
		{"since", SubscribeOptions{Start: StartAtTime(mid)}, func(d Delivery) bool { return d.Record.Commit.Instance[0] == 'b' }},
		{"workflows", SubscribeOptions{Workflows: []string{"named-a"}}, func(d Delivery) bool { return d.Record.Commit.Instance[0] == 'a' }},
	}
	var all []Delivery
	var everything collector
	subscribe(t, s, "everything", SubscribeOptions{}, everything.handle)
	waitFor(t, func() bool { return len(everything.deliveries()) == total(commitsOf(t, s)) }, "every commit")
	all = everything.deliveries()
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			var want []string
			for _, d := range all {
				if c.want(d) {
					want = append(want, fmt.Sprint(d.Record.Commit.Instance, "@", d.Record.Seq))
				}
			}
			if len(want) == 0 || len(want) == len(all) {
				t.Fatalf("the check selects %d of %d commits: not a filter test", len(want), len(all))
			}
			var got collector
			stop := subscribe(t, s, "f-"+c.name, c.opts, got.handle)
			waitFor(t, func() bool { return len(got.deliveries()) >= len(want) }, c.name)
			time.Sleep(200 * time.Millisecond)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			var have []string
			for _, d := range got.deliveries() {
				have = append(have, fmt.Sprint(d.Record.Commit.Instance, "@", d.Record.Seq))
			}
			slices.Sort(have)
			slices.Sort(want)
			if !slices.Equal(have, want) {
				t.Errorf("delivered %v\nwant %v", have, want)
			}
		})
	}
	// StartNew: only what comes after; the workflow of an instance first
	// met after its creation is read from the log.
	var fresh, namedA collector
	subscribe(t, s, "new-only", SubscribeOptions{Start: StartNew()}, fresh.handle)
	subscribe(t, s, "new-named-a", SubscribeOptions{Start: StartNew(), Workflows: []string{"named-a"}}, namedA.handle)
	time.Sleep(300 * time.Millisecond)
	workload(t, st, "c", 1)
	if err := st.ClearSignal(t.Context(), "a-1", workflow.Pause); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(fresh.deliveries()) == 5 }, "the five new commits")
	waitFor(t, func() bool { return len(namedA.deliveries()) == 1 }, "the new commit of a named-a instance")
	time.Sleep(200 * time.Millisecond)
	if ds := namedA.deliveries(); len(ds) != 1 || ds[0].Record.Commit.Instance != "a-1" {
		t.Errorf("Workflows named-a after the start delivered %+v", ds)
	}
	for _, d := range fresh.deliveries() {
		if id := d.Record.Commit.Instance; id != "c-0" && id != "a-1" {
			t.Errorf("StartNew delivered %s", id)
		}
	}
	// A changed filter on an existing name is refused.
	err = s.Subscribe(t.Context(), "new-only", SubscribeOptions{Instances: []string{"c-0"}}, fresh.handle)
	if !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("another filter under an existing name: %v", err)
	}
}

// TestSubscribeRefusesBadOptions: each bad option is refused with
// ErrInvalidConfig, naming it, and creates nothing.
func TestSubscribeRefusesBadOptions(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t, Config{Partitions: 2})
	ok := func(context.Context, Delivery) error { return nil }
	cases := map[string]struct {
		name string
		opts SubscribeOptions
		h    Handler
	}{
		"empty name":        {"", SubscribeOptions{}, ok},
		"dotted name":       {"a.b", SubscribeOptions{}, ok},
		"reserved name":     {"runlog-indexer", SubscribeOptions{}, ok},
		"nil handler":       {"x", SubscribeOptions{}, nil},
		"negative attempts": {"x", SubscribeOptions{MaxAttempts: -1}, ok},
		"negative backoff":  {"x", SubscribeOptions{Backoff: []time.Duration{-time.Second}}, ok},
		"seq on partitions": {"x", SubscribeOptions{Start: StartAtSeq(5)}, ok},
		"zero time":         {"x", SubscribeOptions{Start: StartAtTime(time.Time{})}, ok},
		"bad instance":      {"x", SubscribeOptions{Instances: []string{""}}, ok},
		"unknown type":      {"x", SubscribeOptions{Types: []events.Type{"nope"}}, ok},
	}
	for what, c := range cases {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second) // an accepted one would run until then
		err := s.Subscribe(ctx, c.name, c.opts, c.h)
		cancel()
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", what, err)
		}
	}
	for _, p := range s.all {
		for name := range p.stream.ConsumerNames(t.Context()).Name() {
			t.Errorf("a refused subscription created consumer %q on %s", name, p.name)
		}
	}
}

// waitFor polls cond up to 20 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
