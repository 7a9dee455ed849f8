package crash

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runlog/runlog/internal/faulttest"
	"github.com/runlog/runlog/internal/logcount"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// Test parameters. The kill points and the write schedule come from the
// seed (RUNLOG_SEED, default 1); RUNLOG_SOAK=1 runs more cycles.
const (
	workers        = 8
	cyclesCI       = 3
	cyclesSoak     = 20
	opTimeout      = 15 * time.Second // one operation, retries included
	progressWait   = time.Minute      // for the load to make progress
	minOpsPerCycle = 40               // acknowledged before the kill, at least
	maxOpsPerCycle = 400              // at most
	opsAfterStart  = 25               // acknowledged after the restart before verifying
	maxDowntime    = 500 * time.Millisecond
	maxEarlyKill   = 300 * time.Millisecond // a second kill, during recovery
)

// TestKillRestart is the crash test: write load from several goroutines,
// SIGKILL of the server at a seeded random point, restart on the same
// directory and port, then check every acknowledged decision against the
// history (see verify_test.go). It repeats for cyclesCI kill cycles
// (cyclesSoak with RUNLOG_SOAK=1).
//
// It runs on one stream, on 4 partitions, and on one stream with the
// group commit on (appends in atomic batches: a kill mid-batch must lose
// no acknowledged append and acknowledge nothing that was not stored).
func TestKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: kills and restarts a server process; skipped with -short")
	}
	for _, tc := range []struct {
		name              string
		partitions, group int
	}{
		{"partitions=1", 1, 0},
		{"partitions=4", 4, 0},
		{"groupcommit=1", 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) { killRestart(t, tc.partitions, tc.group) })
	}
}

func killRestart(t *testing.T, partitions, group int) {
	sd := faulttest.Seed(t)
	cycles := cyclesCI
	if faulttest.Soak() {
		cycles = cyclesSoak
	}
	t.Logf("seed %d (RUNLOG_SEED), %d kill cycles, %d writers", sd, cycles, workers)
	sched := rand.New(rand.NewPCG(sd, 0x6b696c6c))

	dir, port := t.TempDir(), faulttest.Port(t)
	srv := startChild(t, dir, port)

	ctx := t.Context()
	counts := logcount.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	logger := slog.New(counts)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	js, err := jetstream.Connect(ctx, url, jetstream.ConnectConfig{Name: "runlog-crash-test"}, jetstream.Config{Logger: logger, Partitions: partitions, GroupCommit: group})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = js.Close() })

	ws := make([]*worker, workers)
	for i := range ws {
		ls, err := lifecycle.New(js, lifecycle.Config{Logger: logger})
		if err != nil {
			t.Fatalf("lifecycle.New: %v", err)
		}
		ws[i] = &worker{n: i, rng: rand.New(rand.NewPCG(sd, uint64(i+1))), ls: ls}
	}
	var total figures
	earlyKills := 0
	for cycle := 1; cycle <= cycles; cycle++ {
		before := ackedOps(ws)
		t0 := time.Now()
		run := faulttest.Start(ctx, ws)

		// Kill at a seeded point of the load: after a random number of
		// acknowledged operations.
		target := minOpsPerCycle + sched.IntN(maxOpsPerCycle-minOpsPerCycle+1)
		if !waitOps(ctx, ws, before+int64(target)) {
			run.Stop()
			t.Fatalf("cycle %d: fewer than %d operations acknowledged in %v: the load is stuck", cycle, target, progressWait)
		}
		t1 := time.Now()
		srv.kill()
		killedAt := ackedOps(ws)
		downtime := time.Duration(sched.Int64N(int64(maxDowntime)))
		time.Sleep(downtime)
		if cycle%3 == 2 {
			// Every third cycle, from the second: kill it again while it
			// recovers its store (or just after), with the writers
			// knocking, at a seeded point.
			early, _ := spawnChild(t, dir, port)
			time.Sleep(time.Duration(sched.Int64N(int64(maxEarlyKill))))
			early.kill()
			earlyKills++
		}
		srv = startChild(t, dir, port)
		t2 := time.Now()

		// The writers carry on by themselves: the client reconnects and
		// Append retries. Wait until they made progress again.
		if !waitOps(ctx, ws, killedAt+opsAfterStart) {
			run.Stop()
			t.Fatalf("cycle %d: fewer than %d operations acknowledged in %v after the restart: the writers did not recover",
				cycle, opsAfterStart, progressWait)
		}
		t3 := time.Now()
		run.Stop()
		t4 := time.Now()
		if t.Failed() {
			t.FailNow()
		}

		f := verifyAll(t, ctx, js, ws)
		total = f
		t.Logf("cycle %d: killed after %d acknowledged operations (%v of load), down %v (restart ready after %v), writers back %v later, stopped in %v; totals: %s",
			cycle, killedAt-before, t1.Sub(t0).Round(time.Millisecond), downtime.Round(time.Millisecond), t2.Sub(t1).Round(time.Millisecond),
			t3.Sub(t2).Round(time.Millisecond), t4.Sub(t3).Round(time.Millisecond), f)
		if t.Failed() {
			t.Logf("server stderr since the last restart:\n%s", srv.stderr)
			t.FailNow()
		}
	}
	var deadlines int64
	for _, w := range ws {
		deadlines += w.deadlines.Load()
	}
	gc := js.GroupCommitStats()
	t.Logf("FIGURES: seed %d: %d kills (SIGKILL) under load, %d more during recovery; %s; client: %s; %d operations or reloads ran into their %v deadline; group commit: %d batches of %d appends, %d refused and published one by one",
		sd, cycles, earlyKills, total, counts, deadlines, opTimeout, gc.Batches, gc.Batched, gc.Fallbacks)
	if group > 0 && gc.Batched == 0 {
		t.Errorf("the group commit was on and no append went in a batch: the kills did not test it")
	}
}

// run is a load phase: every worker writing until stop.

func ackedOps(ws []*worker) int64 {
	var n int64
	for _, w := range ws {
		n += w.acked.Load()
	}
	return n
}

// waitOps waits until the workers acknowledged n operations in total, at
// most progressWait.
func waitOps(ctx context.Context, ws []*worker, n int64) bool {
	deadline := time.Now().Add(progressWait)
	for ackedOps(ws) < n {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// ---- the writers ----

// opKind is what an operation asks.
type opKind uint8

const (
	opCreate    opKind = iota + 1 // PrepareRun, Fail, on an id not created yet
	opProbe                       // PrepareRun, Fail, on an id created: must be refused
	opCheckpt                     // SaveSnapshot adding one task result
	opSignal                      // StoreSignal(cancel)
	opCancel                      // CheckAndCancel
	opTerminate                   // PrepareRun, TerminateExisting
)

func (k opKind) String() string {
	return [...]string{"?", "create", "fail-probe", "checkpoint", "signal", "check-and-cancel", "terminate"}[k]
}

// outcome is what the caller learnt.
type outcome uint8

const (
	acked   outcome = iota + 1 // nil error: the decision is durable
	refused                    // a domain refusal: nothing written
	unknown                    // any other error: may or may not have landed
)

// op is one operation in an instance's ledger. token is unique and
// recorded in the commit (input, task output, signal reason, interrupted
// task), so that its commit can be found in the history.
type op struct {
	kind    opKind
	token   string
	outcome outcome
	err     error
	// Acknowledged results: seq of the commit (create, terminate,
	// checkpoint), the run created, and whether check-and-cancel applied.
	seq     uint64
	run     string
	applied bool
}

// inst is an instance a worker owns, with the worker's view of it and the
// ledger of every operation the worker asked of it, in order.
type inst struct {
	id  string
	ops []op

	dirty     bool // an operation's outcome is unknown or refused: reload first
	exists    bool
	cancelled bool
	signal    bool
	snap      *workflow.Snapshot
	rev       lifecycle.Revision
}

// worker writes to its own instances through its own lifecycle.Store.
type worker struct {
	n     int
	rng   *rand.Rand
	ls    *lifecycle.Store
	insts []*inst
	seq   int
	acked atomic.Int64
	// deadlines counts operations that ended with their deadline
	// (opTimeout): a reply lost with the killed server was waited for
	// until then.
	deadlines atomic.Int64
}

func (w *worker) noteDeadline(err error) {
	if errors.Is(err, context.DeadlineExceeded) {
		w.deadlines.Add(1)
	}
}

var def = workflow.DefinitionHashOf("runlog crash test v1")

// idSuffixes put the characters the subject encoding must handle in ids.
var idSuffixes = []string{"", ".x", " *", ">", "é ✓"}

func (w *worker) token(k opKind) string {
	w.seq++
	return fmt.Sprintf("w%d-%d-%s", w.n, w.seq, k)
}

// step performs one operation.
func (w *worker) Step(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	var in *inst
	if len(w.insts) == 0 || w.rng.IntN(100) < 15 {
		in = &inst{id: fmt.Sprintf("crash/w%d/i%d%s", w.n, len(w.insts), idSuffixes[len(w.insts)%len(idSuffixes)])}
		w.insts = append(w.insts, in)
	} else {
		in = w.insts[w.rng.IntN(len(w.insts))]
	}
	if in.dirty && !w.reload(ctx, in) {
		time.Sleep(20 * time.Millisecond) // the server is away
		return
	}
	r := w.rng.IntN(100)
	var o op
	switch {
	case !in.exists:
		o = w.prepare(ctx, in, opCreate)
	case r < 5:
		o = w.prepare(ctx, in, opProbe)
	case in.cancelled || r < 15:
		o = w.prepare(ctx, in, opTerminate)
	case r < 60:
		o = w.checkpoint(ctx, in)
	case r < 80 && !in.signal:
		o = w.storeSignal(ctx, in)
	case r < 80:
		o = w.checkAndCancel(ctx, in)
	default:
		o = w.checkpoint(ctx, in)
	}
	w.noteDeadline(o.err)
	if o.outcome == acked {
		w.acked.Add(1)
	} else {
		in.dirty = true
		if o.outcome == unknown {
			time.Sleep(20 * time.Millisecond)
		}
	}
	in.ops = append(in.ops, o)
}

// reload refreshes the worker's view of in from the store.
func (w *worker) reload(ctx context.Context, in *inst) bool {
	snap, rev, err := w.ls.LoadSnapshot(ctx, in.id)
	switch {
	case errors.Is(err, lifecycle.ErrNotFound):
		in.exists, in.cancelled, in.signal, in.snap = false, false, false, nil
		in.dirty = false
		return true
	case err != nil:
		w.noteDeadline(err)
		return false
	}
	_, sig, err := w.ls.GetSignal(ctx, in.id, workflow.Cancel)
	if err != nil {
		w.noteDeadline(err)
		return false
	}
	in.exists, in.snap, in.rev, in.signal = true, snap, rev, sig
	in.cancelled = snap.State.Kind == workflow.Cancelled
	in.dirty = false
	return true
}

func classify(err error) outcome {
	switch {
	case err == nil:
		return acked
	case faulttest.Refused(err):
		return refused
	}
	return unknown
}

func (w *worker) prepare(ctx context.Context, in *inst, k opKind) op {
	o := op{kind: k, token: w.token(k)}
	policy := workflow.Fail
	if k == opTerminate {
		policy = workflow.TerminateExisting
	}
	p, err := w.ls.PrepareRun(ctx, lifecycle.PrepareRunRequest{
		InstanceID:     in.id,
		DefinitionHash: def,
		Input:          []byte(o.token),
		FirstTask:      workflow.TaskHint{ID: workflow.NewTaskID("first")},
		Policy:         policy,
		Actor:          fmt.Sprintf("crash-writer-%d", w.n),
	})
	o.outcome, o.err = classify(err), err
	if err == nil {
		o.seq, o.run = p.Revision.Seq, p.Run.String()
		in.exists, in.cancelled, in.signal = true, false, false
		in.snap, in.rev = p.Snapshot, p.Revision
	}
	return o
}

func (w *worker) checkpoint(ctx context.Context, in *inst) op {
	o := op{kind: opCheckpt, token: w.token(opCheckpt)}
	next := in.snap.Clone()
	now := time.Now()
	next.MarkTaskCompleted(workflow.NewTaskID(o.token), []byte(o.token), now)
	next.UpdatePosition(workflow.AtTaskPosition(workflow.NewTaskID(o.token+"/next")), now)
	rev, err := w.ls.SaveSnapshot(ctx, next, in.rev)
	o.outcome, o.err = classify(err), err
	if err == nil {
		o.seq = rev.Seq
		in.snap, in.rev = next, rev
	}
	return o
}

func (w *worker) storeSignal(ctx context.Context, in *inst) op {
	o := op{kind: opSignal, token: w.token(opSignal)}
	err := w.ls.StoreSignal(ctx, in.id, workflow.Cancel, workflow.SignalRequest{Reason: o.token, RequestedBy: fmt.Sprintf("crash-writer-%d", w.n)})
	o.outcome, o.err = classify(err), err
	if err == nil {
		in.signal = true
	}
	return o
}

func (w *worker) checkAndCancel(ctx context.Context, in *inst) op {
	o := op{kind: opCancel, token: w.token(opCancel)}
	at := workflow.NewTaskID(o.token)
	ok, err := w.ls.CheckAndCancel(ctx, in.id, &at)
	o.outcome, o.err, o.applied = classify(err), err, ok
	if err == nil {
		if ok {
			in.cancelled, in.signal = true, false
		} else {
			in.dirty = true // the worker thought a cancel was pending
		}
	}
	return o
}
