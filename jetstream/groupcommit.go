package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// The headers of an atomic batch publish (server 2.12+, ADR-50).
const (
	batchIDHeader     = "Nats-Batch-Id"
	batchSeqHeader    = "Nats-Batch-Sequence"
	batchCommitHeader = "Nats-Batch-Commit"
)

// maxGroupBatch is the most appends one atomic batch carries (the
// server's default limit is 1,000 messages per batch).
const maxGroupBatch = 256

// committer gathers the appends of one partition into atomic batches when
// many are queued (Config.GroupCommit): a batch is stored with one fsync
// on a file stream that syncs every write, where each plain publish pays
// its own. Each append keeps its own Msg-Id and expected-sequence check;
// one failing check fails the whole batch, so a failed batch is published
// again member by member, each getting the verdict a plain publish would
// have had. An append is acknowledged only from the server's answer to the
// batch's commit (all of it stored) or to its own publish.
type committer struct {
	s   *Log
	p   *partition
	min int // plain publishes in flight from which appends queue

	mu       sync.Mutex
	inflight int // plain publishes in flight
	queue    []*queued
	flushing bool // a flush goroutine is draining the queue

	// Figures, for tests and debug logs.
	batches   atomic.Int64 // batches committed
	batched   atomic.Int64 // appends acknowledged by a batch
	fallbacks atomic.Int64 // batches refused and published one by one
}

// queued is an append waiting for a batch.
type queued struct {
	ctx context.Context
	m   *nats.Msg
	res chan pubResult // buffered: the flusher never blocks on it
}

type pubResult struct {
	ack pubAck
	err error
}

// publish sends m (a message of the committer's partition) and returns the
// server's answer as [Log.publish] does: directly while fewer than min
// publishes are in flight, else queued for the next batch.
func (c *committer) publish(ctx context.Context, m *nats.Msg) (pubAck, error) {
	c.mu.Lock()
	if c.inflight < c.min && len(c.queue) == 0 {
		c.inflight++
		c.mu.Unlock()
		ack, err := c.s.publish(ctx, m)
		c.mu.Lock()
		c.inflight--
		c.mu.Unlock()
		return ack, err
	}
	q := &queued{ctx: ctx, m: m, res: make(chan pubResult, 1)}
	c.queue = append(c.queue, q)
	if !c.flushing {
		c.flushing = true
		go c.flush()
	}
	c.mu.Unlock()
	select {
	case r := <-q.res:
		return r.ack, r.err
	case <-ctx.Done():
		// Taken by a batch or not, the outcome is unknown to the caller,
		// as with a plain publish that timed out: Append probes.
		return pubAck{}, ctx.Err()
	}
}

// flush drains the queue, a batch at a time, until it is empty.
func (c *committer) flush() {
	for {
		batch := c.take()
		if len(batch) == 0 {
			return
		}
		c.send(batch)
	}
}

// take removes the next batch from the queue: up to maxGroupBatch appends
// whose callers still wait, at most one per subject (a batch may write a
// subject once: a second check on it would be refused with 10164); the
// others stay queued in order. It ends the flush (flushing false) when the
// queue is empty.
func (c *committer) take() []*queued {
	c.mu.Lock()
	defer c.mu.Unlock()
	var batch, rest []*queued
	subjects := make(map[string]bool, len(c.queue))
	for _, q := range c.queue {
		switch {
		case q.ctx.Err() != nil:
			q.res <- pubResult{err: q.ctx.Err()} // never sent
		case len(batch) < maxGroupBatch && !subjects[q.m.Subject]:
			subjects[q.m.Subject] = true
			batch = append(batch, q)
		default:
			rest = append(rest, q)
		}
	}
	c.queue = rest
	if len(batch) == 0 {
		c.flushing = false
	}
	return batch
}

// send publishes batch: one plain publish for a single append, else one
// atomic batch, and if the batch is refused or its outcome is unknown,
// each member again as a plain publish (in parallel).
func (c *committer) send(batch []*queued) {
	if len(batch) == 1 {
		ack, err := c.s.publish(batch[0].ctx, batch[0].m)
		batch[0].res <- pubResult{ack, err}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), appendAttemptWait)
	last, err := c.s.publishBatch(ctx, c.p, batch)
	cancel()
	if err == nil {
		first := last - uint64(len(batch)) + 1
		for i, q := range batch {
			q.res <- pubResult{ack: pubAck{Stream: c.p.name, Seq: first + uint64(i)}}
		}
		c.batches.Add(1)
		c.batched.Add(int64(len(batch)))
		return
	}
	// One failing check (or a duplicate Msg-Id, or a lost answer) fails
	// the whole batch without saying which member: each member gets its
	// own verdict. A batch that did land makes each publish fail its
	// sequence check, and Append then finds its Msg-Id stored.
	c.fallbacks.Add(1)
	lazyLog{c.s.log, ""}.Debug("jetstream: group commit refused, publishing one by one", slog.Int("appends", len(batch)), slog.Any(logKeyErr, err))
	var wg sync.WaitGroup
	for _, q := range batch {
		wg.Go(func() {
			ack, err := c.s.publish(q.ctx, q.m)
			q.res <- pubResult{ack, err}
		})
	}
	wg.Wait()
}

// batchAck is the server's answer to a batch's commit.
type batchAck struct {
	Error *natsjs.APIError `json:"error"`
	Seq   uint64           `json:"seq"`
	Batch string           `json:"batch"`
	Count int              `json:"count"`
}

// publishBatch sends batch as one atomic batch on partition p and returns
// the sequence of its last message: every message but the last is
// published without a reply, the last commits and is answered for all.
// The members' messages are copied (the batch headers are not theirs).
func (s *Log) publishBatch(ctx context.Context, p *partition, batch []*queued) (uint64, error) {
	id := nuid.Next()
	for i, q := range batch {
		h := make(nats.Header, len(q.m.Header)+3)
		for k, v := range q.m.Header {
			h[k] = v
		}
		h[batchIDHeader] = []string{id}
		h[batchSeqHeader] = []string{strconv.Itoa(i + 1)}
		m := &nats.Msg{Subject: q.m.Subject, Header: h, Data: q.m.Data}
		if i < len(batch)-1 {
			if err := s.nc.PublishMsg(m); err != nil {
				return 0, err
			}
			continue
		}
		h[batchCommitHeader] = []string{"1"}
		resp, err := s.request(ctx, m)
		if err != nil {
			return 0, err
		}
		var a batchAck
		if err := json.Unmarshal(resp.Data, &a); err != nil {
			return 0, fmt.Errorf("%w: %q", natsjs.ErrInvalidJSAck, resp.Data)
		}
		if a.Error != nil {
			return 0, a.Error
		}
		if a.Batch != id || a.Count != len(batch) || a.Seq < uint64(len(batch)) {
			return 0, fmt.Errorf("%w: batch answer %q for batch %s of %d", natsjs.ErrInvalidJSAck, resp.Data, id, len(batch))
		}
		return a.Seq, nil
	}
	return 0, nil
}

// GroupCommitStats counts what the group commit did since the store was
// opened, over all partitions ([Config.GroupCommit]).
type GroupCommitStats struct {
	Batches   int64 // atomic batches committed
	Batched   int64 // appends acknowledged by one of them
	Fallbacks int64 // batches the server refused (or whose answer was lost), published again one append at a time
}

// GroupCommitStats returns the store's group commit figures (all zero
// when it is off).
func (s *Log) GroupCommitStats() GroupCommitStats {
	var st GroupCommitStats
	for _, p := range s.all {
		if c := p.commit; c != nil {
			st.Batches += c.batches.Load()
			st.Batched += c.batched.Load()
			st.Fallbacks += c.fallbacks.Load()
		}
	}
	return st
}
