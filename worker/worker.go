// Package worker is a reference worker pool on runlog's public API: it
// finds runnable tasks (package dispatch), claims them, heartbeats while
// it runs them, saves fenced by its claim, releases, retries with
// backoff, and honours cancel and pause. It is small on purpose: a
// runtime's own worker does the same with its own workflow model.
//
// A workflow here is a chain of steps, each a task function, optionally
// followed by a delay or a signal wait; the pool moves the run from step
// to step, and the durable timers (jetstream.RunnableIndex.RunTimers) move
// it past a delay when its time comes and past a signal wait when its
// event arrives.
package worker

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runlog/runlog/dispatch"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// Func is a task's work: its input (the run's, or the previous step's
// output) in, its output out. An error fails the attempt; the step's
// retry policy decides what follows.
type Func func(ctx context.Context, input []byte) ([]byte, error)

// Step is one step of a chain.
type Step struct {
	Name  string // the task's name: its id is workflow.NewTaskID(Name)
	Run   Func
	Delay time.Duration // a pause after the step, before the next (0: none)
	// Signal, if set, parks the run after the step until an external
	// event of that name arrives (lifecycle.Store.SendEvent); the durable
	// timers then consume it and the event's payload is the next step's
	// input (or the run's output after the last step). Not with Delay.
	Signal string
	Retry  *workflow.RetryPolicy // nil: a failure fails the run
}

// Chain is a workflow of steps run one after the other.
type Chain struct {
	Definition workflow.DefinitionHash
	Steps      []Step
}

// FirstTask is the hint PrepareRun needs to start a run of c.
func (c *Chain) FirstTask() workflow.TaskHint {
	return workflow.TaskHint{ID: workflow.NewTaskID(c.Steps[0].Name)}
}

// Pool runs the tasks of its chains with Workers goroutines.
type Pool struct {
	Store  *lifecycle.Store // with Config.Leases set
	Leases lifecycle.Leases
	Index  dispatch.Index
	// Wait blocks until work may be there or timeout passes (a wake-up
	// from jetstream.RunnableIndex.Wakeups); nil: the pool polls.
	Wait    func(ctx context.Context, timeout time.Duration)
	Name    string // the worker id prefix: worker i is Name-i
	Workers int    // default 4
	TTL     time.Duration
	Chains  []*Chain
	Logger  *slog.Logger

	staleMu sync.Mutex
	stale   map[string]staleMark // by instance: entries the log said were stale
	marks   atomic.Int64         // len(stale), read without the lock
	trying  sync.Map             // instance → struct{}: being tried by a worker of this pool
}

// staleMark notes an index entry the log said was stale: the entry's
// sequence, and until when the pool leaves it alone.
type staleMark struct {
	seq   uint64
	until time.Time
}

// staleFor is how long the pool leaves alone an entry the log said was
// stale, unless the index changes it first: the index is behind (its
// indexer catches up soon), or another worker's claim is half made (its
// lease lasts until it commits or expires). Without it, entries the
// index has not caught up on would rank first for every worker, every
// time, and starve the runnable tasks behind them.
const staleFor = time.Second

// Run runs the pool until ctx ends. A step with both a Delay and a Signal
// is refused at once.
func (p *Pool) Run(ctx context.Context) error {
	for _, c := range p.Chains {
		for _, s := range c.Steps {
			if s.Delay > 0 && s.Signal != "" {
				return fmt.Errorf("worker: step %q has both a delay and a signal wait: give the wait a step of its own", s.Name)
			}
		}
	}
	if p.Workers <= 0 {
		p.Workers = 4
	}
	if p.TTL <= 0 {
		p.TTL = 30 * time.Second
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	done := make(chan struct{}, p.Workers)
	for i := range p.Workers {
		go func() {
			p.work(ctx, fmt.Sprintf("%s-%d", p.Name, i))
			done <- struct{}{}
		}()
	}
	for range p.Workers {
		<-done
	}
	return ctx.Err()
}

// work is one worker's loop: rank, validate, claim, run, save. The
// workers of a pool search the same index, so each tries the candidates
// from a random one on, rather than all racing for the first; each
// candidate is checked against the log (dispatch.FindHinted) only when it
// is tried, so a search costs one read of the index and one projection
// read per task tried, not one per candidate.
func (p *Pool) work(ctx context.Context, name string) {
	for ctx.Err() == nil {
		cands, err := p.rank(ctx, name)
		if err != nil {
			p.Logger.Warn("worker: find", "worker", name, "err", err)
		}
		ran := false
		if len(cands) > 0 {
			start := rand.IntN(len(cands))
			for k := range cands {
				e := cands[(start+k)%len(cands)]
				if _, busy := p.trying.LoadOrStore(e.Instance, struct{}{}); busy {
					continue // another worker of this pool is on it: no race within the pool
				}
				ran = p.try(ctx, name, e)
				if ran {
					// The entry is behind the log now (this worker
					// committed past it) until the indexer puts the next.
					p.markStale(e)
				}
				p.trying.Delete(e.Instance)
				if ran {
					break
				}
			}
		}
		switch {
		case ran:
		case len(cands) > 0:
			sleep(ctx, time.Duration(1+rand.IntN(5))*time.Millisecond) // lost the races: try again soon
		case p.Wait != nil:
			p.Wait(ctx, time.Second)
		default:
			sleep(ctx, 100*time.Millisecond)
		}
	}
}

// try validates candidate e against the log and, if it is still to run,
// claims and runs it; false when it did not run it.
func (p *Pool) try(ctx context.Context, name string, e dispatch.Entry) bool {
	t, ok, err := dispatch.FindHinted(ctx, e, p.Store, p.Leases)
	if err != nil {
		p.Logger.Warn("worker: find", "worker", name, "err", err)
		return false
	}
	if !ok {
		p.markStale(e)
		return false
	}
	return p.runOne(ctx, name, t)
}

// rank returns the index's entries worker name should try, best first
// (dispatch.Rank: tags, backoff, soft bias, aging), at most two per
// worker of the pool. An entry with a claim is left out unless its lease
// is gone; so is an entry the log said was stale, for staleFor or until
// the index changes it.
func (p *Pool) rank(ctx context.Context, name string) ([]dispatch.Entry, error) {
	now := time.Now()
	opts := dispatch.Options{Now: now}
	var all iter.Seq2[dispatch.Entry, error]
	ordered := false
	if oi, ok := p.Index.(dispatch.OrderedIndex); ok {
		all, ordered = oi.InRankOrder(ctx, opts.Aging())
	}
	if !ordered {
		all = p.Index.Entries(ctx)
	}
	var ierr error
	entries := func(yield func(dispatch.Entry) bool) {
		for e, err := range all {
			if err != nil {
				ierr = err
				return
			}
			if !yield(e) {
				return
			}
		}
	}
	// The pool's own checks are asked only of the entries the ranking
	// would keep, not of the whole index.
	skip := func(e dispatch.Entry) bool {
		if p.isStale(e, now) {
			return true
		}
		_, busy := p.trying.Load(e.Instance) // another worker of this pool is on it
		return busy
	}
	opts.Skip = skip
	rank := dispatch.RankSeq
	if ordered {
		rank = dispatch.RankOrdered // reads the entries ahead of the answer
	}
	ranked := rank(entries, name, 2*p.Workers, opts, dispatch.Taken(ctx, p.Leases))
	if ierr != nil {
		return nil, ierr
	}
	return ranked, nil
}

// isStale reports whether the log said e was stale, within staleFor and
// with the index unchanged since; a mark that no longer holds is dropped.
func (p *Pool) isStale(e dispatch.Entry, now time.Time) bool {
	if p.marks.Load() == 0 {
		return false
	}
	p.staleMu.Lock()
	defer p.staleMu.Unlock()
	m, ok := p.stale[e.Instance]
	if !ok {
		return false
	}
	if m.seq == e.Seq && now.Before(m.until) {
		return true
	}
	delete(p.stale, e.Instance) // changed since, or its time is up
	p.marks.Store(int64(len(p.stale)))
	return false
}

// markStale notes that the log says e has nothing to run (the index is
// behind it, or its task is being claimed).
func (p *Pool) markStale(e dispatch.Entry) {
	p.staleMu.Lock()
	defer p.staleMu.Unlock()
	if p.stale == nil {
		p.stale = make(map[string]staleMark)
	}
	if len(p.stale) >= 4096 { // marks of entries the index no longer lists: drop those whose time is up
		now := time.Now()
		for k, m := range p.stale {
			if !now.Before(m.until) {
				delete(p.stale, k)
			}
		}
	}
	p.stale[e.Instance] = staleMark{seq: e.Seq, until: time.Now().Add(staleFor)}
	p.marks.Store(int64(len(p.stale)))
}

// step returns the chain and index of the step whose task is task.
func (p *Pool) step(def workflow.DefinitionHash, task workflow.TaskID) (*Chain, int) {
	for _, c := range p.Chains {
		if c.Definition != def {
			continue
		}
		for i, s := range c.Steps {
			if workflow.NewTaskID(s.Name) == task {
				return c, i
			}
		}
	}
	return nil, -1
}

// runOne claims and runs one task; false when it could not claim it.
func (p *Pool) runOne(ctx context.Context, name string, t dispatch.AvailableTask) bool {
	c, i := p.step(t.Definition, t.Task)
	if c == nil {
		return false // not a task of this pool's chains
	}
	// A pending cancel or pause is not run: the task was found on a
	// projection read just now with none (dispatch.Of leaves such runs
	// out), and the durable timers apply one (CheckControlSignals) once
	// no live claim holds the task.
	// Every commit the worker makes names it as the actor: the claim,
	// the checkpoint and a release.
	actx := lifecycle.WithActor(ctx, name)
	claim, err := p.Store.ClaimTask(actx, t.Instance, t.Task, name, p.TTL)
	if err != nil {
		return false
	}
	// Heartbeats every TTL/4 (at most 15 s) while the task runs; three
	// failed in a row: the lease is lost, the work is abandoned.
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go p.heartbeat(tctx, cancel, name, claim)

	// The task's snapshot and revision are the ones found: a claim does
	// not change the revision, and one the log moved past since is
	// refused by the save (ErrStale), which releases the claim.
	snap, rev := t.Snapshot, t.Revision
	s := c.Steps[i]
	out, runErr := s.Run(tctx, t.Input)
	if tctx.Err() != nil && ctx.Err() == nil {
		return true // lease lost: abandon, another worker takes it over
	}
	now := time.Now()
	if runErr != nil {
		p.failed(snap, s, name, runErr, now)
	} else {
		snap.MarkTaskCompleted(t.Task, out, now)
		p.advance(snap, c, i, out, now)
	}
	saved, err := p.Store.SaveSnapshot(actx, snap, rev, lifecycle.WithClaim(claim, true))
	if err != nil {
		if !errors.Is(err, lifecycle.ErrClaimLost) && !errors.Is(err, lifecycle.ErrStale) {
			p.Logger.Warn("worker: save", "worker", name, "instance", t.Instance, "err", err)
		}
		_ = p.Store.ReleaseTaskClaim(actx, t.Instance, t.Task, name)
		return true
	}
	// The index's entry of the instance is older than this checkpoint:
	// the pool's searches leave it out until the index has the new state.
	if oi, ok := p.Index.(dispatch.OrderedIndex); ok {
		oi.Passed(t.Instance, saved.Seq)
	}
	return true
}

// advance moves snap past step i of c, whose output is out.
func (p *Pool) advance(snap *workflow.Snapshot, c *Chain, i int, out []byte, now time.Time) {
	delete(snap.TaskRetries, workflow.NewTaskID(c.Steps[i].Name))
	if sig := c.Steps[i].Signal; sig != "" {
		pos := workflow.Position{Kind: workflow.AtSignal, NodeID: workflow.NewTaskID(c.Steps[i].Name + "/" + sig), SignalName: sig}
		if i < len(c.Steps)-1 {
			next := workflow.NewTaskID(c.Steps[i+1].Name)
			pos.NextTaskID = &next
		}
		snap.UpdatePosition(pos, now)
		return
	}
	if i == len(c.Steps)-1 {
		snap.MarkCompleted(out, now)
		return
	}
	next := workflow.NewTaskID(c.Steps[i+1].Name)
	if d := c.Steps[i].Delay; d > 0 {
		wake := now.Add(d)
		snap.UpdatePosition(workflow.Position{Kind: workflow.AtDelay, NodeID: workflow.NewTaskID(c.Steps[i].Name + "/delay"),
			EnteredAt: now, WakeAt: &wake, NextTaskID: &next}, now)
		return
	}
	snap.UpdatePosition(workflow.AtTaskPosition(next), now)
}

// failed records a failed attempt of step s: a retry after the policy's
// backoff, or the run failed when there is no retry left.
func (p *Pool) failed(snap *workflow.Snapshot, s Step, name string, err error, now time.Time) {
	task := workflow.NewTaskID(s.Name)
	r := snap.TaskRetries[task]
	if s.Retry == nil || r.Attempts >= s.Retry.MaxRetries {
		snap.MarkFailed(err.Error(), now)
		return
	}
	backoff := time.Duration(float64(s.Retry.InitialDelay) * math.Pow(max(s.Retry.BackoffMultiplier, 1), float64(r.Attempts)))
	if s.Retry.MaxDelay > 0 {
		backoff = min(backoff, s.Retry.MaxDelay)
	}
	if snap.TaskRetries == nil {
		snap.TaskRetries = map[workflow.TaskID]workflow.TaskRetryState{}
	}
	snap.TaskRetries[task] = workflow.TaskRetryState{Attempts: r.Attempts + 1, Policy: *s.Retry, LastError: err.Error(), LastFailedWorker: name, NextRetryAt: now.Add(backoff)}
}

// heartbeat renews the claim until ctx ends; three failures in a row
// cancel the task's work (lost).
func (p *Pool) heartbeat(ctx context.Context, lost context.CancelFunc, name string, c lifecycle.TaskClaim) {
	every := min(p.TTL/4, 15*time.Second)
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		if err := p.Store.ExtendTaskClaim(ctx, c.InstanceID, c.TaskID, name, p.TTL); err != nil {
			if errors.Is(err, lifecycle.ErrClaimLost) || errors.Is(err, lifecycle.ErrNotFound) {
				lost()
				return
			}
			if failures++; failures >= 3 {
				lost()
				return
			}
			continue
		}
		failures = 0
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
