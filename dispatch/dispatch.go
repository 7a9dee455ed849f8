// Package dispatch finds runnable tasks for workers (Sayiir's
// find_available_tasks): which task of which run may be executed now, and
// in which order a given worker should take them.
//
// An [Entry] is the dispatch view of one instance, derived from its
// projection by [Of]: the log stays the truth, an entry is a projection of
// it, and a claim ([lifecycle.Store.ClaimTask]) validates against the
// instance's history, so a stale entry can waste a claim attempt but
// never make a task run that the log says must not. [Rank] orders a set
// of entries for a worker with Sayiir's rules (aging, tags, soft bias,
// retry backoff); [Find] does it over an [Index] and returns what a worker
// needs to execute each task.
//
// This is the first step of docs/WORKERS.md's dispatch: the index here is
// [MemIndex], kept in memory and rebuilt from the log; a maintained index
// shared by a fleet is the next one.
package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// Entry is a task that may be run: an in-progress run positioned at a task
// with no result yet and no pending cancel or pause.
type Entry struct {
	Instance   string
	Run        ulid.ULID
	Task       workflow.TaskID
	Definition workflow.DefinitionHash
	Priority   uint8    // the task's priority, 3 when unset (lower runs first)
	Tags       []string // the task's tags: a worker must have them all
	// Since is when the task became the run's current one, as the
	// history says (the snapshot's last update): the wait that ages it.
	Since time.Time
	// RetryAt is when a retried task may run again (zero: now), and
	// LastFailedWorker the worker its last attempt failed on.
	RetryAt          time.Time
	LastFailedWorker string
	// Claim is the history's claim on the task, if any: whether its lease
	// is live decides whether the task is taken.
	Claim *projection.Claim
	// Seq is the instance's last sequence the entry was derived from.
	Seq uint64
}

// Of derives the instance's entry from its projection; ok is false when
// it has nothing to run now: no snapshot, not in progress, not positioned
// at a task (a delay, a fork, a signal wait: timers come later), the task
// already has a result, or a cancel or pause is pending (those go to
// CheckControlSignals first).
func Of(st *projection.State) (e Entry, ok bool) {
	if !st.Exists || st.Snapshot == nil || len(st.Signals) > 0 {
		return Entry{}, false
	}
	snap := st.Snapshot
	task, ok := snap.CurrentTaskID()
	if !ok {
		return Entry{}, false
	}
	if _, done := st.Results[task]; done {
		return Entry{}, false
	}
	e = Entry{Instance: st.Instance, Run: st.Run, Task: task, Definition: snap.DefinitionHash, Priority: snap.CurrentTaskPriority(),
		Tags: slices.Clone(snap.TaskTags), Since: snap.UpdatedAt, Seq: st.LastSeq}
	if r, ok := snap.TaskRetries[task]; ok {
		e.RetryAt, e.LastFailedWorker = r.NextRetryAt, r.LastFailedWorker
	}
	if c, ok := st.Claims[task]; ok {
		e.Claim = &c
	}
	return e, true
}

// DefaultAgingInterval is the aging interval of [Options] when unset.
const DefaultAgingInterval = time.Minute

// Options shape a search for a worker.
type Options struct {
	// Tags are the worker's: a task is eligible when its tags are a
	// subset of them. A task without tags goes to anyone; a worker
	// without tags takes every task.
	Tags []string
	// AgingInterval: a task's effective priority is its priority minus
	// its wait divided by the interval, so a waiting task rises; clamped
	// to at least 1 s and at most [MaxAgingInterval]. Zero means
	// [DefaultAgingInterval].
	AgingInterval time.Duration
	// Now is the time of the search; zero means time.Now. It judges
	// retry backoff and aging, from the history's times.
	Now time.Time
	// Skip, when set, leaves out an entry the caller knows not to try now
	// (a worker pool: one the log said was stale, or another of its
	// workers is trying). [RankSeq] with a limit asks it only of an entry
	// that would be kept, so it may cost a lock or a map lookup.
	Skip func(Entry) bool
}

// eligible reports whether a worker of tags may run a task of taskTags.
func eligible(taskTags, tags []string) bool {
	if len(tags) == 0 {
		return true
	}
	for _, t := range taskTags {
		if !slices.Contains(tags, t) {
			return false
		}
	}
	return true
}

// Rank returns, in the order worker should try them, at most limit of
// entries (limit <= 0: all) that it may run: its tags allow them, their
// retry backoff has passed, and they are not taken (taken reports whether
// an entry's claim is live; nil: an entry with a claim is taken). The
// order is Sayiir's: a task that last failed on this worker comes after
// every other (soft bias); then lower effective priority first (priority
// − wait / aging interval, the wait counted from the entry's Since, so
// negative when a writer's clock put it ahead of this one); then the
// longest waiting; then by instance id.
func Rank(entries []Entry, worker string, limit int, opts Options, taken func(Entry) bool) []Entry {
	return rank(slices.Values(entries), false, worker, limit, opts, taken)
}

// RankSeq is [Rank] over entries as they come: with a limit it keeps
// only the best limit (copying those alone), and asks Options.Skip, and
// taken of a claimed entry, only of an entry that would be kept.
func RankSeq(entries iter.Seq[Entry], worker string, limit int, opts Options, taken func(Entry) bool) []Entry {
	return rank(entries, false, worker, limit, opts, taken)
}

// RankOrdered is [RankSeq] over entries that come in rank order for
// opts' aging interval ([CompareRank], as an [OrderedIndex] yields them):
// with a limit it stops at the first entry that cannot beat the worst
// it keeps, so a search costs the entries ahead of its answer, not the
// index. Its answer is RankSeq's.
func RankOrdered(entries iter.Seq[Entry], worker string, limit int, opts Options, taken func(Entry) bool) []Entry {
	return rank(entries, true, worker, limit, opts, taken)
}

// MaxAgingInterval is the longest aging interval a search uses: a longer
// one (in effect, no aging) is clamped to it, so that a rank key fits in
// 64 bits.
const MaxAgingInterval = 365 * 24 * time.Hour

// Aging returns the aging interval a search with opts uses: opts'
// AgingInterval, [DefaultAgingInterval] when zero, clamped to
// [time.Second, MaxAgingInterval].
func (opts Options) Aging() time.Duration {
	aging := opts.AgingInterval
	if aging == 0 {
		aging = DefaultAgingInterval
	}
	return min(max(aging, time.Second), MaxAgingInterval)
}

// rankEpoch is the origin of rank keys' times.
var rankEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// RankKey is e's effective priority for the aging interval aging (as
// [Options.Aging] clamps it), scaled by the interval and shifted by a
// search's time: priority × aging + Since. A lower key ranks first at any
// time, which is what lets an index keep its entries in rank order.
func RankKey(e Entry, aging time.Duration) int64 {
	since := int64(e.Since.Sub(rankEpoch)) // saturates
	p := int64(e.Priority) * int64(aging)
	if since > math.MaxInt64-p {
		return math.MaxInt64
	}
	return p + since
}

// CompareRank is the rank order of two entries for a worker with no soft
// bias between them: by [RankKey], then the longest waiting, then by
// instance id.
func CompareRank(a, b Entry, aging time.Duration) int {
	return cmp.Or(cmp.Compare(RankKey(a, aging), RankKey(b, aging)), a.Since.Compare(b.Since), cmp.Compare(a.Instance, b.Instance))
}

// OrderedIndex is an [Index] that can also yield its entries in rank
// order (jetstream's LiveIndex does), for [RankOrdered].
type OrderedIndex interface {
	Index
	// InRankOrder yields the entries by [CompareRank] for aging; ok is
	// false when the index keeps no such order for that interval.
	InRankOrder(ctx context.Context, aging time.Duration) (entries iter.Seq2[Entry, error], ok bool)
	// Passed tells the index that the log holds a commit of instance at
	// seq (a worker's own checkpoint, just acknowledged): an entry
	// derived from an older state is stale, and the index leaves it out
	// until it is given the instance's state at seq or later. It is what
	// the process itself knows, and saves its searches the entries it
	// would otherwise read and find stale against the log while the
	// index catches up; it never adds an entry.
	Passed(instance string, seq uint64)
}

func rank(entries iter.Seq[Entry], ordered bool, worker string, limit int, opts Options, taken func(Entry) bool) []Entry {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	aging := opts.Aging()
	type ranked struct {
		e    Entry
		bias int
		key  int64
	}
	less := func(a, b ranked) int {
		return cmp.Or(cmp.Compare(a.bias, b.bias), cmp.Compare(a.key, b.key), a.e.Since.Compare(b.e.Since), cmp.Compare(a.e.Instance, b.e.Instance))
	}
	// With a limit, only the best limit are kept, in order, as they come
	// (a worker asks for a few of thousands of entries): each entry costs
	// one comparison with the worst kept, most of the time, rather than
	// its share of a sort of all.
	var rs []ranked
	for e := range entries {
		r := ranked{e: e, key: RankKey(e, aging)}
		if worker != "" && e.LastFailedWorker == worker {
			r.bias = 1
		}
		if limit > 0 && len(rs) == limit {
			if ordered && rs[limit-1].bias == 0 {
				// In rank order, this entry and every one after it come
				// after the worst kept, which has no soft bias to lose.
				break
			}
			if less(r, rs[limit-1]) >= 0 {
				continue
			}
		}
		if !eligible(e.Tags, opts.Tags) || now.Before(e.RetryAt) {
			continue
		}
		if opts.Skip != nil && opts.Skip(e) {
			continue
		}
		if e.Claim != nil && (taken == nil || taken(e)) {
			continue
		}
		if limit <= 0 {
			rs = append(rs, r)
			continue
		}
		at, _ := slices.BinarySearchFunc(rs, r, less)
		if len(rs) < limit {
			rs = slices.Insert(rs, at, r)
		} else {
			copy(rs[at+1:], rs[at:limit-1])
			rs[at] = r
		}
	}
	if limit <= 0 {
		slices.SortFunc(rs, less)
	}
	out := make([]Entry, len(rs))
	for i, r := range rs {
		out[i] = r.e
	}
	return out
}

// Index holds the entries of the runnable tasks of a log.
type Index interface {
	// Entries yields every entry.
	Entries(ctx context.Context) iter.Seq2[Entry, error]
}

// AvailableTask is what a worker needs to execute a task (Sayiir's
// AvailableTask): the instance and task, the input (the run's initial
// input when no task has completed, else the last completed task's
// output), the definition hash, the trace parent, and the snapshot with
// its revision to save against.
type AvailableTask struct {
	Instance    string
	Task        workflow.TaskID
	Input       []byte
	Definition  workflow.DefinitionHash
	TraceParent string
	Snapshot    *workflow.Snapshot
	Revision    lifecycle.Revision
}

// Find returns at most limit tasks worker may run now, in the order of
// [Rank], each checked against the instance's current projection (an
// entry that is no longer runnable, or has moved on, is skipped). A task
// whose history has a claim is taken while the claim's lease is live
// (leases nil: it is taken). The cost is one read per index entry, then
// one projection read per returned task; over an [OrderedIndex] that
// keeps opts' order, with a limit, the entries are read in rank order and
// only until limit tasks are found (the tasks that last failed on worker,
// which come last, are read after the others).
func Find(ctx context.Context, idx Index, store *lifecycle.Store, leases lifecycle.Leases, worker string, limit int, opts Options) ([]AvailableTask, error) {
	taken := Taken(ctx, leases)
	var out []AvailableTask
	// add checks e against the log and adds its task if it is still to
	// run; full reports that limit tasks are found.
	add := func(e Entry) (full bool, err error) {
		st, err := store.Load(ctx, e.Instance)
		if err != nil {
			if errors.Is(err, lifecycle.ErrNotFound) || errors.Is(err, lifecycle.ErrInvalidInstanceID) {
				return false, nil // not an instance the log has: a stale or stray entry
			}
			return false, fmt.Errorf("dispatch: find: load %q: %w", e.Instance, err)
		}
		cur, ok := Of(&st)
		if !ok || cur.Run != e.Run || cur.Task != e.Task || len(Rank([]Entry{cur}, worker, 1, opts, taken)) == 0 {
			return false, nil // the entry is stale: the log says otherwise (moved on, backing off, claimed)
		}
		snap := st.Snapshot.Clone()
		in := snap.InitialInput
		if last := snap.State.LastCompletedTask; last != nil {
			if o, ok := st.Results[*last]; ok {
				in = o
			}
		}
		out = append(out, AvailableTask{Instance: e.Instance, Task: e.Task, Input: slices.Clone(in), Definition: snap.DefinitionHash,
			TraceParent: snap.TraceParent, Snapshot: snap, Revision: st.Revision()})
		return limit > 0 && len(out) >= limit, nil
	}
	if oi, ok := idx.(OrderedIndex); ok && limit > 0 {
		if seq, ok := oi.InRankOrder(ctx, opts.Aging()); ok {
			err := findOrdered(seq, worker, opts, taken, add)
			return out, err
		}
	}
	var entries []Entry
	for e, err := range idx.Entries(ctx) {
		if err != nil {
			return nil, fmt.Errorf("dispatch: find: %w", err)
		}
		entries = append(entries, e)
	}
	for _, e := range Rank(entries, worker, 0, opts, taken) {
		if full, err := add(e); err != nil || full {
			return out, err
		}
	}
	return out, nil
}

// findOrdered is Find's walk of entries in rank order: each entry Rank
// would keep is checked as it comes (add), the soft-biased ones (the last
// attempt failed on worker) once every other has been.
func findOrdered(seq iter.Seq2[Entry, error], worker string, opts Options, taken func(Entry) bool, add func(Entry) (bool, error)) error {
	var biased []Entry
	for e, err := range seq {
		if err != nil {
			return fmt.Errorf("dispatch: find: %w", err)
		}
		if len(Rank([]Entry{e}, "", 1, opts, taken)) == 0 {
			continue // not for this worker now: tags, backoff, skipped, taken
		}
		if worker != "" && e.LastFailedWorker == worker {
			biased = append(biased, e)
			continue
		}
		if full, err := add(e); err != nil || full {
			return err
		}
	}
	for _, e := range biased {
		if full, err := add(e); err != nil || full {
			return err
		}
	}
	return nil
}

// Taken is [Rank]'s taken for the lease store leases: an entry's claim
// is live while its lease is held (or the lease store cannot say); with
// no lease store every claim counts as live.
func Taken(ctx context.Context, leases lifecycle.Leases) func(Entry) bool {
	return func(e Entry) bool {
		if leases == nil {
			return true
		}
		_, ok, err := leases.LeaseHolder(ctx, lifecycle.LeaseKey{Instance: e.Instance, Run: e.Run, Task: e.Task})
		return ok || err != nil
	}
}

// FindHinted validates a hint (an entry delivered by a wake-up): it
// returns the task to run if the instance's current projection still has
// that task of that run to run, ok false otherwise (the hint is stale, or
// the task is taken by a live lease).
func FindHinted(ctx context.Context, hint Entry, store *lifecycle.Store, leases lifecycle.Leases) (AvailableTask, bool, error) {
	got, err := Find(ctx, single{hint}, store, leases, "", 1, Options{Tags: hint.Tags})
	if err != nil || len(got) == 0 {
		return AvailableTask{}, false, err
	}
	a := got[0]
	if a.Instance != hint.Instance || a.Task != hint.Task {
		return AvailableTask{}, false, nil
	}
	return a, true, nil
}

// single is an Index of one entry.
type single struct{ e Entry }

func (s single) Entries(context.Context) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) { yield(s.e, nil) }
}

// TimerKind says what a [Timer] does when it is due.
type TimerKind string

const (
	// TimerWake moves a run parked at a delay or at a signal wait with a
	// timeout past its node (lifecycle.Store.AdvanceDue).
	TimerWake TimerKind = "wake"
	// TimerRetry announces a retried task whose backoff ends: its entry is
	// put again so that waiting workers hear of it.
	TimerRetry TimerKind = "retry"
	// TimerSignal moves a run parked at a signal wait whose event has
	// arrived past its node, at once (lifecycle.Store.AdvanceSignaled).
	TimerSignal TimerKind = "signal"
	// TimerControl applies a pending cancel or pause to a run in progress
	// (lifecycle.Store.CheckControlSignals), at once: such a run is never
	// found for a worker (Of), so without it the request would wait for a
	// caller. A task whose claim's lease is live is left to its worker
	// until the claim ends.
	TimerControl TimerKind = "control"
	// TimerResume announces a run parked at a fork with a wake time: which
	// of its branches moves on is its runtime's to say, so no store
	// operation can move it; when due, the timers announce it
	// (jetstream's RunnableIndex.ResumeSubject) and [FindResumable] lists
	// it, for the runtime to resume.
	TimerResume TimerKind = "resume"
)

// Timer is a run that needs something done at a time without any caller:
// what durable timers keep (one per instance).
type Timer struct {
	Instance string
	Run      ulid.ULID
	Kind     TimerKind
	At       time.Time
	Seq      uint64
}

// TimerOf derives the instance's timer from its projection, as of now: a
// run in progress with a cancel or pause pending (TimerControl, due at
// once); a run in progress parked at a delay, or at a signal wait with a timeout
// and no buffered event for its signal (TimerWake, at the node's wake
// time); a run parked at a fork with a wake time (TimerResume, at it);
// a run parked at a signal wait with an event of its signal
// buffered (TimerSignal, due at the event's arrival: at once); or a
// runnable task backing off until a time after now (TimerRetry). ok is
// false when it has none.
func TimerOf(st *projection.State, now time.Time) (Timer, bool) {
	if !st.Exists || st.Snapshot == nil || st.Snapshot.State.Kind != workflow.InProgress {
		return Timer{}, false
	}
	pos := st.Snapshot.State.Position
	if len(st.Signals) > 0 {
		return Timer{Instance: st.Instance, Run: st.Run, Kind: TimerControl, At: st.LastTime, Seq: st.LastSeq}, true
	}
	if name, ok := lifecycle.Signaled(st); ok {
		return Timer{Instance: st.Instance, Run: st.Run, Kind: TimerSignal, At: st.Buffered[name][0].SentAt, Seq: st.LastSeq}, true
	}
	switch pos.Kind {
	case workflow.AtDelay, workflow.AtSignal, workflow.AtFork:
		if pos.WakeAt == nil {
			return Timer{}, false
		}
		kind := TimerWake
		if pos.Kind == workflow.AtFork {
			kind = TimerResume
		}
		return Timer{Instance: st.Instance, Run: st.Run, Kind: kind, At: *pos.WakeAt, Seq: st.LastSeq}, true
	}
	if e, ok := Of(st); ok && now.Before(e.RetryAt) {
		return Timer{Instance: st.Instance, Run: st.Run, Kind: TimerRetry, At: e.RetryAt, Seq: st.LastSeq}, true
	}
	return Timer{}, false
}
