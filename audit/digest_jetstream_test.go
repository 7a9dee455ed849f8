package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// Digests on JetStream: made from the subject totals and the last
// messages, equal to one made from a full read, still valid as the
// stream grows, and consistent while writers write.
func TestJetStreamDigest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server")
	}
	ctx := t.Context()
	nc := natstest.Connect(t, natstest.Start(t))
	src, err := jetstream.Open(ctx, nc, jetstream.Config{ReadBatch: 7})
	must(t, err)
	buildHistories(t, src)
	kp := newKey(t)
	d := digestOf(t, src, kp)
	info, err := src.LogInfo(ctx)
	must(t, err)
	if d.Stream != "RUNLOG" || !d.StreamCreated.Equal(info.Created) || d.LastSeq != info.LastSeq || d.Instances != 3 {
		t.Fatalf("digest %+v of %+v", d, info)
	}
	// The same leaves as a full read gives.
	for _, l := range d.Leaves {
		msgs := read(t, src, l.Instance)
		last := msgs[len(msgs)-1]
		if l.Commits != uint64(len(msgs)) || l.Seq != last.Seq || l.Head != workflow.Sha256(last.Data) {
			t.Fatalf("leaf %+v, history has %d messages, last %d", l, len(msgs), last.Seq)
		}
	}
	if ps := digestProblems(t, src, d); len(ps) != 0 {
		t.Fatalf("%v", ps)
	}

	// Writers write while digests are made: every digest is of one
	// sequence, so each verifies.
	store, err := lifecycle.New(src, lifecycle.Config{})
	must(t, err)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i%20)
				_, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}, Policy: workflow.TerminateExisting})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var ds []*Digest
	for range 5 {
		ds = append(ds, digestOf(t, src, kp))
	}
	close(stop)
	wg.Wait()
	if ps := digestProblems(t, src, ds...); len(ps) != 0 {
		t.Fatalf("digests made while writing: %v", ps)
	}
}

// A block file cut in half (the damaged store): verify alone
// finds fewer instances and says nothing of the loss, the open warns, and
// the digest made before names every instance that lost history.
func TestJetStreamDigestTruncatedBlock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server")
	}
	ctx := t.Context()
	dir := t.TempDir()
	src, err := jetstream.OpenEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{})
	must(t, err)
	store, err := lifecycle.New(src, lifecycle.Config{})
	must(t, err)
	for i := range 10 {
		id := fmt.Sprintf("order-%d", i)
		p, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: def, Input: []byte(strings.Repeat("x", 300)), FirstTask: workflow.TaskHint{ID: taskA}})
		must(t, err)
		snap, rev := p.Snapshot, p.Revision
		snap.MarkTaskCompleted(taskA, []byte(strings.Repeat("y", 300)), snap.UpdatedAt)
		snap.MarkCompleted([]byte("done"), snap.UpdatedAt)
		_, err = store.SaveSnapshot(ctx, snap, rev)
		must(t, err)
	}
	kp := newKey(t)
	d := digestOf(t, src, kp)
	must(t, src.Close())

	blk := dir + "/jetstream/$G/streams/RUNLOG/msgs/1.blk"
	fi, err := os.Stat(blk)
	must(t, err)
	must(t, os.Truncate(blk, fi.Size()/2))

	src, err = jetstream.OpenEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{ReadOnly: true})
	must(t, err)
	defer src.Close()
	rep := verify(t, src, VerifyOptions{})
	lost := 0
	for _, l := range d.Leaves {
		if n := len(read(t, src, l.Instance)); uint64(n) < l.Commits {
			lost++
		}
	}
	if lost == 0 {
		t.Fatal("the cut lost no history")
	}
	for _, p := range rep.Problems {
		if p.Kind != KindStream {
			t.Logf("verify alone also found: %s", p)
		}
	}
	rep = verify(t, src, VerifyOptions{Digests: []*Digest{d}})
	named := map[string]bool{}
	for _, p := range rep.Problems {
		if p.Kind == KindDigest && p.Instance != "" {
			named[p.Instance] = true
		}
	}
	if len(named) < lost {
		t.Fatalf("the digest names %d instances, %d lost history: %v", len(named), lost, rep.Problems)
	}
	t.Logf("%d of %d instances lost history; verify with the digest names %d", lost, len(d.Leaves), len(named))
}

// A digest names the stream it was made of: a stream deleted and made
// again under the same name is another log.
func TestJetStreamDigestRecreatedStream(t *testing.T) {
	ctx := t.Context()
	src, nc := jetstreamSource(t)
	buildHistories(t, src)
	d := digestOf(t, src, newKey(t))
	js, err := natsjs.New(nc)
	must(t, err)
	must(t, js.DeleteStream(ctx, "RUNLOG"))
	src, err = jetstream.Open(ctx, nc, jetstream.Config{})
	must(t, err)
	buildHistories(t, src)
	ps := digestProblems(t, src, d)
	if len(ps) != 1 || !strings.Contains(ps[0].Detail, "another log") {
		t.Fatalf("problems %v, want one saying it is another log", ps)
	}
}

// The digester publishes compact digests to the digest stream, which
// denies deletes; what it holds verifies the log.
func TestJetStreamDigestStream(t *testing.T) {
	ctx := t.Context()
	src, nc := jetstreamSource(t)
	buildHistories(t, src)
	kp := newKey(t)
	d := digestOf(t, src, kp)
	pub := PublishCompact(src)
	must(t, pub(ctx, d))
	must(t, pub(ctx, d)) // the same digest again: stored once
	js, err := natsjs.New(nc)
	must(t, err)
	st, err := js.Stream(ctx, src.DigestStream())
	must(t, err)
	info := st.CachedInfo()
	if !info.Config.DenyDelete || !info.Config.DenyPurge || info.State.Msgs != 1 {
		t.Fatalf("digest stream %+v, %d messages", info.Config, info.State.Msgs)
	}
	m, err := st.GetLastMsgForSubject(ctx, src.DigestSubject()+".>")
	must(t, err)
	back, err := ParseDigest(bytes.NewReader(m.Data), pubOf(t, kp))
	must(t, err)
	if !back.IsCompact() || back.Root != d.Root {
		t.Fatalf("published %+v", back)
	}
	if ps := digestProblems(t, src, back); len(ps) != 0 {
		t.Fatalf("%v", ps)
	}
}

// jetstreamSource opens a store on a fresh embedded server, skipping the
// test in -short mode.
func jetstreamSource(t *testing.T) (*jetstream.Log, *nats.Conn) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a NATS server")
	}
	nc := natstest.Connect(t, natstest.Start(t))
	src, err := jetstream.Open(t.Context(), nc, jetstream.Config{})
	must(t, err)
	return src, nc
}

// A partitioned store has a digest per partition, made and verified
// through the partition's view: together they list every instance once,
// each verifies as the store grows, and one verified against another
// partition is refused.
func TestJetStreamPartitionDigests(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server")
	}
	ctx := t.Context()
	nc := natstest.Connect(t, natstest.Start(t))
	src, err := jetstream.Open(ctx, nc, jetstream.Config{Partitions: 3})
	must(t, err)
	store, err := lifecycle.New(src, lifecycle.Config{})
	must(t, err)
	for i := range 24 {
		_, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: fmt.Sprintf("inst-%d", i), DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}})
		must(t, err)
	}
	if _, err := MakeDigest(ctx, src, DigestOptions{}); err == nil || !strings.Contains(err.Error(), "Log.Partition") {
		t.Fatalf("a digest of the whole partitioned store: %v, want an error pointing to Log.Partition", err)
	}
	kp := newKey(t)
	views := make([]*jetstream.Log, 3)
	ds := make([]*Digest, 3)
	seen := map[string]bool{}
	for p := range 3 {
		views[p], err = src.Partition(p)
		must(t, err)
		ds[p] = digestOf(t, views[p], kp)
		if want := jetstream.PartitionStream("RUNLOG", p, 3); ds[p].Stream != want {
			t.Fatalf("digest of partition %d names stream %s, want %s", p, ds[p].Stream, want)
		}
		for _, l := range ds[p].Leaves {
			if seen[l.Instance] || jetstream.PartitionOf(l.Instance, 3) != p {
				t.Fatalf("instance %s in the digest of partition %d (seen before: %t)", l.Instance, p, seen[l.Instance])
			}
			seen[l.Instance] = true
		}
	}
	if len(seen) != 24 {
		t.Fatalf("the digests list %d instances, want 24", len(seen))
	}
	// The store grows: each digest still holds.
	for i := range 24 {
		_, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: fmt.Sprintf("inst-%d", i), DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}, Policy: workflow.TerminateExisting})
		must(t, err)
	}
	for p := range 3 {
		if ps := digestProblems(t, views[p], ds[p]); len(ps) != 0 {
			t.Fatalf("partition %d: %v", p, ps)
		}
	}
	// Partition 0's digest is not partition 1's log.
	if ps := digestProblems(t, views[1], ds[0]); len(ps) == 0 {
		t.Fatal("the digest of partition 0 verified against partition 1")
	} else {
		t.Logf("digest of partition 0 against partition 1: %s", ps[0])
	}
}

// A Digester per partition view publishes each partition's compact
// digest to the one digest stream, told apart by their stream.
func TestJetStreamPartitionDigesters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	nc := natstest.Connect(t, natstest.Start(t))
	src, err := jetstream.Open(ctx, nc, jetstream.Config{Partitions: 2})
	must(t, err)
	store, err := lifecycle.New(src, lifecycle.Config{})
	must(t, err)
	for i := range 6 {
		_, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: fmt.Sprintf("d-%d", i), DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}})
		must(t, err)
	}
	kp := newKey(t)
	got := make(chan *Digest, 10)
	var wg sync.WaitGroup
	for p := range 2 {
		view, err := src.Partition(p)
		must(t, err)
		publish := PublishCompact(view)
		g := &Digester{Source: view, Key: kp, Interval: time.Second, Publish: func(ctx context.Context, d *Digest) error {
			err := publish(ctx, d)
			if err == nil {
				got <- d
			}
			return err
		}}
		wg.Go(func() { _ = g.Run(ctx) })
	}
	streams := map[string]int{}
	for range 2 {
		d := <-got
		streams[d.Stream] += d.Instances
	}
	cancel()
	wg.Wait()
	if len(streams) != 2 || streams["RUNLOG_P0"]+streams["RUNLOG_P1"] != 6 {
		t.Fatalf("digests of %v, want both partitions covering 6 instances", streams)
	}
	js, err := natsjs.New(nc)
	must(t, err)
	ds, err := js.Stream(t.Context(), src.DigestStream())
	must(t, err)
	if n := ds.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("the digest stream holds %d digests, want 2", n)
	}
}
