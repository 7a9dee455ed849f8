package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// TestContendedCreate races several clients, each on its own connection
// and store, to create the same fresh id under policy Fail, on a stream
// with three replicas and no fault: exactly one must be told Created and
// every other ErrAlreadyExists. The losers' appends fail the sequence
// check with 10071 or, while the winner's write is still in flight on
// the replicated stream, 10164; either way they must end up seeing the
// winner's snapshot.
func TestContendedCreate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node cluster; skipped with -short")
	}
	const (
		racers     = 6
		background = 8
		ids        = 40
		stream     = "RUNLOG_CONTENDED"
	)
	ctx := t.Context()
	c := startCluster(t, size, stream)
	mon := newMonitor(t, c, stream)
	if err := mon.waitMeta(ctx, electionWait); err != nil {
		t.Fatalf("no JetStream meta leader: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := jetstream.Config{Stream: stream, Replicas: size, Logger: logger}
	err := poll(ctx, electionWait, func(ctx context.Context) error {
		s, err := jetstream.Connect(ctx, c.urls(), jetstream.ConnectConfig{Name: "runlog-contended-admin"}, cfg)
		if err == nil {
			_ = s.Close()
		}
		return err
	})
	if err != nil {
		t.Fatalf("create the stream: %v", err)
	}
	if _, err := mon.waitCurrent(ctx, size, electionWait); err != nil {
		t.Fatalf("stream not ready: %v", err)
	}

	var confl conflicts
	stores := make([]*lifecycle.Store, racers)
	traces := make([]*opTrace, racers)
	for i := range stores {
		// Round-robin over the nodes, so that racers reach the leader
		// through different servers.
		js, err := jetstream.Connect(ctx, c.nodes[i%size].url(), jetstream.ConnectConfig{Name: fmt.Sprintf("runlog-contended-%d", i)}, cfg)
		if err != nil {
			t.Fatalf("racer %d: connect: %v", i, err)
		}
		t.Cleanup(func() { _ = js.Close() })
		traces[i] = &opTrace{}
		if stores[i], err = lifecycle.New(countingLog{js: js, c: &confl, op: traces[i]}, lifecycle.Config{Logger: logger}); err != nil {
			t.Fatalf("lifecycle.New: %v", err)
		}
	}

	// Background writers on other instances keep the stream busy, as in
	// production: the winner's write then stays in flight (proposed, not
	// yet applied) for longer than a few round trips.
	bg, bgCancel := context.WithCancel(ctx)
	var bgWG sync.WaitGroup
	var bgWrites atomic.Int64
	for i := range background {
		js, err := jetstream.Connect(ctx, c.nodes[i%size].url(), jetstream.ConnectConfig{Name: fmt.Sprintf("runlog-contended-bg-%d", i)}, cfg)
		if err != nil {
			t.Fatalf("background %d: connect: %v", i, err)
		}
		t.Cleanup(func() { _ = js.Close() })
		s, err := lifecycle.New(js, lifecycle.Config{Logger: logger})
		if err != nil {
			t.Fatalf("lifecycle.New: %v", err)
		}
		bgWG.Go(func() {
			for n := 0; bg.Err() == nil; n++ {
				_, err := s.PrepareRun(bg, lifecycle.PrepareRunRequest{InstanceID: fmt.Sprintf("background/%d/%d", i, n), DefinitionHash: def,
					FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("first")}})
				if err == nil {
					bgWrites.Add(1)
				}
			}
		})
	}
	defer func() {
		bgCancel()
		bgWG.Wait()
	}()

	created, exists, failed := 0, 0, 0
	for n := range ids {
		id := fmt.Sprintf("contended/%d", n)
		errs := make([]error, racers)
		outs := make([]lifecycle.Outcome, racers)
		var start, wg sync.WaitGroup
		start.Add(1)
		for i, s := range stores {
			wg.Go(func() {
				octx, cancel := context.WithTimeout(ctx, opTimeout)
				defer cancel()
				start.Wait()
				traces[i].reset()
				p, err := s.PrepareRun(octx, lifecycle.PrepareRunRequest{
					InstanceID: id, DefinitionHash: def, Input: fmt.Appendf(nil, "racer %d", i),
					FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("first")}, Policy: workflow.Fail,
				})
				errs[i], outs[i] = err, p.Outcome
			})
		}
		start.Done()
		wg.Wait()
		winners := 0
		for i, err := range errs {
			switch {
			case err == nil && outs[i] == lifecycle.Created:
				winners++
				created++
			case errors.Is(err, lifecycle.ErrAlreadyExists):
				exists++
			default:
				failed++
				t.Errorf("%q: racer %d: PrepareRun under Fail: outcome %v, error %v, after %s; want Created or ErrAlreadyExists", id, i, outs[i], err, traces[i])
			}
		}
		if winners != 1 {
			t.Errorf("%q: %d racers were told Created, want exactly 1", id, winners)
		}
	}
	t.Logf("FIGURES: %d ids raced by %d clients each on a stream with %d replicas, %d background writers (%d creations): %d Created, %d ErrAlreadyExists, %d failed otherwise; conflicts returned by the log: %d with code 10164, %d with code 10071",
		ids, racers, size, background, bgWrites.Load(), created, exists, failed, confl.n10164.Load(), confl.n10071.Load())
}
