// Package memlog is an in-memory [lifecycle.Log]: the same contract as the
// JetStream log, held to the same conformance suite (lifecycle/logtest),
// for unit tests of code built on runlog and for embedding without a
// server. Nothing survives the process.
//
// Sequences are shared by all instances, as in a JetStream stream. A Log is
// safe for concurrent use.
package memlog

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// Log is an in-memory event log. The zero value is not usable; call [New].
type Log struct {
	mu        sync.RWMutex
	now       func() time.Time
	seq       uint64
	instances map[string][]events.Message
	all       []entry           // every message in sequence order
	msgIDs    map[string]uint64 // de-duplication: Msg-Id → sequence
	closed    bool
	created   time.Time

	checkpoints *checkpoints // made by Checkpoints
	leases      *leases      // made by Leases
	catalog     *Log         // made by Catalog
}

type entry struct {
	instance string
	msg      events.Message
}

// New returns an empty log. now stamps stored messages; nil means time.Now.
func New(now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{now: now, instances: make(map[string][]events.Message), msgIDs: make(map[string]uint64), created: time.Now().UTC()}
}

var (
	_ lifecycle.Log    = (*Log)(nil)
	_ lifecycle.Last   = (*Log)(nil)
	_ lifecycle.Lister = (*Log)(nil)
)

// ErrClosed is returned by every operation after [Log.Close].
var ErrClosed = fmt.Errorf("memlog: log closed")

// Close makes further operations fail with [ErrClosed].
func (l *Log) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return nil
}

// Append implements [lifecycle.Log.Append], with JetStream's order of
// checks: the sequence check first, then de-duplication by MsgID. A
// message with a header of [events.ServerHeaders] is refused with
// [events.ErrReservedHeader], as the JetStream log refuses it.
func (l *Log) Append(ctx context.Context, instance string, msg events.Message, expect uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memlog: append %q: %w", instance, err)
	}
	if err := events.CheckHeaders(msg.Header); err != nil {
		return 0, fmt.Errorf("memlog: append %q: %w; nothing was stored", instance, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	msgs := l.instances[instance]
	var last uint64
	if n := len(msgs); n > 0 {
		last = msgs[n-1].Seq
		if msg.MsgID != "" && msgs[n-1].MsgID == msg.MsgID {
			return last, nil // a retry of the last message
		}
	}
	if last != expect {
		return 0, fmt.Errorf("memlog: append %q: %w: last sequence is %d, expected %d", instance, lifecycle.ErrWrongSequence, last, expect)
	}
	if seq, ok := l.msgIDs[msg.MsgID]; ok && msg.MsgID != "" {
		// De-duplication is log-wide, as in a stream: a duplicate of an
		// earlier message of this instance is acknowledged with its
		// sequence; one of another instance is an error.
		if l.all[l.index(seq)].instance != instance {
			return 0, fmt.Errorf("memlog: append %q: Msg-Id %q is already used by message %d of another instance; nothing was stored", instance, msg.MsgID, seq)
		}
		return seq, nil
	}
	l.seq++
	stored := events.Message{Seq: l.seq, Time: l.now(), MsgID: msg.MsgID, Header: cloneHeader(msg.Header), Data: slices.Clone(msg.Data),
		AfterSeq: expect, AfterKnown: true}
	l.instances[instance] = append(msgs, stored)
	l.all = append(l.all, entry{instance: instance, msg: stored})
	if msg.MsgID != "" {
		l.msgIDs[msg.MsgID] = l.seq
	}
	return l.seq, nil
}

// Read implements [lifecycle.Log.Read]. Each range takes a consistent view
// of the messages stored when it starts.
func (l *Log) Read(ctx context.Context, instance string, after uint64) iter.Seq2[events.Message, error] {
	return func(yield func(events.Message, error) bool) {
		l.mu.RLock()
		closed := l.closed
		msgs := l.instances[instance]
		l.mu.RUnlock()
		if closed {
			yield(events.Message{}, ErrClosed)
			return
		}
		i := sort.Search(len(msgs), func(i int) bool { return msgs[i].Seq > after })
		for _, m := range msgs[i:] {
			if err := ctx.Err(); err != nil {
				yield(events.Message{}, err)
				return
			}
			if !yield(copyMsg(m), nil) {
				return
			}
		}
	}
}

// LastMessage implements [lifecycle.Last].
func (l *Log) LastMessage(ctx context.Context, instance string) (events.Message, bool, error) {
	return l.pick(ctx, instance, func(msgs []events.Message) int { return len(msgs) - 1 })
}

// MessageAt implements [lifecycle.Last].
func (l *Log) MessageAt(ctx context.Context, instance string, seq uint64) (events.Message, bool, error) {
	return l.pick(ctx, instance, func(msgs []events.Message) int {
		i := sort.Search(len(msgs), func(i int) bool { return msgs[i].Seq >= seq })
		if i == len(msgs) || msgs[i].Seq != seq {
			return -1
		}
		return i
	})
}

// pick returns a copy of the instance's message at the index which
// chooses (-1: none).
func (l *Log) pick(ctx context.Context, instance string, which func([]events.Message) int) (events.Message, bool, error) {
	if err := ctx.Err(); err != nil {
		return events.Message{}, false, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return events.Message{}, false, ErrClosed
	}
	msgs := l.instances[instance]
	i := which(msgs)
	if i < 0 {
		return events.Message{}, false, nil
	}
	return copyMsg(msgs[i]), true, nil
}

// index returns the position in l.all of the message with sequence seq.
// Called with l.mu held.
func (l *Log) index(seq uint64) int {
	return sort.Search(len(l.all), func(i int) bool { return l.all[i].msg.Seq >= seq })
}

// Instances returns up to limit instance ids greater than after, in
// increasing order (limit <= 0: all). It implements [lifecycle.Lister].
func (l *Log) Instances(ctx context.Context, after string, limit int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return nil, ErrClosed
	}
	ids := slices.Sorted(maps.Keys(l.instances))
	l.mu.RUnlock()
	i := sort.SearchStrings(ids, after)
	if i < len(ids) && ids[i] == after {
		i++
	}
	ids = ids[i:]
	if limit > 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	return ids, nil
}

// AllInstances yields the instance ids greater than after, in increasing
// order, as they were when it starts (audit.Scanner's one-pass listing).
func (l *Log) AllInstances(ctx context.Context, after string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		ids, err := l.Instances(ctx, after, 0)
		if err != nil {
			yield("", err)
			return
		}
		for _, id := range ids {
			if err := ctx.Err(); err != nil {
				yield("", err)
				return
			}
			if !yield(id, nil) {
				return
			}
		}
	}
}

// InstanceCounts returns the number of messages of every instance.
func (l *Log) InstanceCounts(ctx context.Context) (map[string]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	counts := make(map[string]uint64, len(l.instances))
	for id, msgs := range l.instances {
		counts[id] = uint64(len(msgs))
	}
	return counts, nil
}

// Scan yields every message stored when it starts with a sequence greater
// than after, with its instance, in sequence order.
func (l *Log) Scan(ctx context.Context, after uint64) iter.Seq2[Scanned, error] {
	return func(yield func(Scanned, error) bool) {
		l.mu.RLock()
		all := l.all
		l.mu.RUnlock()
		i := sort.Search(len(all), func(i int) bool { return all[i].msg.Seq > after })
		for _, e := range all[i:] {
			if err := ctx.Err(); err != nil {
				yield(Scanned{}, err)
				return
			}
			if !yield(Scanned{Instance: e.instance, Message: copyMsg(e.msg)}, nil) {
				return
			}
		}
	}
}

// Scanned is a message with the instance it was stored for.
type Scanned = events.Scanned

func copyMsg(m events.Message) events.Message {
	m.Header = cloneHeader(m.Header)
	m.Data = slices.Clone(m.Data)
	return m
}

func cloneHeader(h map[string][]string) map[string][]string {
	if h == nil {
		return nil
	}
	c := make(map[string][]string, len(h))
	for k, v := range h {
		c[k] = slices.Clone(v)
	}
	return c
}

// LogInfo describes the log as a whole: name "memlog", the time New was
// called, and its sequences and message count.
func (l *Log) LogInfo(ctx context.Context) (events.LogInfo, error) {
	if err := ctx.Err(); err != nil {
		return events.LogInfo{}, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return events.LogInfo{}, ErrClosed
	}
	return l.infoLocked(), nil
}

func (l *Log) infoLocked() events.LogInfo {
	info := events.LogInfo{Name: "memlog", Created: l.created, Messages: uint64(len(l.all))}
	if n := len(l.all); n > 0 {
		info.FirstSeq, info.LastSeq = l.all[0].msg.Seq, l.all[n-1].msg.Seq
	}
	return info
}

// Heads returns the log's description and the head of every instance, in
// no particular order, as of one moment (the log is locked while they
// are read).
func (l *Log) Heads(ctx context.Context) (events.LogInfo, []events.InstanceHead, error) {
	if err := ctx.Err(); err != nil {
		return events.LogInfo{}, nil, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return events.LogInfo{}, nil, ErrClosed
	}
	heads := make([]events.InstanceHead, 0, len(l.instances))
	for id, msgs := range l.instances {
		last := msgs[len(msgs)-1]
		heads = append(heads, events.InstanceHead{Instance: id, Messages: uint64(len(msgs)), Seq: last.Seq, Time: last.Time, Hash: workflow.Sha256(last.Data)})
	}
	return l.infoLocked(), heads, nil
}

// Checkpoints returns the log's projection checkpoint store
// ([lifecycle.Checkpoints]), in memory and shared by every store on the
// log, as a JetStream log's KV bucket is.
func (l *Log) Checkpoints() lifecycle.Checkpoints {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.checkpoints == nil {
		l.checkpoints = &checkpoints{m: make(map[string][]byte)}
	}
	return l.checkpoints
}

type checkpoints struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (c *checkpoints) LoadCheckpoint(ctx context.Context, instance string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[instance]
	return slices.Clone(b), ok, nil
}

func (c *checkpoints) SaveCheckpoint(ctx context.Context, instance string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[instance] = slices.Clone(data)
	return nil
}

// Partitions returns 1: the in-memory log is one partition (the contract
// partitioned readers such as the visibility index read through).
func (l *Log) Partitions() int { return 1 }

// PartitionInfo is [Log.LogInfo] of partition 0, the only one.
func (l *Log) PartitionInfo(ctx context.Context, partition int) (events.LogInfo, error) {
	if partition != 0 {
		return events.LogInfo{}, fmt.Errorf("memlog: partition %d does not exist: the log has one (0)", partition)
	}
	return l.LogInfo(ctx)
}

// ScanPartition is [Log.Scan] of partition 0, the only one.
func (l *Log) ScanPartition(ctx context.Context, partition int, after uint64) iter.Seq2[Scanned, error] {
	if partition != 0 {
		return func(yield func(Scanned, error) bool) {
			yield(Scanned{}, fmt.Errorf("memlog: partition %d does not exist: the log has one (0)", partition))
		}
	}
	return l.Scan(ctx, after)
}
