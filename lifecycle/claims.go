package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// Leases keeps the liveness of task claims: one lease per (instance, task)
// with a holder (the claim's id and worker, as [Store] writes it) and a
// time to live judged by the lease store's own clock — the server's, for
// jetstream.Log.Leases — never by the workers'. A claim is a commit in
// the instance's history; its lease says whether it is still live, so
// heartbeats renew the lease without growing the history (docs/WORKERS.md).
// Implementations must be safe for concurrent use by many processes.
type Leases interface {
	// AcquireLease makes holder the lease's holder for ttl (0: until
	// released) if nobody holds it, or its last holder's lease ended;
	// otherwise it returns acquired false and the live holder.
	AcquireLease(ctx context.Context, key LeaseKey, holder string, ttl time.Duration) (acquired bool, current string, err error)
	// RenewLease sets the lease's time to live to ttl from now (never
	// its old expiry plus ttl) if holder holds it live; false otherwise.
	RenewLease(ctx context.Context, key LeaseKey, holder string, ttl time.Duration) (bool, error)
	// LeaseHolder returns the live holder of the lease, ok false if there
	// is none (never taken, released, or expired).
	LeaseHolder(ctx context.Context, key LeaseKey) (holder string, ok bool, err error)
	// ReleaseLease ends the lease if holder holds it; otherwise it does
	// nothing. It may return before the release is applied, if every
	// later call of the same Leases on that lease waits for it (the
	// store reads its own releases; jetstream.Log.Leases does this): the
	// claim's release is already in the history, a release that is lost
	// leaves a lease that ends at its ttl, and a claim of the task ends
	// such a lease sooner ([Store.ClaimTask]).
	ReleaseLease(ctx context.Context, key LeaseKey, holder string) error
}

// LeaseKey names a lease: a task of one run of an instance. A new run's
// tasks have leases of their own, so a lease left behind by a run that
// ended (TerminateExisting, a delete) never blocks the next run.
type LeaseKey struct {
	Instance string
	Run      ulid.ULID
	Task     workflow.TaskID
}

// ErrClaimLost is matched by the errors of a claim's operations and of
// fenced writes when the worker no longer holds the claim: its lease
// expired, it was released, another worker took it over, or the run it
// belonged to ended. The worker must stop working on the task.
var ErrClaimLost = newRefusal("lifecycle: claim lost")

// ErrAlreadyClaimed is matched by [*ClaimedError]: the task is claimed by
// a live lease.
var ErrAlreadyClaimed = newRefusal("lifecycle: task already claimed")

// ClaimedError is ClaimTask's answer when the task's claim is live: who
// holds it, and until when as far as the history tells (renewals are not
// recorded there).
type ClaimedError struct {
	ID, Op string
	Task   workflow.TaskID
	Worker string    // the holder's worker id ("" if the holder's claim is not committed yet)
	Claim  ulid.ULID // the holder's claim id (zero if not committed yet)
	Since  time.Time // when the holder's claim was committed (zero if not yet)
	TTL    time.Duration
}

func (e *ClaimedError) Error() string {
	who := "another worker, whose claim is being committed"
	if e.Worker != "" {
		who = fmt.Sprintf("worker %q (claim %s since %s", e.Worker, e.Claim, e.Since.UTC().Format(time.RFC3339))
		if e.TTL > 0 {
			who += fmt.Sprintf(", lease %v renewed by its heartbeats)", e.TTL)
		} else {
			who += ", no expiry)"
		}
	}
	return fmt.Sprintf("lifecycle: %s %q: task %s is claimed by %s: wait for its release or expiry, or work on another task", e.Op, e.ID, short(e.Task), who)
}

// Is reports whether target is [ErrAlreadyClaimed].
func (e *ClaimedError) Is(target error) bool { return target == ErrAlreadyClaimed }

// TaskClaim is a worker's claim on a task of a run (Sayiir's TaskClaim):
// pass it to [WithClaim] to fence writes with it, to
// [Store.ExtendTaskClaim] to renew it.
type TaskClaim struct {
	InstanceID string
	TaskID     workflow.TaskID
	Worker     string
	ID         ulid.ULID     // the claim's id: its task.claimed event's id
	Run        ulid.ULID     // the run it belongs to
	TTL        time.Duration // 0: it never expires
	// ExpiresAt is when the lease ends if it is not renewed, by the
	// claimant's clock when it was acquired (the lease store's clock
	// decides); nil when it never expires.
	ExpiresAt *time.Time
	// TookOver is the claim it took over (whose lease had ended), or nil.
	TookOver *events.ClaimRef
}

// leaseKey is the key of the claim's lease.
func (c *TaskClaim) leaseKey() LeaseKey {
	return LeaseKey{Instance: c.InstanceID, Run: c.Run, Task: c.TaskID}
}

// leaseHolder is the holder value of a claim's lease: its id and worker.
func leaseHolder(claim ulid.ULID, worker string) string { return claim.String() + " " + worker }

// parseHolder splits a lease holder value.
func parseHolder(h string) (claim ulid.ULID, worker string) {
	id, w, _ := strings.Cut(h, " ")
	c, _ := ulid.ParseStrict(id)
	return c, w
}

// maxWorkerID bounds a worker id, in bytes.
const maxWorkerID = 256

// validateClaim checks a claim request's worker and ttl.
func (s *Store) validateClaim(worker string, ttl time.Duration) error {
	switch {
	case s.leases == nil:
		return fmt.Errorf("%w: task claims need a lease store: set Config.Leases (jetstream.Log.Leases(), memlog.Log.Leases())", ErrInvalidConfig)
	case worker == "":
		return fmt.Errorf("%w: empty worker id", ErrInvalidRequest)
	case len(worker) > maxWorkerID:
		return fmt.Errorf("%w: worker id of %d bytes, want at most %d", ErrInvalidRequest, len(worker), maxWorkerID)
	case !utf8.ValidString(worker) || strings.ContainsFunc(worker, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Errorf("%w: worker id %q is not printable UTF-8", ErrInvalidRequest, worker)
	case ttl < 0:
		return fmt.Errorf("%w: negative ttl %v (0 means a claim that never expires)", ErrInvalidRequest, ttl)
	case ttl > 0 && ttl < time.Millisecond:
		return fmt.Errorf("%w: ttl %v is under a millisecond", ErrInvalidRequest, ttl)
	}
	return nil
}

// claimable checks that task of st can be claimed: a snapshot in
// progress and no result for the task yet.
func claimable(st *projection.State, task workflow.TaskID) error {
	if err := needSnapshot(st); err != nil {
		return err
	}
	switch k := st.Snapshot.State.Kind; {
	case k.Terminal():
		return &TerminalError{ID: st.Instance, Op: "claim task", State: k}
	case k != workflow.InProgress:
		return fmt.Errorf("%w: task %s of %q cannot be claimed: the run is %s", ErrInvalidRequest, short(task), st.Instance, k)
	}
	if _, done := st.Results[task]; done {
		return fmt.Errorf("%w: task %s of %q already completed: there is nothing to run", ErrInvalidRequest, short(task), st.Instance)
	}
	return nil
}

// ClaimTask claims task of instance id for worker (Sayiir's claim_task),
// with a lease of ttl (0: until released). It returns the claim, or a
// [*ClaimedError] (ErrAlreadyClaimed) naming the holder while the task's
// claim is live. A claim whose lease ended without a release is taken
// over, and the history records it as such. Only a task of an in-progress
// run without a result can be claimed ([*NotFoundError], [*TerminalError],
// ErrInvalidRequest); bad input (an empty or unprintable worker id, a
// negative ttl) is ErrInvalidRequest, and nothing is written.
//
// The lease is taken first, in the lease store, whose atomic create is the
// mutual exclusion; then the claim is committed to the instance's history
// with the sequence check, naming the claim it takes over if any. If the
// commit cannot be made (the run ended meanwhile, or the task's claim
// changed) the lease is released and the refusal returned.
func (s *Store) ClaimTask(ctx context.Context, id string, task workflow.TaskID, worker string, ttl time.Duration) (TaskClaim, error) {
	if err := validateID(id); err != nil {
		return TaskClaim{}, err
	}
	if err := s.validateClaim(worker, ttl); err != nil {
		return TaskClaim{}, wrap("claim task", id, err)
	}
	// First on the cached projection, if there is one: when it is current,
	// the claim costs the lease's create and the commit's append, and the
	// append's sequence check proves it was. Anything else it leads to (a
	// refusal, a live lease, a claim or a run that changed) is decided
	// again on a projection read from the log.
	c, stale, err := s.claimTask(ctx, id, task, worker, ttl, false)
	if stale {
		c, _, err = s.claimTask(ctx, id, task, worker, ttl, true)
	}
	return c, err
}

// claimTask is one attempt of ClaimTask, on a projection read from the
// log (fresh) or on the cached one. stale reports that an attempt on the
// cached projection did not succeed and nothing of it is left (its lease
// was released): the caller must decide again on a fresh one.
func (s *Store) claimTask(ctx context.Context, id string, task workflow.TaskID, worker string, ttl time.Duration, fresh bool) (_ TaskClaim, stale bool, _ error) {
	// What the task's claim is, the run, and the task's last released
	// claim.
	var prior *projection.Claim
	var run, released ulid.ULID
	see := func(st *projection.State) error {
		if err := claimable(st, task); err != nil {
			return err
		}
		if c, ok := st.Claims[task]; ok {
			prior = &c
		}
		run, released = st.Run, st.Released[task]
		return nil
	}
	var err error
	if fresh {
		err = s.read(ctx, id, see)
	} else {
		var cached bool
		cached, err = s.peek(ctx, id, see)
		fresh = !cached
	}
	if err != nil {
		return TaskClaim{}, !fresh && isDomain(err), wrap("claim task", id, err)
	}
	claimID, at, err := s.ids.New()
	if err != nil {
		return TaskClaim{}, false, err
	}
	holder := leaseHolder(claimID, worker)
	key := LeaseKey{Instance: id, Run: run, Task: task}
	sent := time.Now()
	acquired, current, err := s.leases.AcquireLease(ctx, key, holder, ttl)
	if err != nil {
		return TaskClaim{}, false, wrap("claim task", id, fmt.Errorf("acquire the lease: %w", err))
	}
	if !acquired && !fresh {
		// Held by a claim of this run, unless the cached run ended: a
		// read tells (a contended claim costs no second acquire), and
		// brings the task's last release up to date.
		var now ulid.ULID
		if err := s.read(ctx, id, func(st *projection.State) error { now, released = st.Run, st.Released[task]; return nil }); err != nil || now != run {
			return TaskClaim{}, true, nil
		}
	}
	if !acquired {
		if acquired, current, err = s.endLeftover(ctx, key, current, released, holder, ttl); err != nil {
			return TaskClaim{}, false, wrap("claim task", id, err)
		}
	}
	if !acquired {
		return TaskClaim{}, false, s.claimedBy(ctx, key, current)
	}
	var over, tookOver *events.ClaimRef
	if prior != nil {
		over = &events.ClaimRef{Claim: prior.ID, Worker: prior.Worker}
	}
	actor := ActorFrom(ctx)
	_, err = s.write(ctx, "claim task", id, func(st *projection.State) (*events.Commit, error) {
		if err := claimable(st, task); err != nil {
			return nil, err
		}
		if st.Run != run {
			return nil, fmt.Errorf("%w: the run of %q changed while task %s was being claimed: claim again", ErrClaimLost, id, short(task))
		}
		cur, held := st.Claims[task]
		over := over
		switch {
		case !held:
			// No claim (the one read before, if any, was released since):
			// the lease is ours, a plain claim.
			over = nil
		case prior == nil || cur.ID != prior.ID:
			// A claim committed after the read: its worker held the lease
			// then, so ours may have expired meanwhile. Do not take it over
			// blindly.
			return nil, fmt.Errorf("%w: task %s was claimed by %q while this claim was being taken: claim again", ErrClaimLost, short(task), cur.Worker)
		}
		b, err := s.newCommit(st, "claim_task", actor)
		if err != nil {
			return nil, err
		}
		b.addWithID(claimID, st.Run, &events.TaskClaimedData{TaskID: task, Worker: worker, TTLMS: uint64(ttl.Milliseconds()), TakenOver: over})
		tookOver = over
		return &b.c, nil
	})
	if err != nil {
		s.forgetLease(key)
		if rerr := s.leases.ReleaseLease(context.WithoutCancel(ctx), key, holder); rerr != nil {
			return TaskClaim{}, false, wrap("claim task", id, errors.Join(err, fmt.Errorf("release the lease again: %w", rerr)))
		}
		return TaskClaim{}, !fresh && isDomain(err), wrap("claim task", id, err)
	}
	s.noteLease(key, holder, sent, ttl)
	c := TaskClaim{InstanceID: id, TaskID: task, Worker: worker, ID: claimID, Run: run, TTL: ttl, TookOver: tookOver}
	if ttl > 0 {
		exp := at.Add(ttl).UTC()
		c.ExpiresAt = &exp
	}
	return c, false, nil
}

// endLeftover ends the lease held under current when the history says
// its claim was released (released is the task's last released claim):
// its worker failed, or has yet, to remove it, and it would refuse every
// claim until its ttl ends (never, for a claim without one). Then it
// acquires the lease for holder, once. A lease held by any other claim —
// a live one, or one being committed right now, which the history does
// not know yet — is left alone.
func (s *Store) endLeftover(ctx context.Context, key LeaseKey, current string, released ulid.ULID, holder string, ttl time.Duration) (acquired bool, now string, err error) {
	if claim, _ := parseHolder(current); released.IsZero() || claim != released {
		return false, current, nil
	}
	if err := s.leases.ReleaseLease(ctx, key, current); err != nil {
		return false, current, fmt.Errorf("end the lease a released claim left: %w", err)
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "runlog: claim ended the lease a released claim left", slog.String("instance", key.Instance), slog.String("lease_holder", current))
	acquired, now, err = s.leases.AcquireLease(ctx, key, holder, ttl)
	if err != nil {
		return false, now, fmt.Errorf("acquire the lease: %w", err)
	}
	return acquired, now, nil
}

// claimedBy builds the answer to a claim refused by a live lease of
// holder.
func (s *Store) claimedBy(ctx context.Context, key LeaseKey, holder string) error {
	claim, worker := parseHolder(holder)
	e := &ClaimedError{ID: key.Instance, Op: "claim task", Task: key.Task, Worker: worker, Claim: claim}
	_ = s.read(ctx, key.Instance, func(st *projection.State) error {
		if c, ok := st.Claims[key.Task]; ok && c.ID == claim {
			e.Since, e.TTL = c.At, c.TTL
		} else {
			e.Worker, e.Claim = "", ulid.ULID{} // not committed (yet)
		}
		return nil
	})
	return e
}

// ownClaim returns the task's claim in st if worker holds it: ErrNotFound
// (a [*NotFoundError]) when the task has no claim, ErrClaimLost when
// another worker's claim is the task's.
func ownClaim(st *projection.State, op string, task workflow.TaskID, worker string) (projection.Claim, error) {
	if err := needSnapshot(st); err != nil {
		return projection.Claim{}, err
	}
	c, ok := st.Claims[task]
	switch {
	case !ok:
		return c, fmt.Errorf("%w: %s: task %s of %q has no claim", ErrNotFound, op, short(task), st.Instance)
	case c.Worker != worker:
		return c, fmt.Errorf("%w: task %s of %q is claimed by %q, not %q", ErrClaimLost, short(task), st.Instance, c.Worker, worker)
	}
	return c, nil
}

// ReleaseTaskClaim ends worker's claim on task (Sayiir's
// release_task_claim): a task.claim_released commit, then the lease is
// released. [*NotFoundError] (ErrNotFound) when the task has no claim,
// ErrClaimLost when another worker holds it.
func (s *Store) ReleaseTaskClaim(ctx context.Context, id string, task workflow.TaskID, worker string) error {
	if err := validateID(id); err != nil {
		return err
	}
	if err := s.validateClaim(worker, 0); err != nil {
		return wrap("release task claim", id, err)
	}
	actor := ActorFrom(ctx)
	var released projection.Claim
	var run ulid.ULID
	_, err := s.write(ctx, "release task claim", id, func(st *projection.State) (*events.Commit, error) {
		c, err := ownClaim(st, "release task claim", task, worker)
		if err != nil {
			return nil, err
		}
		released, run = c, st.Run
		return s.commitOf(st, "release_task_claim", actor, st.Run, &events.TaskClaimReleasedData{TaskID: task, Claim: c.ID, Worker: worker, Reason: "released"})
	})
	if err != nil {
		return wrap("release task claim", id, s.inFlight(ctx, id, task, err))
	}
	s.forgetLease(LeaseKey{Instance: id, Run: run, Task: task})
	if err := s.leases.ReleaseLease(ctx, LeaseKey{Instance: id, Run: run, Task: task}, leaseHolder(released.ID, worker)); err != nil {
		return wrap("release task claim", id, fmt.Errorf("the release is committed; releasing the lease failed (it expires by itself): %w", err))
	}
	return nil
}

// ExtendTaskClaim renews worker's claim on task (Sayiir's
// extend_task_claim, the heartbeat): its lease lasts ttl from now (an
// absolute renewal, never its old expiry plus ttl). It writes nothing to
// the history. A claim without expiry is left as it is. Errors as
// [Store.ReleaseTaskClaim], and ErrClaimLost when the lease already
// ended.
func (s *Store) ExtendTaskClaim(ctx context.Context, id string, task workflow.TaskID, worker string, ttl time.Duration) error {
	if err := validateID(id); err != nil {
		return err
	}
	if err := s.validateClaim(worker, ttl); err != nil {
		return wrap("extend task claim", id, err)
	}
	var c projection.Claim
	var run ulid.ULID
	see := func(st *projection.State) error {
		var err error
		c, err = ownClaim(st, "extend task claim", task, worker)
		run = st.Run
		return err
	}
	// A heartbeat on the cached projection costs the renewal alone: the
	// lease's holder is the claim's id and worker, so the renewal succeeds
	// only while the lease is live and this very claim's. Anything else is
	// decided on a projection read from the log.
	if cached, err := s.peek(ctx, id, see); cached && err == nil && c.TTL > 0 && ttl > 0 {
		ok, err := s.renewLease(ctx, LeaseKey{Instance: id, Run: run, Task: task}, leaseHolder(c.ID, worker), ttl)
		if err != nil || ok {
			return wrap("extend task claim", id, err)
		}
	}
	err := s.read(ctx, id, see)
	if err != nil {
		return wrap("extend task claim", id, s.inFlight(ctx, id, task, err))
	}
	if c.TTL == 0 {
		return nil // never expires
	}
	if ttl == 0 {
		return wrap("extend task claim", id, fmt.Errorf("%w: ttl 0 on a claim with a lease: give the new time to live", ErrInvalidRequest))
	}
	key := LeaseKey{Instance: id, Run: run, Task: task}
	ok, err := s.renewLease(ctx, key, leaseHolder(c.ID, worker), ttl)
	if err != nil {
		return wrap("extend task claim", id, err)
	}
	if !ok {
		s.forgetLease(key)
		return wrap("extend task claim", id, fmt.Errorf("%w: the lease of claim %s on task %s ended before it was renewed: stop working on the task", ErrClaimLost, c.ID, short(task)))
	}
	return nil
}

// renewLease renews holder's lease on key for ttl from now and, when it
// did, notes it as live for this store.
func (s *Store) renewLease(ctx context.Context, key LeaseKey, holder string, ttl time.Duration) (bool, error) {
	sent := time.Now()
	ok, err := s.leases.RenewLease(ctx, key, holder, ttl)
	if err != nil {
		return false, fmt.Errorf("renew the lease: %w", err)
	}
	if ok {
		s.noteLease(key, holder, sent, ttl)
	}
	return ok, nil
}

// inFlight turns an answer of "no claim" (ErrNotFound from the history)
// into ErrClaimLost when the task's lease is held all the same: a claim
// is then being committed (its lease taken, its commit not yet landed) or
// released (committed, its lease not yet deleted) by another call, and the
// task is, for everyone, claimed — as ClaimTask, which consults the lease,
// would answer.
func (s *Store) inFlight(ctx context.Context, id string, task workflow.TaskID, err error) error {
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	var run ulid.ULID
	var exists bool
	if rerr := s.read(ctx, id, func(st *projection.State) error { run, exists = st.Run, st.Exists; return nil }); rerr != nil || !exists {
		return err
	}
	h, ok, lerr := s.leases.LeaseHolder(ctx, LeaseKey{Instance: id, Run: run, Task: task})
	if lerr != nil || !ok {
		return err
	}
	_, worker := parseHolder(h)
	return fmt.Errorf("%w: task %s of %q is being claimed or released by %q", ErrClaimLost, short(task), id, worker)
}

// SaveOption changes a write: [WithClaim] fences it with a claim.
type SaveOption func(*saveOptions)

type saveOptions struct {
	claim   *TaskClaim
	release bool
}

// WithClaim fences a write ([Store.SaveSnapshot], [Store.SaveTaskResult],
// [Store.ConsumeEvent]) with claim: it is refused with ErrClaimLost when
// the claim is no longer the task's (released, taken over, its run ended)
// or its lease has ended. With release, the same commit releases the
// claim (a checkpoint that finishes the task).
func WithClaim(claim TaskClaim, release bool) SaveOption {
	return func(o *saveOptions) { o.claim, o.release = &claim, release }
}

func saveOptionsOf(opts []SaveOption) saveOptions {
	var o saveOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// checkLease confirms, before a fenced write, that the claim's lease is
// live. The history check is the decider's (fenced); this one covers
// expiry, which the history does not record.
func (s *Store) checkLease(ctx context.Context, o saveOptions) error {
	if o.claim == nil {
		return nil
	}
	if s.leases == nil {
		return fmt.Errorf("%w: a fenced write needs a lease store: set Config.Leases", ErrInvalidConfig)
	}
	c := o.claim
	if s.leaseCertain(c.leaseKey(), leaseHolder(c.ID, c.Worker)) {
		return nil
	}
	h, ok, err := s.leases.LeaseHolder(ctx, c.leaseKey())
	if err != nil {
		return fmt.Errorf("read the claim's lease: %w", err)
	}
	if !ok || h != leaseHolder(c.ID, c.Worker) {
		return fmt.Errorf("%w: the lease of claim %s of %q on task %s has ended: the write is refused; stop working on the task", ErrClaimLost, c.ID, c.Worker, short(c.TaskID))
	}
	return nil
}

// leaseSeen is what a store knows of a lease it acquired or renewed
// itself: its holder, and until when it is certainly live.
type leaseSeen struct {
	holder string
	until  time.Time // monotonic; zero: it never expires
}

// leaseMargin is how much of a lease's ttl the store does not count on
// when it judges, by its own clock, that a lease it acquired or renewed
// is still live: a quarter of the ttl, at most 2 s.
func leaseMargin(ttl time.Duration) time.Duration { return min(ttl/4, 2*time.Second) }

// noteLease records that holder acquired or renewed key for ttl with a
// request sent at sent (by this process's monotonic clock). The lease
// store started the ttl when it handled the request, after sent, and
// never ends a lease before its ttl: the lease is certainly live until
// sent + ttl, and the store counts on it until sent + ttl - margin. Only
// elapsed time on this process's own clock is used; no clocks are
// compared.
func (s *Store) noteLease(key LeaseKey, holder string, sent time.Time, ttl time.Duration) {
	v := leaseSeen{holder: holder}
	if ttl > 0 {
		v.until = sent.Add(ttl - leaseMargin(ttl))
	}
	s.leaseView.Store(key, v)
	if s.leaseNotes.Add(1)%leaseSweepEvery == 0 {
		s.sweepLeases(time.Now())
	}
}

// leaseSweepEvery is how many leases a store notes between two sweeps of
// the ones whose time has passed: a store that takes many claims and
// never releases them (their workers die) keeps its view bounded by the
// live ones.
const leaseSweepEvery = 1024

// sweepLeases forgets the noted leases the store can no longer count on.
func (s *Store) sweepLeases(now time.Time) {
	s.leaseView.Range(func(k, x any) bool {
		if v := x.(leaseSeen); !v.until.IsZero() && !now.Before(v.until) {
			s.leaseView.CompareAndDelete(k, x)
		}
		return true
	})
}

func (s *Store) forgetLease(key LeaseKey) { s.leaseView.Delete(key) }

// leaseCertain reports whether this store knows holder's lease on key to
// be live without asking the lease store: it acquired or renewed it
// itself, and the time it can count on has not passed. Expiry is the only
// way a live lease of a claim ends without a commit (a release or a
// take-over is a commit, which the fenced decision sees).
func (s *Store) leaseCertain(key LeaseKey, holder string) bool {
	x, ok := s.leaseView.Load(key)
	if !ok {
		return false
	}
	v := x.(leaseSeen)
	if v.holder != holder {
		return false
	}
	if v.until.IsZero() || time.Now().Before(v.until) {
		return true
	}
	s.leaseView.CompareAndDelete(key, x)
	return false
}

// fenceClaim checks, in a decider, that o's claim is the task's claim in
// st, and returns the release event to add when asked for.
func fenceClaim(st *projection.State, o saveOptions) (events.Payload, error) {
	if o.claim == nil {
		return nil, nil
	}
	c := o.claim
	cur, ok := st.Claims[c.TaskID]
	if st.Run != c.Run || !ok || cur.ID != c.ID {
		return nil, fmt.Errorf("%w: claim %s of %q on task %s is no longer the task's (released, taken over, or its run ended): the write is refused", ErrClaimLost, c.ID, c.Worker, short(c.TaskID))
	}
	if !o.release {
		return nil, nil
	}
	return &events.TaskClaimReleasedData{TaskID: c.TaskID, Claim: c.ID, Worker: c.Worker, Reason: "checkpoint"}, nil
}

// afterFencedWrite releases the lease of a claim released by the write.
func (s *Store) afterFencedWrite(ctx context.Context, o saveOptions) {
	if o.claim == nil || !o.release {
		return
	}
	c := o.claim
	s.forgetLease(c.leaseKey())
	if err := s.leases.ReleaseLease(ctx, c.leaseKey(), leaseHolder(c.ID, c.Worker)); err != nil {
		s.logger.WarnContext(ctx, "runlog: the claim was released in the history; releasing its lease failed (it expires by itself)",
			"instance", c.InstanceID, "task", c.TaskID.String(), "err", err)
	}
}

func short(t workflow.TaskID) string {
	s := t.String()
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
