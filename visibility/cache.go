package visibility

import (
	"container/list"
	"sync"

	"github.com/runlog/runlog/audit"
)

// DefaultFoldCache is the number of instance folds an [Index] keeps in
// memory to go on from: an instance changed again while its fold is kept
// costs no read of its history.
const DefaultFoldCache = 10_000

// foldCache is a bounded LRU of folds by instance id.
type foldCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recent; values are *foldEntry
	byID  map[string]*list.Element
}

type foldEntry struct {
	id string
	d  *audit.Describer
}

func newFoldCache(max int) *foldCache {
	return &foldCache{max: max, order: list.New(), byID: map[string]*list.Element{}}
}

func (c *foldCache) get(id string) *audit.Describer {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[id]
	if !ok {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*foldEntry).d
}

func (c *foldCache) put(id string, d *audit.Describer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok {
		el.Value.(*foldEntry).d = d
		c.order.MoveToFront(el)
		return
	}
	c.byID[id] = c.order.PushFront(&foldEntry{id: id, d: d})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byID, last.Value.(*foldEntry).id)
	}
}

func (c *foldCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok {
		c.order.Remove(el)
		delete(c.byID, id)
	}
}

func (c *foldCache) dropAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order.Init()
	clear(c.byID)
}
