package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/worker"
	"github.com/runlog/runlog/workflow"
)

// newStore opens a JetStream log on a fresh embedded server and a
// lifecycle store with its leases on it.
func newStore(t *testing.T) (*jetstream.Log, *lifecycle.Store) {
	t.Helper()
	js, err := jetstream.Open(t.Context(), natstest.Connect(t, natstest.Start(t)), jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := lifecycle.New(js, lifecycle.Config{Leases: js.Leases()})
	if err != nil {
		t.Fatal(err)
	}
	return js, store
}

// TestPool: a pool of 4 workers runs 20 workflows of three steps — the
// first failing once and retried after a backoff, the second followed by a
// 1 s delay the durable timers end — to completion, with the indexer, the
// timers and wake-ups running; every step's result is checkpointed exactly
// once per run, and the history names the worker that ran each.
func TestPool(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	js, store := newStore(t)
	var mu sync.Mutex
	failedOnce := map[string]bool{}
	chain := &worker.Chain{Definition: workflow.DefinitionHashOf("order v1"), Steps: []worker.Step{
		{Name: "charge", Retry: &workflow.RetryPolicy{MaxRetries: 3, InitialDelay: 200 * time.Millisecond, BackoffMultiplier: 2}, Run: func(_ context.Context, in []byte) ([]byte, error) {
			mu.Lock()
			defer mu.Unlock()
			if !failedOnce[string(in)] {
				failedOnce[string(in)] = true
				return nil, errors.New("card declined, try again")
			}
			return append([]byte("charged:"), in...), nil
		}},
		{Name: "ship", Delay: time.Second, Run: func(_ context.Context, in []byte) ([]byte, error) { return append([]byte("shipped:"), in...), nil }},
		{Name: "notify", Run: func(_ context.Context, in []byte) ([]byte, error) { return append([]byte("notified:"), in...), nil }},
	}}
	x := js.RunnableIndex()
	var wg sync.WaitGroup
	wg.Go(func() { _ = x.Run(ctx, store, jetstream.IndexerOptions{}) })
	wg.Go(func() { _ = x.RunTimers(ctx, store, jetstream.TimerOptions{Poll: 100 * time.Millisecond}) })
	wake, err := x.Wakeups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer wake.Stop()
	pool := &worker.Pool{Store: store, Leases: js.Leases(), Index: x, Name: "w", Workers: 4, TTL: 10 * time.Second, Chains: []*worker.Chain{chain},
		Wait: func(ctx context.Context, d time.Duration) { _, _, _ = wake.Wait(ctx, d) }}
	wg.Go(func() { _ = pool.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	const n = 20
	for i := range n {
		if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: fmt.Sprintf("order-%d", i), DefinitionHash: chain.Definition,
			Input: []byte(fmt.Sprint(i)), FirstTask: chain.FirstTask()}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := range n {
		id := fmt.Sprintf("order-%d", i)
		for {
			snap, _, err := store.LoadSnapshot(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if snap.State.Kind == workflow.Completed {
				if want := fmt.Sprintf("notified:shipped:charged:%d", i); string(snap.State.FinalOutput) != want {
					t.Fatalf("%s output %q, want %q", id, snap.State.FinalOutput, want)
				}
				break
			}
			if snap.State.Kind.Terminal() || time.Now().After(deadline) {
				t.Fatalf("%s: %s at %v (wanted completed within 60 s)", id, snap.State.Kind, snap.State.Position)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Each step's result exactly once, each written by a worker.
		results := map[string]int{}
		for m, err := range js.Read(ctx, id, 0) {
			if err != nil {
				t.Fatal(err)
			}
			rec, err := events.Decode(m, id)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range rec.Commit.Events {
				if d, ok := e.Data.(*events.CheckpointSavedData); ok {
					for _, s := range chain.Steps {
						if _, ok := d.Completed.Get(workflow.NewTaskID(s.Name)); ok {
							results[s.Name]++
							if rec.Commit.Actor == "" {
								t.Errorf("%s: %s's result written by no named worker", id, s.Name)
							}
						}
					}
				}
			}
		}
		for _, s := range chain.Steps {
			if results[s.Name] != 1 {
				t.Errorf("%s: %s's result checkpointed %d times, want once", id, s.Name, results[s.Name])
			}
		}
	}
}

// TestPoolSignalWait: a step followed by a signal wait parks the run;
// the external event, sent by no worker, is consumed by the durable
// timers at once and its payload is the next step's input; a chain with
// a step that both delays and waits is refused.
func TestPoolSignalWait(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	js, store := newStore(t)
	chain := &worker.Chain{Definition: workflow.DefinitionHashOf("quote v1"), Steps: []worker.Step{
		{Name: "request", Signal: "approval", Run: func(_ context.Context, in []byte) ([]byte, error) { return append([]byte("requested:"), in...), nil }},
		{Name: "order", Run: func(_ context.Context, in []byte) ([]byte, error) { return append([]byte("ordered:"), in...), nil }},
	}}
	bad := &worker.Pool{Store: store, Chains: []*worker.Chain{{Definition: chain.Definition, Steps: []worker.Step{{Name: "x", Delay: time.Second, Signal: "y"}}}}}
	if err := bad.Run(ctx); err == nil || !strings.Contains(err.Error(), "both a delay and a signal") {
		t.Errorf("a step with a delay and a signal: %v", err)
	}
	x := js.RunnableIndex()
	var wg sync.WaitGroup
	wg.Go(func() { _ = x.Run(ctx, store, jetstream.IndexerOptions{}) })
	wg.Go(func() { _ = x.RunTimers(ctx, store, jetstream.TimerOptions{Poll: 100 * time.Millisecond}) })
	pool := &worker.Pool{Store: store, Leases: js.Leases(), Index: x, Name: "w", Workers: 2, TTL: 10 * time.Second, Chains: []*worker.Chain{chain}}
	wg.Go(func() { _ = pool.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "quote-1", DefinitionHash: chain.Definition, Input: []byte("q1"), FirstTask: chain.FirstTask()}); err != nil {
		t.Fatal(err)
	}
	wait := func(what string, cond func(*workflow.Snapshot) bool) *workflow.Snapshot {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			snap, _, err := store.LoadSnapshot(ctx, "quote-1")
			if err != nil {
				t.Fatal(err)
			}
			if cond(snap) {
				return snap
			}
			if time.Now().After(deadline) {
				t.Fatalf("not within 30 s: %s (%s at %v)", what, snap.State.Kind, snap.State.Position)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("parked at the signal wait", func(s *workflow.Snapshot) bool { return s.State.Position.Kind == workflow.AtSignal })
	time.Sleep(300 * time.Millisecond) // parked it stays: no worker, no timer moves it without the event
	if snap, _, _ := store.LoadSnapshot(ctx, "quote-1"); snap.State.Position.Kind != workflow.AtSignal {
		t.Fatalf("moved without its event: %v", snap.State.Position)
	}
	if err := store.SendEvent(lifecycle.WithActor(ctx, "alice"), "quote-1", "approval", []byte("yes")); err != nil {
		t.Fatal(err)
	}
	snap := wait("completed after the event", func(s *workflow.Snapshot) bool { return s.State.Kind.Terminal() })
	if snap.State.Kind != workflow.Completed || string(snap.State.FinalOutput) != "ordered:yes" {
		t.Fatalf("%s with output %q, want completed with ordered:yes (the event's payload as the next step's input)", snap.State.Kind, snap.State.FinalOutput)
	}
	st, err := store.Load(ctx, "quote-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Buffered["approval"]) != 0 {
		t.Errorf("the event is still buffered: %v", st.Buffered)
	}
}

// TestPoolHonoursCancelAndPause: a run with a cancel pending and one with
// a pause pending are not run by the pool: the durable timers apply the
// requests (the runs end cancelled and paused, their step never called);
// once unpaused, the paused run is run to completion; a run without a
// request completes beside them.
func TestPoolHonoursCancelAndPause(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	js, store := newStore(t)
	var mu sync.Mutex
	ran := map[string]int{}
	chain := &worker.Chain{Definition: workflow.DefinitionHashOf("signals v1"), Steps: []worker.Step{
		{Name: "only", Run: func(_ context.Context, in []byte) ([]byte, error) {
			mu.Lock()
			ran[string(in)]++
			mu.Unlock()
			return in, nil
		}},
	}}
	for _, id := range []string{"cancel-me", "pause-me", "run-me"} {
		if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: chain.Definition,
			Input: []byte(id), FirstTask: chain.FirstTask()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.StoreSignal(ctx, "cancel-me", workflow.Cancel, workflow.SignalRequest{Reason: "not needed", RequestedBy: "ops"}); err != nil {
		t.Fatal(err)
	}
	if err := store.StoreSignal(ctx, "pause-me", workflow.Pause, workflow.SignalRequest{Reason: "hold", RequestedBy: "ops"}); err != nil {
		t.Fatal(err)
	}
	x := js.RunnableIndex()
	var wg sync.WaitGroup
	wg.Go(func() { _ = x.Run(ctx, store, jetstream.IndexerOptions{}) })
	wg.Go(func() { _ = x.RunTimers(ctx, store, jetstream.TimerOptions{Poll: 50 * time.Millisecond}) })
	pool := &worker.Pool{Store: store, Leases: js.Leases(), Index: x, Name: "w", Workers: 2, TTL: 10 * time.Second, Chains: []*worker.Chain{chain}}
	wg.Go(func() { _ = pool.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	state := func(id string) workflow.StateKind {
		t.Helper()
		snap, _, err := store.LoadSnapshot(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return snap.State.Kind
	}
	waitState := func(id string, want workflow.StateKind) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for state(id) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s is %s, want %s", id, state(id), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitState("run-me", workflow.Completed)
	waitState("cancel-me", workflow.Cancelled)
	waitState("pause-me", workflow.Paused)
	mu.Lock()
	if ran["cancel-me"] != 0 || ran["pause-me"] != 0 || ran["run-me"] != 1 {
		t.Fatalf("steps run %v, want run-me's once and none of the others", ran)
	}
	mu.Unlock()
	if _, err := store.Unpause(ctx, "pause-me"); err != nil {
		t.Fatal(err)
	}
	waitState("pause-me", workflow.Completed)
	mu.Lock()
	defer mu.Unlock()
	if ran["pause-me"] != 1 {
		t.Fatalf("pause-me's step ran %d times after the unpause, want once", ran["pause-me"])
	}
}
