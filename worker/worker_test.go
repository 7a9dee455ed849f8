package worker_test

import (
	"context"
	"errors"
	"fmt"
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

// TestPool: a pool of 4 workers runs 20 workflows of three steps — the
// first failing once and retried after a backoff, the second followed by a
// 1 s delay the durable timers end — to completion, with the indexer, the
// timers and wake-ups running; every step's result is checkpointed exactly
// once per run, and the history names the worker that ran each.
func TestPool(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	js, err := jetstream.Open(ctx, natstest.Connect(t, natstest.Start(t)), jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := lifecycle.New(js, lifecycle.Config{Leases: js.Leases()})
	if err != nil {
		t.Fatal(err)
	}
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
						if _, ok := d.Completed[workflow.NewTaskID(s.Name)]; ok {
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
