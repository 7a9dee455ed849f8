package cluster

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/faulttest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// Conflict codes of the sequence check.
const (
	errCodeWrongLastSeq         = 10071 // wrong last sequence: N
	errCodeWrongLastSeqConstant = 10164 // wrong last sequence (replicated stream, a write in flight)
)

// conflicts counts the sequence-check failures the log returned to the
// store, by code.
type conflicts struct {
	n10071, n10164, other atomic.Int64
}

// opTrace records the conflicts of one client's current operation. Only
// that client's goroutine touches it.
type opTrace struct {
	start time.Time
	codes []int
}

// reset starts the trace of a new operation.
func (o *opTrace) reset() { o.start, o.codes = time.Now(), o.codes[:0] }

// String summarises the conflicts: "16 conflicts (10164 x16) in 58ms".
func (o *opTrace) String() string {
	n := map[int]int{}
	for _, c := range o.codes {
		n[c]++
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%d x%d", c, n[c]))
	}
	return fmt.Sprintf("%d conflicts (%s) in %v", len(o.codes), strings.Join(parts, ", "), time.Since(o.start).Round(time.Millisecond))
}

// countingLog is a lifecycle.Log decorator that counts the conflicts
// Append returns (those the store then decides again on), in total and
// for the client's current operation. It passes the optional
// capabilities of the jetstream store through.
type countingLog struct {
	js *jetstream.Log
	c  *conflicts
	op *opTrace
}

var (
	_ lifecycle.Log    = countingLog{}
	_ lifecycle.Last   = countingLog{}
	_ lifecycle.Lister = countingLog{}
)

// Read passes through to the store.
func (l countingLog) Read(ctx context.Context, instance string, after uint64) iter.Seq2[events.Message, error] {
	return l.js.Read(ctx, instance, after)
}

// Append appends through the store and counts a conflict it returns.
func (l countingLog) Append(ctx context.Context, instance string, msg events.Message, expect uint64) (uint64, error) {
	seq, err := l.js.Append(ctx, instance, msg, expect)
	if errors.Is(err, lifecycle.ErrWrongSequence) {
		var apiErr *natsjs.APIError
		code := 0
		if errors.As(err, &apiErr) {
			code = int(apiErr.ErrorCode)
		}
		l.op.codes = append(l.op.codes, code)
		switch {
		case code == 0:
			l.c.other.Add(1)
		case apiErr.ErrorCode == errCodeWrongLastSeqConstant:
			l.c.n10164.Add(1)
		case apiErr.ErrorCode == errCodeWrongLastSeq:
			l.c.n10071.Add(1)
		default:
			l.c.other.Add(1)
		}
	}
	return seq, err
}

// LastMessage passes through to the store.
func (l countingLog) LastMessage(ctx context.Context, instance string) (events.Message, bool, error) {
	return l.js.LastMessage(ctx, instance)
}

// MessageAt passes through to the store.
func (l countingLog) MessageAt(ctx context.Context, instance string, seq uint64) (events.Message, bool, error) {
	return l.js.MessageAt(ctx, instance, seq)
}

// Instances passes through to the store.
func (l countingLog) Instances(ctx context.Context, after string, limit int) ([]string, error) {
	return l.js.Instances(ctx, after, limit)
}

// outcome is what a caller learnt.
type outcome uint8

const (
	acked   outcome = iota + 1 // nil error
	refused                    // a domain refusal: nothing written
	unknown                    // any other error: may or may not have landed
)

// classify tells what a caller learnt from err.
func classify(err error) outcome {
	switch {
	case err == nil:
		return acked
	case faulttest.Refused(err):
		return refused
	}
	return unknown
}

// attempt is one client's PrepareRun of a pool id.
type attempt struct {
	client  int
	outcome outcome
	err     error
	created bool   // Outcome Created
	run     string // the run acknowledged
	seq     uint64 // the sequence acknowledged
	trace   string // the conflicts the call met
}

// write is a checkpoint or a signal, identified by its token (the task
// output or the signal reason).
type write struct {
	id      string
	kind    string // "checkpoint" or "signal"
	token   string
	outcome outcome
	err     error
	seq     uint64 // checkpoints: the revision acknowledged
}

// ledger records what every client asked and learnt.
type ledger struct {
	mu       sync.RWMutex
	attempts map[string][]attempt // by pool id
	writes   []write
	created  []string // pool ids some client created (targets for signals)
	acked    atomic.Int64
	frontier atomic.Int64 // len(created)
}

// newLedger returns an empty ledger.
func newLedger() *ledger { return &ledger{attempts: make(map[string][]attempt)} }

// attempt records a PrepareRun of pool id id.
func (l *ledger) attempt(id string, a attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts[id] = append(l.attempts[id], a)
	if a.created {
		l.created = append(l.created, id)
		l.frontier.Add(1)
	}
	if a.outcome == acked {
		l.acked.Add(1)
	}
}

// write records a checkpoint or a signal.
func (l *ledger) write(w write) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes = append(l.writes, w)
	if w.outcome == acked {
		l.acked.Add(1)
	}
}

// randomCreated returns a pool id some client created, if any.
func (l *ledger) randomCreated(rng *rand.Rand) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.created) == 0 {
		return "", false
	}
	return l.created[rng.IntN(len(l.created))], true
}

var def = workflow.DefinitionHashOf("runlog cluster test v1")

// poolID is the n-th id of the pool the clients race on.
func poolID(n int) string { return fmt.Sprintf("race/%d", n) }

// raceWindow is how many pool ids the clients race on at a time: the ids
// from the frontier (the number of ids created so far) on. Every client
// aims at the same few ids, so most are contended.
const raceWindow = 3

// owned is a run a client created and checkpoints.
type owned struct {
	id   string
	snap *workflow.Snapshot
	rev  lifecycle.Revision
}

// client is one writer: its own connection, store and projection cache.
// Only its own goroutine touches its fields, but for acks; the test reads
// the others once the load has stopped.
type client struct {
	n     int
	rng   *rand.Rand
	ls    *lifecycle.Store
	led   *ledger
	seq   int
	owned []*owned
	trace *opTrace // conflicts of the current operation

	lastAck    time.Time     // when the last decision was acknowledged (or the load started)
	longestGap time.Duration // the longest time without an acknowledged decision
	deadlines  []string      // the operations that ran into their deadline, and why

	acks atomic.Int64 // decisions acknowledged to this client
}

// Bounds of the clients' operations.
const (
	opTimeout   = 15 * time.Second      // one operation, retries included
	unknownWait = 20 * time.Millisecond // pause after an unknown outcome (a node is away): do not spin
)

// Step performs one operation, as fast as the cluster allows.
func (c *client) Step(ctx context.Context) {
	if c.lastAck.IsZero() {
		c.lastAck = time.Now()
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	r := c.rng.IntN(100)
	c.trace.reset()
	var err error
	switch {
	case r < 45 || len(c.owned) == 0:
		err = c.race(ctx)
	case r < 80:
		err = c.checkpoint(ctx)
	default:
		err = c.signal(ctx)
	}
	now := time.Now()
	switch {
	case err == nil:
		c.acks.Add(1)
		c.longestGap = max(c.longestGap, now.Sub(c.lastAck))
		c.lastAck = now
	case errors.Is(err, context.DeadlineExceeded):
		c.deadlines = append(c.deadlines, fmt.Sprintf("%s: %v after %s", now.Format("15:04:05.000"), err, c.trace))
	}
	if classify(err) == unknown {
		time.Sleep(unknownWait)
	}
}

// gap returns the longest time the client went without an acknowledged
// decision, counting the time from its last one to end.
func (c *client) gap(end time.Time) time.Duration {
	return max(c.longestGap, end.Sub(c.lastAck))
}

// race asks PrepareRun under Fail for the next pool id.
func (c *client) race(ctx context.Context) error {
	id := poolID(int(c.led.frontier.Load()) + c.rng.IntN(raceWindow))
	p, err := c.ls.PrepareRun(ctx, lifecycle.PrepareRunRequest{
		InstanceID:     id,
		DefinitionHash: def,
		Input:          fmt.Appendf(nil, "client %d", c.n),
		FirstTask:      workflow.TaskHint{ID: workflow.NewTaskID("first")},
		Policy:         workflow.Fail,
		Actor:          fmt.Sprintf("client-%d", c.n),
	})
	a := attempt{client: c.n, outcome: classify(err), err: err, trace: c.trace.String()}
	if err == nil {
		a.created, a.run, a.seq = p.Outcome == lifecycle.Created, p.Run.String(), p.Revision.Seq
		c.owned = append(c.owned, &owned{id: id, snap: p.Snapshot, rev: p.Revision})
	}
	c.led.attempt(id, a)
	return err
}

// checkpoint saves one task result on a run the client owns.
func (c *client) checkpoint(ctx context.Context) error {
	i := c.rng.IntN(len(c.owned))
	o := c.owned[i]
	c.seq++
	tok := fmt.Sprintf("c%d-%d", c.n, c.seq)
	next := o.snap.Clone()
	now := time.Now()
	next.MarkTaskCompleted(workflow.NewTaskID(tok), []byte(tok), now)
	next.UpdatePosition(workflow.AtTaskPosition(workflow.NewTaskID(tok+"/next")), now)
	rev, err := c.ls.SaveSnapshot(ctx, next, o.rev)
	w := write{id: o.id, kind: "checkpoint", token: tok, outcome: classify(err), err: err}
	switch {
	case err == nil:
		w.seq = rev.Seq
		o.snap, o.rev = next, rev
	default:
		// Reload before the next checkpoint; if that fails, give the run
		// up (the ledger keeps what was asked).
		if snap, rev, lerr := c.ls.LoadSnapshot(ctx, o.id); lerr == nil {
			o.snap, o.rev = snap, rev
		} else {
			c.owned = append(c.owned[:i], c.owned[i+1:]...)
		}
	}
	c.led.write(w)
	return err
}

// signal stores a pause request on any created pool id (often another
// client's run: it contends with that client's checkpoints).
func (c *client) signal(ctx context.Context) error {
	id, ok := c.led.randomCreated(c.rng)
	if !ok {
		return c.race(ctx) // nothing created yet
	}
	c.seq++
	tok := fmt.Sprintf("s%d-%d", c.n, c.seq)
	err := c.ls.StoreSignal(ctx, id, workflow.Pause, workflow.SignalRequest{Reason: tok, RequestedBy: fmt.Sprintf("client-%d", c.n)})
	c.led.write(write{id: id, kind: "signal", token: tok, outcome: classify(err), err: err})
	return err
}
