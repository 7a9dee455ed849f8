package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
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
	roundsSoak      = 12
	gracefulEvery   = 3 // soak: every third round shuts the nodes down gracefully instead of killing them
	stream          = "RUNLOG_CLUSTER"
	electionWait    = time.Minute     // for a leader (meta or stream) to be elected
	catchUpWait     = 2 * time.Minute // for a restarted node to be current
	progressWait    = time.Minute     // for the clients to make progress
	opsPerStep      = 60              // acknowledged decisions between fault steps
	verifyAttempts  = 5
	verifyRetryWait = time.Second
)

// quietLogger returns a logger of warnings and errors to the test output.
func quietLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// sleep waits for d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// TestNodeLoss runs write load from several clients against a three-node
// cluster (each node a child process) and a stream with three replicas,
// and in each round:
//
//  1. kills the stream's leader with SIGKILL; waits for the remaining
//     nodes to elect a new leader; the clients carry on (two of three
//     nodes: quorum);
//  2. restarts it on its directory and ports; waits until every replica
//     is current;
//  3. kills a follower with SIGKILL (seeded choice); the clients carry on;
//  4. restarts it; waits until every replica is current.
//
// In soak mode every gracefulEvery-th round shuts the nodes down
// gracefully instead (the leader hands its leaderships over). At most one
// node is down at any time, so the stream always has a quorum. Then the
// load stops and the ledger is verified against each node's replica (see
// verifyNode).
//
// It runs on one stream and on 4 partitions (the faults then target the
// leader of partition 0's stream; the other partitions' leaders fall with
// the nodes that hold them).
func TestNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("node-loss test: runs a three-node cluster through elections; skipped with -short")
	}
	for _, k := range []int{1, 4} {
		t.Run(fmt.Sprintf("partitions=%d", k), func(t *testing.T) { nodeLoss(t, k) })
	}
}

func nodeLoss(t *testing.T, partitions int) {
	sd := faulttest.Seed(t)
	rounds := roundsCI
	if faulttest.Soak() {
		rounds = roundsSoak
	}
	sched := rand.New(rand.NewPCG(sd, 0x6e6f6465))
	t.Logf("seed %d (RUNLOG_SEED), %d rounds, %d nodes, %d clients", sd, rounds, size, clients)
	ctx := t.Context()
	began := time.Now()

	// The stream whose leader the faults target: the store's own, or
	// partition 0's.
	watched := jetstream.PartitionStream(stream, 0, partitions)
	c := startCluster(t, size, watched)
	mon := newMonitor(t, c, watched)
	if err := mon.waitMeta(ctx, electionWait); err != nil {
		t.Fatalf("no JetStream meta leader: %v", err)
	}
	counts := logcount.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	logger := slog.New(counts)
	cfg := jetstream.Config{Stream: stream, Replicas: size, Partitions: partitions, Logger: logger}
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
	if err := waitAllCurrent(ctx, t, c, stream, partitions, electionWait); err != nil {
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

	w := startWatch(ctx, c)
	l := faulttest.Start(ctx, cs)
	// progress waits until the clients have acknowledged opsPerStep more
	// decisions: they carry on.
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
	var kills, shutdowns int // nodes killed with SIGKILL, shut down gracefully
	// takeDown kills the node named name, or shuts it down gracefully.
	takeDown := func(round int, name string, graceful bool) {
		t.Helper()
		if !graceful {
			c.kill(c.node(name))
			kills++
			return
		}
		if err := c.shutdown(c.node(name)); err != nil {
			fatal("round %d: shut %s down: %v", round, name, err)
		}
		shutdowns++
	}
	metaLeader := func() string {
		if m := c.metaLeader(); m != "" {
			return m
		}
		return "none reported"
	}
	how := func(graceful bool) string {
		if graceful {
			return "shut down gracefully"
		}
		return "killed with SIGKILL"
	}
	progress("before the first fault")

	var elections []string // from each stream leader's loss to its successor
	for round := 1; round <= rounds; round++ {
		graceful := faulttest.Soak() && round%gracefulEvery == 0

		// 1. The stream leader goes away.
		ci, err := mon.waitCurrent(ctx, size, catchUpWait)
		if err != nil {
			fatal("round %d: stream not ready for the next fault: %v", round, err)
		}
		old := ci.Leader
		meta := metaLeader()
		at := time.Now() // for a graceful shutdown, the handover is part of the election
		takeDown(round, old, graceful)
		step("round %d: the stream leader %s %s (meta leader %s)", round, old, how(graceful), meta)
		leader, err := c.waitStreamLeader(ctx, old, electionWait)
		if err != nil {
			fatal("round %d: no new stream leader after %s went down: %v", round, old, err)
		}
		election := time.Since(at).Round(100 * time.Millisecond).String()
		if graceful {
			election += " (graceful)"
		}
		elections = append(elections, election)
		step("round %d: %s leads the stream %v after the loss of %s", round, leader, time.Since(at).Round(time.Millisecond), old)
		progress("after the leader went down")
		step("round %d: the clients carry on without %s", round, old)

		// 2. It comes back.
		at = time.Now()
		if err := c.start(c.node(old)); err != nil {
			fatal("round %d: restart %s: %v", round, old, err)
		}
		if _, err := mon.waitCurrent(ctx, size, catchUpWait); err != nil {
			fatal("round %d: %s did not catch up: %v", round, old, err)
		}
		step("round %d: %s restarted, every replica current after %v", round, old, time.Since(at).Round(time.Millisecond))
		progress("after the old leader came back")

		// 3. A follower goes away.
		ci, err = mon.waitCurrent(ctx, size, catchUpWait)
		if err != nil {
			fatal("round %d: stream not ready for the next fault: %v", round, err)
		}
		followers := make([]string, 0, len(ci.Replicas))
		for _, r := range ci.Replicas {
			followers = append(followers, r.Name)
		}
		slices.Sort(followers)
		f := followers[sched.IntN(len(followers))]
		meta = metaLeader()
		takeDown(round, f, graceful)
		step("round %d: follower %s %s (stream leader %s, meta leader %s)", round, f, how(graceful), ci.Leader, meta)
		progress("after a follower went down")
		step("round %d: the clients carry on without %s", round, f)

		// 4. It comes back.
		at = time.Now()
		if err := c.start(c.node(f)); err != nil {
			fatal("round %d: restart %s: %v", round, f, err)
		}
		if _, err := mon.waitCurrent(ctx, size, catchUpWait); err != nil {
			fatal("round %d: %s did not catch up: %v", round, f, err)
		}
		step("round %d: %s restarted, every replica current after %v", round, f, time.Since(at).Round(time.Millisecond))
		progress("after the follower came back")
	}
	l.Stop()
	stopped := time.Now()
	streamElections, metaElections := w.stop()
	step("load stopped")

	// Each client carried on, not only the clients together: none went
	// longer than progressWait without a decision acknowledged.
	var deadlines int
	gaps := make([]time.Duration, len(cs))
	acks := make([]int64, len(cs))
	for i, cl := range cs {
		gaps[i], acks[i] = cl.gap(stopped), cl.acks.Load()
		deadlines += len(cl.deadlines)
		for _, d := range cl.deadlines {
			t.Logf("client %d: operation ran into its %v deadline at %s", i, opTimeout, d)
		}
		if gaps[i] > progressWait {
			t.Errorf("client %d went %v without a decision acknowledged (more than %v): it did not carry on", i, gaps[i].Round(time.Millisecond), progressWait)
		}
	}

	if err := waitAllCurrent(ctx, t, c, stream, partitions, catchUpWait); err != nil {
		t.Fatalf("cluster did not settle: %v", err)
	}
	// Opening a partitioned store asks whether the one-stream layout's
	// stream exists, which in a cluster only the meta leader answers.
	if err := mon.waitMeta(ctx, electionWait); err != nil {
		t.Fatalf("no JetStream meta leader after the faults: %v", err)
	}
	checkCallers(t, led)
	fig := verifyEveryNode(t, c, stream, led)
	t.Logf("FIGURES: seed %d: %d nodes killed with SIGKILL and %d shut down gracefully (%d stream leaders, %d followers), new stream leader after %v; "+
		"%d stream leader changes and %d meta leader changes observed; "+
		"%s; conflicts returned by the log: %d with code 10164, %d with code 10071, %d other; client: %s; "+
		"decisions acknowledged per client %v, longest time a client went without one %v; %d operations ran into their %v deadline; verified on each of the %d nodes; %v in all",
		sd, kills, shutdowns, rounds, rounds, elections, streamElections, metaElections, fig,
		confl.n10164.Load(), confl.n10071.Load(), confl.other.Load(), counts,
		acks, roundDurations(gaps), deadlines, opTimeout, size, time.Since(began).Round(time.Second))
}

// waitAllCurrent waits until every partition stream of the store on
// stream has a leader and current replicas.
func waitAllCurrent(ctx context.Context, t *testing.T, c *cluster, stream string, partitions int, timeout time.Duration) error {
	for p := range partitions {
		name := jetstream.PartitionStream(stream, p, partitions)
		if _, err := newMonitor(t, c, name).waitCurrent(ctx, size, timeout); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	return nil
}

// roundDurations formats ds rounded to 100 ms: "[6.1s 4.8s]".
func roundDurations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Round(100 * time.Millisecond).String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// watch polls the stream and meta leaders the nodes report and counts
// their changes.
type watch struct {
	halt         atomic.Bool
	wg           sync.WaitGroup
	stream, meta int
}

// startWatch starts polling the stream and meta leaders of c, every
// leaderPoll, until stop.
func startWatch(ctx context.Context, c *cluster) *watch {
	w := &watch{}
	w.wg.Go(func() {
		var lastStream, lastMeta string
		tick := time.NewTicker(leaderPoll)
		defer tick.Stop()
		for !w.halt.Load() && ctx.Err() == nil {
			if l := c.streamLeader(); l != "" {
				if lastStream != "" && l != lastStream {
					w.stream++
				}
				lastStream = l
			}
			if m := c.metaLeader(); m != "" {
				if lastMeta != "" && m != lastMeta {
					w.meta++
				}
				lastMeta = m
			}
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
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
