package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runlog/runlog/internal/faulttest"
	"github.com/runlog/runlog/internal/logcount"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
)

// Test parameters. The schedule comes from the seed (RUNLOG_SEED, default
// 1); RUNLOG_SOAK=1 runs more rounds.
const (
	size            = 3
	clients         = 4
	roundsCI        = 1
	roundsSoak      = 5
	stream          = "RUNLOG_CLUSTER"
	electionWait    = time.Minute     // for a leader (meta or stream) to be elected
	catchUpWait     = 2 * time.Minute // for a restarted node to be current
	progressWait    = time.Minute     // for the clients to make progress
	opsPerStep      = 60              // acknowledged decisions between fault steps
	verifyAttempts  = 5
	verifyRetryWait = time.Second
)

func quietLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// TestNodeLoss runs write load from several clients against a three-node
// cluster and a stream with three replicas, and in each round:
//
//  1. shuts the stream's leader down; waits for a new leader; the clients
//     carry on (two of three nodes: quorum);
//  2. restarts it on its directory and ports; waits until every replica
//     is current;
//  3. shuts a follower down (seeded choice); the clients carry on;
//  4. restarts it; waits until every replica is current.
//
// At most one node is down at any time, so the stream always has a
// quorum. Then the load stops and the ledger is verified against each
// node's replica (see verifyNode).
func TestNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("node-loss test: runs a three-node cluster through elections; skipped with -short")
	}
	sd := faulttest.Seed(t)
	rounds := roundsCI
	if faulttest.Soak() {
		rounds = roundsSoak
	}
	sched := rand.New(rand.NewPCG(sd, 0x6e6f6465))
	t.Logf("seed %d (RUNLOG_SEED), %d rounds, %d nodes, %d clients", sd, rounds, size, clients)
	ctx := t.Context()
	began := time.Now()

	c := startCluster(t, size)
	mon := newMonitor(t, c, stream)
	if err := mon.waitMeta(ctx, electionWait); err != nil {
		t.Fatalf("no JetStream meta leader: %v", err)
	}
	counts := logcount.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	logger := slog.New(counts)
	cfg := jetstream.Config{Stream: stream, Replicas: size, Logger: logger}
	err := poll(ctx, electionWait, func(ctx context.Context) error {
		s, err := jetstream.Connect(ctx, c.urls(), jetstream.ConnectConfig{Name: "runlog-cluster-admin"}, cfg)
		if err == nil {
			_ = s.Close()
		}
		return err
	})
	if err != nil {
		t.Fatalf("create the stream with %d replicas: %v", size, err)
	}
	if _, err := mon.waitCurrent(ctx, size, electionWait); err != nil {
		t.Fatalf("stream not ready: %v", err)
	}
	t.Logf("cluster up, stream %s created with %d replicas, in %v", stream, size, time.Since(began).Round(time.Millisecond))

	led := newLedger()
	var confl conflicts
	cs := make([]*client, clients)
	for i := range cs {
		js, err := jetstream.Connect(ctx, c.urls(), jetstream.ConnectConfig{Name: fmt.Sprintf("runlog-cluster-client-%d", i)}, cfg)
		if err != nil {
			t.Fatalf("client %d: connect: %v", i, err)
		}
		t.Cleanup(func() { _ = js.Close() })
		tr := &opTrace{}
		ls, err := lifecycle.New(countingLog{js: js, c: &confl, op: tr}, lifecycle.Config{Logger: logger})
		if err != nil {
			t.Fatalf("lifecycle.New: %v", err)
		}
		cs[i] = &client{n: i, rng: rand.New(rand.NewPCG(sd, uint64(i+1))), ls: ls, led: led, trace: tr}
	}

	w := startWatch(ctx, c, mon)
	l := faulttest.Start(ctx, cs)
	progress := func(what string) {
		t.Helper()
		target := led.acked.Load() + opsPerStep
		err := poll(ctx, progressWait, func(context.Context) error {
			if n := led.acked.Load(); n < target {
				return fmt.Errorf("%d decisions acknowledged, waiting for %d", n, target)
			}
			return nil
		})
		if err != nil {
			l.Stop()
			w.stop()
			t.Fatalf("%s: the clients did not carry on: %v", what, err)
		}
	}
	step := func(format string, args ...any) {
		t.Logf("%6.1fs  %s (%d decisions acknowledged so far)", time.Since(began).Seconds(), fmt.Sprintf(format, args...), led.acked.Load())
	}
	fatal := func(format string, args ...any) {
		t.Helper()
		l.Stop()
		w.stop()
		t.Fatalf(format, args...)
	}
	progress("before the first fault")

	kills := 0
	for round := 1; round <= rounds; round++ {
		// 1. The stream leader goes away.
		ci, err := mon.info(ctx)
		if err != nil || ci.Leader == "" {
			fatal("round %d: stream leader: %v", round, err)
		}
		old := ci.Leader
		step("round %d: shutting down the stream leader %s (meta leader %s)", round, old, c.metaLeader())
		c.stop(c.node(old))
		kills++
		at := time.Now()
		leader, err := mon.waitLeader(ctx, old, electionWait)
		if err != nil {
			fatal("round %d: no new stream leader after %s went down: %v", round, old, err)
		}
		step("round %d: new stream leader %s after %v", round, leader, time.Since(at).Round(time.Millisecond))
		progress("after the leader went down")

		// 2. It comes back.
		if err := c.start(c.node(old)); err != nil {
			fatal("round %d: restart %s: %v", round, old, err)
		}
		at = time.Now()
		if _, err := mon.waitCurrent(ctx, size, catchUpWait); err != nil {
			fatal("round %d: %s did not catch up: %v", round, old, err)
		}
		step("round %d: %s restarted, every replica current after %v", round, old, time.Since(at).Round(time.Millisecond))
		progress("after the old leader came back")

		// 3. A follower goes away.
		ci, err = mon.info(ctx)
		if err != nil || len(ci.Replicas) == 0 {
			fatal("round %d: stream replicas: %v", round, err)
		}
		followers := make([]string, 0, len(ci.Replicas))
		for _, r := range ci.Replicas {
			followers = append(followers, r.Name)
		}
		slices.Sort(followers)
		f := followers[sched.IntN(len(followers))]
		step("round %d: shutting down follower %s (stream leader %s, meta leader %s)", round, f, ci.Leader, c.metaLeader())
		c.stop(c.node(f))
		kills++
		progress("after a follower went down")

		// 4. It comes back.
		if err := c.start(c.node(f)); err != nil {
			fatal("round %d: restart %s: %v", round, f, err)
		}
		at = time.Now()
		if _, err := mon.waitCurrent(ctx, size, catchUpWait); err != nil {
			fatal("round %d: %s did not catch up: %v", round, f, err)
		}
		step("round %d: %s restarted, every replica current after %v", round, f, time.Since(at).Round(time.Millisecond))
		progress("after the follower came back")
	}
	l.Stop()
	streamElections, metaElections := w.stop()
	step("load stopped")
	if _, err := mon.waitCurrent(ctx, size, catchUpWait); err != nil {
		t.Fatalf("cluster did not settle: %v", err)
	}

	checkCallers(t, led)
	fig := verifyEveryNode(t, c, stream, led)
	var deadlines int64
	for _, cl := range cs {
		deadlines += cl.deadlines.Load()
	}
	t.Logf("FIGURES: seed %d: %d node shutdowns (%d stream leaders, %d followers), %d stream leader changes and %d meta leader changes observed; "+
		"%s; conflicts returned by the log: %d with code 10164, %d with code 10071, %d other; client: %s; %d operations ran into their %v deadline; verified on each of the %d nodes; %v in all",
		sd, kills, rounds, rounds, streamElections, metaElections, fig,
		confl.n10164.Load(), confl.n10071.Load(), confl.other.Load(), counts, deadlines, opTimeout, size, time.Since(began).Round(time.Second))
}

// watch polls the stream and meta leaders and counts their changes.
type watch struct {
	halt         atomic.Bool
	wg           sync.WaitGroup
	stream, meta int
}

func startWatch(ctx context.Context, c *cluster, mon *monitor) *watch {
	w := &watch{}
	w.wg.Go(func() {
		var lastStream, lastMeta string
		for !w.halt.Load() && ctx.Err() == nil {
			if ci, err := mon.info(ctx); err == nil && ci.Leader != "" {
				if lastStream != "" && ci.Leader != lastStream {
					w.stream++
				}
				lastStream = ci.Leader
			}
			if m := c.metaLeader(); m != "" {
				if lastMeta != "" && m != lastMeta {
					w.meta++
				}
				lastMeta = m
			}
			sleep(ctx, 50*time.Millisecond)
		}
	})
	return w
}

// stop ends the watch and returns the leader changes seen: stream, meta.
func (w *watch) stop() (int, int) {
	w.halt.Store(true)
	w.wg.Wait()
	return w.stream, w.meta
}
