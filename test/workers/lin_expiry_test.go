package workers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

// The claim operations with leases that expire, as a sequential
// specification checked with porcupine. Time is real: each operation
// carries its call and return times (nanoseconds since the test began, on
// the test process's monotonic clock, which the in-memory log and the
// embedded server share). Per task, the state is the claim the history
// names (its worker, or none) and the window [lo, hi] within which its
// lease ends:
//
//   - a lease granted or renewed by an operation called at c and returned
//     at r ends after c+ttl (the lease store starts the ttl once the
//     request arrived, and never ends a lease early) and by
//     r+round(ttl)+slack (the store's rounding, on JetStream whole seconds,
//     and how late it removes an expired lease);
//   - an operation [c, r] finds the lease live if it may have run before the
//     end (c < hi), and ended if it may have run after it (r >= lo); where
//     both are possible the model follows both, and narrows the window by
//     what the answer says (live: the end is after c; ended: by r).
//
// The answers:
//
//	claim(w, ttl)  → ok if the task has no claim or its lease ended, then w's claim
//	                 with a new lease; claimed if the lease is live; lost
//	                 (nothing written) if another claim landed while w's was
//	                 being made, so only when the task has a claim
//	extend(w, ttl) → ok if w's claim's lease is live, renewed from now; lost if
//	                 it ended or the claim is another's; notfound without a claim
//	save(w)        → ok if w's claim's lease is live; else lost
//	release(w)     → ok if the claim is w's (live or not: the history names it),
//	                 then none; lost if another's; notfound without a claim
//
// What it proves on top of TestClaimsLinearizable (leases without
// expiry): no claim is granted while another claim's lease is certainly
// live, no fenced save lands and no heartbeat succeeds after the lease
// certainly ended, and a lease that ended is always taken over.
type expIn struct {
	Task   int
	Worker string
	Op     claimOp // opClaim, opRelease, opSave, or opExtend
	TTL    time.Duration
	Call   int64 // the operation's call and return, for the model's clock
	Return int64
}

const opExtend claimOp = opSave + 1

type expState struct {
	holder string
	lo, hi int64 // the lease of holder's claim ends within [lo, hi]
}

// expiryModel returns the model for a lease store that rounds a ttl up
// with round and may remove an ended lease up to slack late.
func expiryModel(round func(time.Duration) time.Duration, slack time.Duration) porcupine.Model {
	grant := func(w string, i expIn) expState {
		return expState{holder: w, lo: i.Call + int64(i.TTL), hi: i.Return + int64(round(i.TTL)+slack)}
	}
	step := func(s expState, i expIn, out string) []expState {
		var next []expState
		add := func(ok bool, st expState) {
			if ok {
				next = append(next, st)
			}
		}
		canLive := s.holder != "" && i.Call < s.hi
		canEnd := s.holder != "" && i.Return >= s.lo
		asLive := expState{s.holder, max(s.lo, i.Call), s.hi}
		asEnded := expState{s.holder, s.lo, min(s.hi, i.Return)}
		switch i.Op {
		case opClaim:
			add(s.holder == "" && out == "ok", grant(i.Worker, i))
			add(canEnd && out == "ok", grant(i.Worker, i))
			add(canLive && out == "claimed", asLive)
			add(s.holder != "" && out == "lost", s)
		case opExtend:
			switch {
			case s.holder == "":
				add(out == "notfound", s)
			case s.holder != i.Worker:
				add(out == "lost", s)
			default:
				add(canLive && out == "ok", grant(i.Worker, i))
				add(canEnd && out == "lost", asEnded)
			}
		case opSave:
			mine := s.holder == i.Worker
			add(!mine && out == "lost", s)
			add(mine && canLive && out == "ok", asLive)
			add(mine && canEnd && out == "lost", asEnded)
		case opRelease:
			switch {
			case s.holder == "":
				add(out == "notfound", s)
			case s.holder != i.Worker:
				add(out == "lost", s)
			default:
				add(out == "ok", expState{})
			}
		}
		return next
	}
	nm := porcupine.NondeterministicModel{
		Partition: byTask(func(in any) int { return in.(expIn).Task }),
		Init:      func() []any { return []any{expState{}} },
		Step: func(s, in, out any) []any {
			var r []any
			for _, st := range step(s.(expState), in.(expIn), out.(claimOut).Result) {
				r = append(r, st)
			}
			return r
		},
		DescribeOperation: func(in, out any) string {
			i := in.(expIn)
			return fmt.Sprintf("%s %v(%v) task %d → %s", i.Worker, [...]string{"", "claim", "release", "save", "extend"}[i.Op], i.TTL, i.Task, out.(claimOut).Result)
		},
	}
	return nm.ToModel()
}

// expiryRun is one workload of TestClaimsExpiryLinearizable.
type expiryRun struct {
	log            lifecycle.Log
	leases         lifecycle.Leases
	workers, ops   int
	ttls           []time.Duration // a claim's or renewal's ttl is one of them
	maxPause       time.Duration   // between two operations of a worker (one in four; the others an eighth of it)
	round          func(time.Duration) time.Duration
	slack          time.Duration
	minOK, minLost int // the least of each answer the workload must give, or it proves little
}

// run drives the workload and returns its history.
func (r expiryRun) run(t *testing.T) []porcupine.Operation {
	ctx := t.Context()
	const stores, tasks = 3, 2
	sts := make([]*lifecycle.Store, stores)
	for i := range sts {
		var err error
		if sts[i], err = lifecycle.New(r.log, lifecycle.Config{Leases: r.leases, MaxAttempts: 200, Logger: discardLogger()}); err != nil {
			t.Fatal(err)
		}
	}
	taskIDs := make([]workflow.TaskID, tasks)
	for i := range taskIDs {
		taskIDs[i] = workflow.NewTaskID(fmt.Sprintf("exp-%d", i))
	}
	const id = "lin-expiry"
	if _, err := sts[0].PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskIDs[0]}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var mu sync.Mutex
	var history []porcupine.Operation
	var wg sync.WaitGroup
	for w := range r.workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 29))
			st := sts[w%stores]
			name := fmt.Sprintf("w-%d", w)
			held := map[int]lifecycle.TaskClaim{} // the last claim granted to this worker, per task
			for range r.ops {
				pause := r.maxPause / 8 // mostly within a lease, now and then past one
				if rng.IntN(4) == 0 {
					pause = r.maxPause
				}
				time.Sleep(time.Duration(rng.Int64N(int64(pause))))
				task := rng.IntN(tasks)
				in := expIn{Task: task, Worker: name, Op: claimOp(1 + rng.IntN(4)), TTL: r.ttls[rng.IntN(len(r.ttls))]}
				if _, ok := held[task]; !ok && (in.Op == opSave || in.Op == opExtend) {
					in.Op = opClaim // nothing to fence a save with yet
				}
				if in.Op == opRelease || in.Op == opSave {
					in.TTL = 0
				}
				in.Call = now()
				var res string
				switch in.Op {
				case opClaim:
					c, err := st.ClaimTask(ctx, id, taskIDs[task], name, in.TTL)
					res = verdict(err)
					if err == nil {
						held[task] = c
					}
				case opExtend:
					res = verdict(st.ExtendTaskClaim(ctx, id, taskIDs[task], name, in.TTL))
				case opRelease:
					res = verdict(st.ReleaseTaskClaim(ctx, id, taskIDs[task], name))
				case opSave:
					snap, rev, err := st.LoadSnapshot(ctx, id)
					if err != nil {
						res = "unknown"
						break
					}
					snap.SetTaskHint(workflow.TaskHint{ID: snap.State.Position.TaskID, Tags: []string{fmt.Sprint(in.Call)}})
					_, err = st.SaveSnapshot(ctx, snap, rev, lifecycle.WithClaim(held[task], false))
					if errors.Is(err, lifecycle.ErrStale) || errors.Is(err, lifecycle.ErrConcurrentModification) {
						continue // another save moved the revision first: no claim verdict
					}
					res = verdict(err)
				}
				in.Return = now()
				if res == "unknown" {
					t.Errorf("%s: an operation of unknown outcome: not expected without faults", name)
					continue
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: w, Input: in, Call: in.Call, Output: claimOut{Result: res}, Return: in.Return})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return history
}

// check checks history against the model and returns porcupine's verdict,
// logging the history when it is not linearizable.
func (r expiryRun) check(t *testing.T, history []porcupine.Operation) porcupine.CheckResult {
	model := expiryModel(r.round, r.slack)
	res := porcupine.CheckOperationsTimeout(model, history, 2*time.Minute)
	if res != porcupine.Ok {
		sorted := slices.Clone(history)
		slices.SortFunc(sorted, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
		for _, op := range sorted {
			t.Logf("[%8.1f ms, %8.1f ms] %s", float64(op.Call)/1e6, float64(op.Return)/1e6, model.DescribeOperation(op.Input, op.Output))
		}
	}
	return res
}

// linearizable runs the workload and requires its history to be
// linearizable and to exercise the answers that prove something.
func (r expiryRun) linearizable(t *testing.T) {
	h := r.run(t)
	if res := r.check(t, h); res != porcupine.Ok {
		t.Fatalf("claims with expiring leases are not linearizable (%v) over %d operations: %v", res, len(h), answers(h))
	}
	mustExercise(t, r, h)
}

// answers counts the history's answers, by operation and result.
func answers(history []porcupine.Operation) map[string]int {
	n := map[string]int{}
	for _, op := range history {
		n[fmt.Sprint([...]string{"", "claim", "release", "save", "extend"}[op.Input.(expIn).Op], "/", op.Output.(claimOut).Result)]++
	}
	return n
}

// TestClaimsExpiryLinearizable: workers (3 stores) claim with short
// leases, heartbeat, save fenced by their claims and release on 2 tasks,
// pausing at random for longer than a lease at times, on the in-memory log
// (leases of 20–60 ms, expired by its clock) and on JetStream (leases of
// 1–2 s, expired by the server); the history of calls, answers and their
// times must be linearizable against expiryModel. A lease store that
// grants a live lease to a second worker must fail the same check.
func TestClaimsExpiryLinearizable(t *testing.T) {
	exact := func(d time.Duration) time.Duration { return d }
	seconds := func(d time.Duration) time.Duration { return (d + time.Second - 1).Truncate(time.Second) }
	mem := func(leases func(*memlog.Log) lifecycle.Leases) expiryRun {
		l := memlog.New(nil)
		return expiryRun{log: l, leases: leases(l), workers: 8, ops: 40,
			ttls: []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 60 * time.Millisecond}, maxPause: 120 * time.Millisecond,
			round: exact, slack: time.Millisecond, minOK: 20, minLost: 10}
	}
	t.Run("memlog", func(t *testing.T) {
		t.Parallel()
		r := mem(func(l *memlog.Log) lifecycle.Leases { return l.Leases() })
		r.linearizable(t)
	})
	t.Run("jetstream", func(t *testing.T) {
		t.Parallel()
		js, err := jetstream.Open(t.Context(), natstest.Connect(t, natstest.Start(t)), jetstream.Config{Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		// The server counts a lease's ttl in whole seconds, and removes an
		// ended one on its own schedule: up to about a second late.
		r := expiryRun{log: js, leases: js.Leases(), workers: 6, ops: 14,
			ttls: []time.Duration{time.Second, 2 * time.Second}, maxPause: 4 * time.Second,
			round: seconds, slack: 2 * time.Second, minOK: 10, minLost: 3}
		r.linearizable(t)
	})
	t.Run("a lease store that grants live leases fails it", func(t *testing.T) {
		t.Parallel()
		r := mem(func(l *memlog.Log) lifecycle.Leases { return grabbing{l.Leases()} })
		h := r.run(t)
		if res := r.check(t, h); res == porcupine.Ok {
			t.Fatalf("a lease store that grants a live lease to anyone passed the check over %d operations: %v", len(h), answers(h))
		}
	})
}

// mustExercise fails the test when the workload gave too few of the
// answers that prove something: grants, refusals of a live claim, and
// losses after an expiry.
func mustExercise(t *testing.T, r expiryRun, h []porcupine.Operation) {
	t.Helper()
	n := answers(h)
	t.Logf("%d operations linearizable: %v", len(h), n)
	if n["claim/ok"] < r.minOK || n["claim/claimed"] == 0 || n["save/lost"]+n["extend/lost"] < r.minLost || n["save/ok"] == 0 || n["extend/ok"] == 0 {
		t.Errorf("the workload did not exercise the answers that matter (want ≥ %d claims granted, some refused, ≥ %d saves or heartbeats lost, some landed): %v", r.minOK, r.minLost, n)
	}
}

// grabbing is a lease store with Sayiir's old bug: it grants a lease to
// whoever asks, live or not, so two workers both believe they hold it.
type grabbing struct{ lifecycle.Leases }

func (g grabbing) AcquireLease(ctx context.Context, k lifecycle.LeaseKey, holder string, ttl time.Duration) (bool, string, error) {
	if ok, cur, err := g.Leases.AcquireLease(ctx, k, holder, ttl); ok || err != nil {
		return ok, cur, err
	}
	if err := g.Leases.ReleaseLease(ctx, k, mustHolder(ctx, g.Leases, k)); err != nil {
		return false, "", err
	}
	return g.Leases.AcquireLease(ctx, k, holder, ttl)
}

func mustHolder(ctx context.Context, l lifecycle.Leases, k lifecycle.LeaseKey) string {
	h, _, _ := l.LeaseHolder(ctx, k)
	return h
}
