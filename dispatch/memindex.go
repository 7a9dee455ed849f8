package dispatch

import (
	"context"
	"iter"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
)

// MemIndex is an [OrderedIndex] in memory: one entry per instance with something
// to run. It is derived data: [MemIndex.Rebuild] makes it again from the
// log at any time, and [MemIndex.Update] keeps one instance in step. Safe
// for concurrent use.
type MemIndex struct {
	mu     sync.Mutex
	m      map[string]Entry
	ranked *RankedSet // m in rank order for the default aging interval
	timers map[string]Timer
	// seen is the last sequence put for each instance, runnable or not,
	// so that a late, older projection never undoes a newer one.
	seen map[string]uint64
}

// NewMemIndex returns an empty index.
func NewMemIndex() *MemIndex {
	return &MemIndex{m: make(map[string]Entry), ranked: NewRankedSet(DefaultAgingInterval), timers: make(map[string]Timer), seen: make(map[string]uint64)}
}

// Put records the entry st derives, or removes the instance when it has
// nothing to run. An older projection (a smaller last sequence of the same
// instance) than the one already indexed changes nothing, so that updates
// may come in any order.
func (x *MemIndex) Put(st *projection.State) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if seq, ok := x.seen[st.Instance]; ok && seq > st.LastSeq {
		return
	}
	x.seen[st.Instance] = st.LastSeq
	if e, ok := Of(st); ok {
		x.m[st.Instance] = e
		x.ranked.Put(e)
	} else {
		delete(x.m, st.Instance)
		x.ranked.Delete(st.Instance)
	}
	if t, ok := TimerOf(st, time.Now()); ok {
		x.timers[st.Instance] = t
	} else {
		delete(x.timers, st.Instance)
	}
}

// Update reads the instance's current projection from store and puts it.
func (x *MemIndex) Update(ctx context.Context, store *lifecycle.Store, id string) error {
	st, err := store.Load(ctx, id)
	if err != nil {
		return err
	}
	x.Put(&st)
	return nil
}

// Rebuild makes the index again from the log: every instance store lists,
// read afresh.
func (x *MemIndex) Rebuild(ctx context.Context, store *lifecycle.Store) error {
	fresh, timers, seen := make(map[string]Entry), make(map[string]Timer), make(map[string]uint64)
	now := time.Now()
	for after := ""; ; {
		ids, err := store.ListInstances(ctx, after, 1000)
		if err != nil {
			return err
		}
		for _, id := range ids {
			st, err := store.Load(ctx, id)
			if err != nil {
				return err
			}
			seen[id] = st.LastSeq
			if e, ok := Of(&st); ok {
				fresh[id] = e
			}
			if t, ok := TimerOf(&st, now); ok {
				timers[id] = t
			}
		}
		if len(ids) < 1000 {
			break
		}
		after = ids[len(ids)-1]
	}
	ranked := NewRankedSet(DefaultAgingInterval)
	for _, e := range fresh {
		ranked.Put(e)
	}
	x.mu.Lock()
	x.m, x.ranked, x.timers, x.seen = fresh, ranked, timers, seen
	x.mu.Unlock()
	return nil
}

// Passed implements [OrderedIndex.Passed]: the instance's entry, if it
// was derived from a state older than seq, is dropped, and seq counts as
// the last sequence put (a later Put of an older projection changes
// nothing, a Put of the state at seq or later restores what it derives).
func (x *MemIndex) Passed(instance string, seq uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.seen[instance] >= seq {
		return
	}
	x.seen[instance] = seq
	delete(x.m, instance)
	x.ranked.Delete(instance)
}

// Entries yields the entries in instance order.
func (x *MemIndex) Entries(ctx context.Context) iter.Seq2[Entry, error] {
	x.mu.Lock()
	es := sortedValues(x.m)
	x.mu.Unlock()
	return each(ctx, es)
}

// InRankOrder yields the entries by [CompareRank]; ok is false (and
// nothing is yielded) unless aging is [DefaultAgingInterval], the one
// order the index keeps.
func (x *MemIndex) InRankOrder(ctx context.Context, aging time.Duration) (iter.Seq2[Entry, error], bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if aging != x.ranked.Aging() {
		return func(func(Entry, error) bool) {}, false
	}
	return x.ranked.Snapshot(), true
}

// Timers yields the timers ([TimerOf]) in instance order.
func (x *MemIndex) Timers(ctx context.Context) iter.Seq2[Timer, error] {
	x.mu.Lock()
	ts := sortedValues(x.timers)
	x.mu.Unlock()
	return each(ctx, ts)
}

// sortedValues returns m's values in key order.
func sortedValues[T any](m map[string]T) []T {
	out := make([]T, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

// each yields the items, ending with ctx's error if it ends first.
func each[T any](ctx context.Context, items []T) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for _, it := range items {
			if err := ctx.Err(); err != nil {
				var zero T
				yield(zero, err)
				return
			}
			if !yield(it, nil) {
				return
			}
		}
	}
}

// Len returns the number of entries.
func (x *MemIndex) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.m)
}
