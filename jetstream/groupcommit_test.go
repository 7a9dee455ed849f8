package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/lifecycle"
)

// groupMsg builds the message Append would publish for instance with
// expect, for tests that drive the committer directly.
func groupMsg(s *Log, instance, id string, expect uint64) *nats.Msg {
	p := s.part(instance)
	h := nats.Header{}
	h[natsjs.MsgIDHeader] = []string{id}
	h[natsjs.ExpectedStreamHeader] = []string{p.name}
	h[natsjs.ExpectedLastSubjSeqHeader] = []string{fmt.Sprint(expect)}
	return &nats.Msg{Subject: s.SubjectFor(instance), Header: h, Data: []byte(id)}
}

// TestGroupCommitBatch: a batch lands whole, each member acknowledged
// with its own sequence; a batch with one conflicting member is refused
// by the server and published again one by one: that member gets the
// wrong-sequence answer, every other lands.
func TestGroupCommitBatch(t *testing.T) {
	s, _, _ := newStore(t, Config{GroupCommit: 1})
	c := s.parts[0].commit
	if c == nil {
		t.Fatal("no committer on a stream created with GroupCommit")
	}
	ctx := t.Context()
	queue := func(msgs ...*nats.Msg) []*queued {
		var qs []*queued
		for _, m := range msgs {
			qs = append(qs, &queued{ctx: ctx, m: m, res: make(chan pubResult, 1)})
		}
		return qs
	}

	// A whole batch.
	qs := queue(groupMsg(s, "a", "a1", 0), groupMsg(s, "b", "b1", 0), groupMsg(s, "c", "c1", 0))
	c.send(qs)
	seqs := map[string]uint64{}
	for i, q := range qs {
		r := <-q.res
		if r.err != nil {
			t.Fatalf("member %d: %v", i, r.err)
		}
		seqs[string(q.m.Data)] = r.ack.Seq
	}
	if c.batches.Load() != 1 || c.fallbacks.Load() != 0 {
		t.Fatalf("batches %d, fallbacks %d: want one batch", c.batches.Load(), c.fallbacks.Load())
	}
	for id, seq := range seqs {
		inst := id[:1]
		m, ok, err := s.LastMessage(ctx, inst)
		if err != nil || !ok || m.Seq != seq || m.MsgID != id {
			t.Fatalf("%s: last message seq %d id %q (%v), want seq %d id %q", inst, m.Seq, m.MsgID, err, seq, id)
		}
		if m.AfterSeq != 0 || !m.AfterKnown {
			t.Errorf("%s: the batched message does not record its expectation", inst)
		}
	}

	// One member expects a stale sequence.
	qs = queue(groupMsg(s, "a", "a2", seqs["a1"]), groupMsg(s, "b", "b2", 0 /* stale */), groupMsg(s, "c", "c2", seqs["c1"]), groupMsg(s, "d", "d1", 0))
	c.send(qs)
	if c.fallbacks.Load() != 1 {
		t.Fatalf("fallbacks %d, want 1", c.fallbacks.Load())
	}
	for _, q := range qs {
		r := <-q.res
		id := string(q.m.Data)
		switch {
		case id == "b2":
			if _, ok := wrongSequence(r.err); !ok {
				t.Errorf("the conflicting member: %v, want a wrong-sequence error", r.err)
			}
		case r.err != nil:
			t.Errorf("member %s: %v, want it stored", id, r.err)
		default:
			if m, ok, _ := s.LastMessage(ctx, id[:1]); !ok || m.MsgID != id || m.Seq != r.ack.Seq {
				t.Errorf("member %s: acknowledged seq %d, last message %q at %d", id, r.ack.Seq, m.MsgID, m.Seq)
			}
		}
	}
	if m, _, _ := s.LastMessage(ctx, "b"); m.MsgID != "b1" {
		t.Errorf("b's last message is %q, want b1: the conflicting member was stored", m.MsgID)
	}
}

// TestGroupCommitConcurrent: many writers through Append with the group
// commit on: the appends queued behind a publish in flight go in batches,
// and every acknowledged append is stored at the sequence it was given;
// then instances written twice at once: one of each pair wins, the other
// is refused, whatever batch they share.
func TestGroupCommitConcurrent(t *testing.T) {
	for _, k := range []int{1, 2} {
		t.Run(fmt.Sprintf("partitions=%d", k), func(t *testing.T) {
			s, _, _ := newStore(t, Config{GroupCommit: 1, Partitions: k})
			ctx := t.Context()
			// The first plain publish waits until 32 appends are queued
			// behind it or gone in batches (the first of the other
			// partition waits with it), so that batches form whatever the
			// scheduling; batch commits pass.
			behind := func() int64 {
				var n int64
				for _, p := range s.parts {
					p.commit.mu.Lock()
					n += int64(len(p.commit.queue))
					p.commit.mu.Unlock()
					n += p.commit.batched.Load()
				}
				return n
			}
			var gate sync.Once
			req := s.request
			s.request = func(ctx context.Context, m *nats.Msg) (*nats.Msg, error) {
				if m.Header.Get(batchIDHeader) == "" {
					gate.Do(func() {
						for behind() < 32 && ctx.Err() == nil {
							time.Sleep(time.Millisecond)
						}
					})
				}
				return req(ctx, m)
			}
			type result struct {
				instance, id string
				seq          uint64
				err          error
			}
			appendAll := func(instances []string) []result {
				results := make([]result, len(instances))
				var wg sync.WaitGroup
				for w, inst := range instances {
					wg.Go(func() {
						id := fmt.Sprintf("w%d-%s", w, inst)
						seq, err := s.Append(ctx, inst, testMsg(id, id), 0)
						results[w] = result{inst, id, seq, err}
					})
				}
				wg.Wait()
				return results
			}
			check := func(results []result) map[string]result {
				won := map[string]result{}
				for _, r := range results {
					if r.err != nil {
						if !errors.Is(r.err, lifecycle.ErrWrongSequence) {
							t.Errorf("%s by %s: %v", r.instance, r.id, r.err)
						}
						continue
					}
					if prev, ok := won[r.instance]; ok {
						t.Fatalf("%s: both %s and %s acknowledged as its first message", r.instance, prev.id, r.id)
					}
					won[r.instance] = r
				}
				for inst, r := range won {
					got := collect(t, s.Read(ctx, inst, 0))
					if len(got) != 1 || got[0].MsgID != r.id || got[0].Seq != r.seq {
						t.Fatalf("%s: history %v, want only %s at %d", inst, got, r.id, r.seq)
					}
				}
				return won
			}

			var distinct []string
			for i := range 56 {
				distinct = append(distinct, fmt.Sprintf("inst-%d", i))
			}
			if won := check(appendAll(distinct)); len(won) != len(distinct) {
				t.Fatalf("%d of %d distinct instances written", len(won), len(distinct))
			}
			var batched, fallbacks int64
			for _, p := range s.parts {
				batched += p.commit.batched.Load()
				fallbacks += p.commit.fallbacks.Load()
			}
			t.Logf("%d of %d appends acknowledged by a batch, %d batches published again one by one", batched, len(distinct), fallbacks)
			if batched < 32 || fallbacks != 0 {
				t.Errorf("%d appends batched, %d fallbacks: want at least the 32 queued behind the first publish, in batches that land", batched, fallbacks)
			}

			var contended []string
			for i := range 16 {
				contended = append(contended, fmt.Sprintf("pair-%d", i/2))
			}
			if won := check(appendAll(contended)); len(won) != 8 {
				t.Fatalf("%d of 8 contended instances written", len(won))
			}
		})
	}
}

// TestGroupCommitOffOnOldStream: a stream made without atomic publishes
// keeps the group commit off, and appends work.
func TestGroupCommitOffOnOldStream(t *testing.T) {
	s, _, nc := newStore(t, Config{})
	g, err := Open(t.Context(), nc, Config{GroupCommit: 4, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if g.parts[0].commit != nil {
		t.Fatal("a committer on a stream without atomic publishes")
	}
	mustAppend(t, g, "x", testMsg("x1", "one"), 0)
	if n := streamMsgs(t, s); n != 1 {
		t.Fatalf("%d messages", n)
	}
	if _, err := Open(t.Context(), nc, Config{GroupCommit: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("GroupCommit -1: %v", err)
	}
}

// TestGroupCommitCancelledWhileQueued: an append whose caller gives up
// while it waits in the queue is not sent.
func TestGroupCommitCancelledWhileQueued(t *testing.T) {
	s, _, _ := newStore(t, Config{GroupCommit: 1})
	c := s.parts[0].commit
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	q := &queued{ctx: ctx, m: groupMsg(s, "gone", "g1", 0), res: make(chan pubResult, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, q)
	c.flushing = true
	c.mu.Unlock()
	c.flush()
	if r := <-q.res; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled queued append: %v", r.err)
	}
	time.Sleep(10 * time.Millisecond)
	if _, ok, _ := s.LastMessage(t.Context(), "gone"); ok {
		t.Fatal("a cancelled queued append was stored")
	}
}
