package dispatch

import (
	"iter"
	"time"

	"github.com/google/btree"
)

// RankedSet holds entries, one per instance, in rank order for one aging
// interval ([CompareRank]): what an [OrderedIndex] keeps (jetstream's
// LiveIndex, [MemIndex]). Make one with [NewRankedSet]. It is not safe for
// concurrent use: its owner locks around Put, Delete and Snapshot, and a
// snapshot is then read without the lock.
type RankedSet struct {
	aging time.Duration
	byID  map[string]*Entry
	order *btree.BTreeG[*Entry]
}

// NewRankedSet returns an empty set kept in rank order for aging, as
// [Options.Aging] clamps it (zero: [DefaultAgingInterval]).
func NewRankedSet(aging time.Duration) *RankedSet {
	aging = Options{AgingInterval: aging}.Aging()
	return &RankedSet{aging: aging, byID: make(map[string]*Entry),
		order: btree.NewG(32, func(a, b *Entry) bool { return CompareRank(*a, *b, aging) < 0 })}
}

// Aging returns the aging interval the set's order is for.
func (r *RankedSet) Aging() time.Duration { return r.aging }

// Put adds e, or replaces the instance's entry with it.
func (r *RankedSet) Put(e Entry) {
	r.Delete(e.Instance)
	r.byID[e.Instance] = &e
	r.order.ReplaceOrInsert(&e)
}

// Delete removes the instance's entry, if any.
func (r *RankedSet) Delete(instance string) {
	if old, ok := r.byID[instance]; ok {
		r.order.Delete(old)
		delete(r.byID, instance)
	}
}

// Get returns the instance's entry, if any.
func (r *RankedSet) Get(instance string) (Entry, bool) {
	if e, ok := r.byID[instance]; ok {
		return *e, true
	}
	return Entry{}, false
}

// Len returns the number of entries.
func (r *RankedSet) Len() int { return len(r.byID) }

// Snapshot returns the entries as they are now, in rank order: a copy
// made in constant time (the set copies what it changes afterwards), that
// may be read while the set changes.
func (r *RankedSet) Snapshot() iter.Seq2[Entry, error] {
	t := r.order.Clone()
	return func(yield func(Entry, error) bool) {
		t.Ascend(func(e *Entry) bool { return yield(*e, nil) })
	}
}

var _ OrderedIndex = (*MemIndex)(nil)
