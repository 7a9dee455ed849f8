package dispatch

import (
	"cmp"
	"context"
	"iter"
	"maps"
	"slices"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/lifecycle"
)

// TimerIndex holds the timers of a log ([TimerOf] of every instance):
// jetstream's RunnableIndex, or a [MemIndex].
type TimerIndex interface {
	// Timers yields every timer.
	Timers(ctx context.Context) iter.Seq2[Timer, error]
}

// ResumeReason says why [FindResumable] lists a run.
type ResumeReason string

const (
	// ResumeReady: a wake time passed (a delay, a signal wait's timeout,
	// a fork with a wake time).
	ResumeReady ResumeReason = "ready"
	// ResumeSignalled: a signal wait's event has arrived.
	ResumeSignalled ResumeReason = "signalled"
	// ResumeStale: positioned at a task that no live claim holds and that
	// has not changed for ResumeOptions.StaleAfter.
	ResumeStale ResumeReason = "stale"
)

// Resumable is a run that a runtime resuming its own workflows should
// resume now: Sayiir's find_resumable_instances.
type Resumable struct {
	Instance string
	Run      ulid.ULID
	Reason   ResumeReason
	// Since is when it became resumable: the wake time, the event's
	// arrival, or the task's last change.
	Since time.Time
}

// ResumeOptions bound [FindResumable].
type ResumeOptions struct {
	Now time.Time // zero: time.Now()
	// StaleAfter, when > 0, also lists the runs positioned at a task
	// that no live claim holds and that has not changed for that long.
	StaleAfter time.Duration
	Limit      int // at most this many, the longest resumable first; 0: all
}

// FindResumable returns the runs to resume as of opts.Now, the longest
// resumable first: the ready and the signalled from the timers of
// timers, the stale (with opts.StaleAfter) from the entries of idx. The
// indexes only propose: each candidate is checked against the instance's
// current projection read from store (a stale timer or entry is left
// out, never returned), as [Find] does. It is for runtimes that resume
// workflows themselves (a cron's resumeAll); the durable timers
// (jetstream's RunnableIndex.RunTimers) move delays and signal waits on
// without one.
func FindResumable(ctx context.Context, idx Index, timers TimerIndex, store *lifecycle.Store, leases lifecycle.Leases, opts ResumeOptions) ([]Resumable, error) {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	candidates := map[string]bool{}
	for t, err := range timers.Timers(ctx) {
		if err != nil {
			return nil, err
		}
		if !now.Before(t.At) && t.Kind != TimerRetry {
			candidates[t.Instance] = true
		}
	}
	if opts.StaleAfter > 0 {
		for e, err := range idx.Entries(ctx) {
			if err != nil {
				return nil, err
			}
			if !e.Since.After(now.Add(-opts.StaleAfter)) {
				candidates[e.Instance] = true
			}
		}
	}
	taken := Taken(ctx, leases)
	var out []Resumable
	for _, id := range slices.Sorted(maps.Keys(candidates)) {
		st, err := store.Load(ctx, id)
		if err != nil {
			return nil, err
		}
		if t, ok := TimerOf(&st, now); ok && !now.Before(t.At) {
			switch t.Kind {
			case TimerWake, TimerResume:
				out = append(out, Resumable{Instance: id, Run: st.Run, Reason: ResumeReady, Since: t.At})
				continue
			case TimerSignal:
				out = append(out, Resumable{Instance: id, Run: st.Run, Reason: ResumeSignalled, Since: t.At})
				continue
			}
		}
		if e, ok := Of(&st); ok && opts.StaleAfter > 0 && !e.Since.After(now.Add(-opts.StaleAfter)) && !now.Before(e.RetryAt) &&
			(e.Claim == nil || !taken(e)) {
			out = append(out, Resumable{Instance: id, Run: st.Run, Reason: ResumeStale, Since: e.Since})
		}
	}
	slices.SortStableFunc(out, func(a, b Resumable) int { return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.Instance, b.Instance)) })
	if opts.Limit > 0 && len(out) > opts.Limit {
		out = out[:opts.Limit]
	}
	return out, nil
}
