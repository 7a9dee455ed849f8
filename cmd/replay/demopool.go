package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/worker"
	"github.com/runlog/runlog/workflow"
)

// The pool demo's workflow: three steps, the second failing its first
// attempt and retried after a backoff, a delay after it that the durable
// timers end.
var (
	defFulfilment = workflow.DefinitionHashOf("fulfilment v1")
	fulfilment    = &workflow.Definition{Name: "fulfilment", Version: "v1", Tasks: []string{"pick", "pack", "ship"}}
)

// poolTimeout bounds the pool demo.
const poolTimeout = 2 * time.Minute

// runPool runs 2×workers fulfilment workflows on a reference worker pool
// (package worker) of that many workers, with the runnable-task indexer,
// the durable timers and wake-ups running, until every one completed;
// one demo step per workflow says which worker ran which task.
func (d *demo) runPool(ctx context.Context, st *jetstream.Log, workers int) error {
	ctx, cancel := context.WithTimeout(ctx, poolTimeout)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Leases are judged by the server's clock and the pool's by the real
	// one: this store runs on real time whatever --now says.
	ls, err := lifecycle.New(st, lifecycle.Config{Leases: st.Leases(), Logger: quiet})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	tries := map[string]int{}
	step := func(name string) worker.Step {
		return worker.Step{Name: name, Run: func(_ context.Context, in []byte) ([]byte, error) {
			return fmt.Appendf(nil, `{"task":%q,"ok":true}`, name), nil
		}}
	}
	pack := step("pack")
	pack.Delay = 300 * time.Millisecond // the parcel waits for the courier
	pack.Retry = &workflow.RetryPolicy{MaxRetries: 2, InitialDelay: 200 * time.Millisecond, BackoffMultiplier: 2}
	packOK := pack.Run
	pick := step("pick")
	pick.Run = func(_ context.Context, in []byte) ([]byte, error) { return in, nil } // the picked order: pack's input
	chain := &worker.Chain{Definition: defFulfilment, Steps: []worker.Step{pick, pack, step("ship")}}
	ids := make([]string, 2*workers)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", d.id("fulfil"), i+1)
	}
	chain.Steps[1].Run = func(ctx context.Context, in []byte) ([]byte, error) {
		id := string(in)
		mu.Lock()
		tries[id]++
		first := tries[id] == 1
		mu.Unlock()
		if first {
			return nil, errors.New("label printer jammed")
		}
		return packOK(ctx, in)
	}
	x := st.RunnableIndex()
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { _ = x.Run(ctx, ls, jetstream.IndexerOptions{}) })
	wg.Go(func() {
		_ = x.RunTimers(as(ctx, "demo-timers"), ls, jetstream.TimerOptions{Poll: 100 * time.Millisecond})
	})
	wake, err := x.Wakeups(ctx)
	if err != nil {
		return err
	}
	defer wake.Stop()
	live, err := x.Live(ctx) // the index in memory, in rank order
	if err != nil {
		return err
	}
	defer live.Stop()
	pool := &worker.Pool{Store: ls, Leases: st.Leases(), Index: live, Name: "demo-worker", Workers: workers, TTL: 10 * time.Second,
		Chains: []*worker.Chain{chain}, Logger: quiet, Wait: func(ctx context.Context, t time.Duration) { _, _, _ = wake.Wait(ctx, t) }}
	wg.Go(func() { _ = pool.Run(ctx) })

	for _, id := range ids {
		// The run's input is its id, so that pack knows which run it packs.
		if _, err := ls.PrepareRun(as(ctx, "fulfilment-api"), lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defFulfilment,
			Input: []byte(id), FirstTask: chain.FirstTask(), Workflow: fulfilment}); err != nil {
			return err
		}
	}
	for _, id := range ids {
		for {
			snap, _, err := ls.LoadSnapshot(ctx, id)
			if err != nil {
				return err
			}
			if snap.State.Kind.Terminal() {
				if snap.State.Kind != workflow.Completed {
					return fmt.Errorf("%s ended %s on the pool", id, snap.State.Kind)
				}
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s did not complete on the pool within %v: %s at %v", id, poolTimeout, snap.State.Kind, snap.State.Position)
			case <-time.After(50 * time.Millisecond):
			}
		}
		ran, err := whoRan(ctx, st, id)
		if err != nil {
			return err
		}
		if err := d.step(id, "pool: pick, pack (retried), delay, ship", "completed: %s", ran); err != nil {
			return err
		}
	}
	return nil
}

// whoRan says, from instance id's history, which worker completed each
// task and who claimed tasks that failed an attempt.
func whoRan(ctx context.Context, st *jetstream.Log, id string) (string, error) {
	var parts []string
	for m, err := range st.Read(ctx, id, 0) {
		if err != nil {
			return "", err
		}
		rec, err := events.Decode(m, id)
		if err != nil {
			return "", err
		}
		for _, ev := range rec.Commit.Events {
			if d, ok := ev.Data.(*events.CheckpointSavedData); ok {
				for _, name := range fulfilment.Tasks {
					if _, done := d.Completed.Get(task(name)); done {
						parts = append(parts, name+" by "+rec.Commit.Actor)
					}
				}
			}
		}
	}
	return strings.Join(parts, ", "), nil
}
