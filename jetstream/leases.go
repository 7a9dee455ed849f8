package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/lifecycle"
)

// LeaseBucket returns the name of the KV bucket that holds the store's
// claim leases: the log's stream name with "_LEASES" appended.
func (s *Log) LeaseBucket() string { return s.cfg.Stream + "_LEASES" }

// Leases returns the lease store of task claims (lifecycle.Config.Leases):
// a KV bucket ([Log.LeaseBucket], created on first use) with one key
// per claimed task, whose per-key time to live the server enforces by its
// own clock — a worker's clock never decides whether a lease ended. The
// server's per-message TTL counts whole seconds from 1 s: a shorter ttl is
// rounded up to 1 s, a longer one up to the next second. The audit stream
// is never touched (its settings stay as [Open] requires; per-message
// TTLs live in the bucket's own stream).
//
// Every call returns the same lease store (the log's partition views
// share it too), so that what it knows of the leases it wrote, and the
// releases it has in flight, are one.
//
// A release of a lease this store acquired or renewed last is sent
// without waiting for the server's answer: ReleaseLease returns at once,
// and any later call of this lease store on that lease waits for the
// answer first, so the store reads its own releases. A release that is
// lost (the server died meanwhile) leaves the lease to end at its ttl,
// and a claim of the task ends it sooner when the history says its claim
// was released ([lifecycle.Store.ClaimTask]). [Log.Close] waits for the
// releases in flight, 5 s at most.
func (s *Log) Leases() lifecycle.Leases {
	s.leasesOnce.Do(func() {
		if s.leases == nil { // a log not made by Open (tests)
			s.background = new(sync.WaitGroup)
			s.leases = newLeases(s)
		}
	})
	return s.leases
}

func newLeases(s *Log) *kvLeases {
	return &kvLeases{s: s, b: &kvBucket{s: s, cfg: natsjs.KeyValueConfig{Bucket: s.LeaseBucket(),
		Description: "runlog task claim leases of stream " + s.cfg.Stream + " (liveness only: the claims are in the log)",
		History:     1, Storage: s.cfg.Storage, Replicas: s.cfg.Replicas, LimitMarkerTTL: leaseMarkerTTL}}}
}

type kvLeases struct {
	s *Log
	b *kvBucket
	// inflight holds the releases sent and not answered yet: key → a
	// channel closed when the answer came (or the release gave up).
	inflight sync.Map
	// revs holds the revision of each lease this lease store wrote last
	// (key → leaseRev), so that a renewal or a release expects it instead
	// of reading the lease first: one round trip instead of two. A
	// revision that is no longer the key's (the lease ended, or changed
	// hands) fails the expectation, and the lease is then read as before.
	revs    sync.Map
	revsLen atomic.Int64
}

// leaseRev is a lease as this store last wrote it.
type leaseRev struct {
	holder string
	rev    uint64
}

// maxLeaseRevs bounds kvLeases.revs: leases that ended without a release
// leave their revision behind; past this many, the cache starts afresh
// (it only saves reads).
const maxLeaseRevs = 16_384

func (l *kvLeases) noteRev(key, holder string, rev uint64) {
	if _, loaded := l.revs.Swap(key, leaseRev{holder: holder, rev: rev}); !loaded && l.revsLen.Add(1) > maxLeaseRevs {
		l.revs.Clear()
		l.revsLen.Store(0)
	}
}

func (l *kvLeases) forgetRev(key string) {
	if _, loaded := l.revs.LoadAndDelete(key); loaded {
		l.revsLen.Add(-1)
	}
}

// knownRev returns the revision this store last wrote for key's lease
// held by holder, if it knows one.
func (l *kvLeases) knownRev(key, holder string) (uint64, bool) {
	v, ok := l.revs.Load(key)
	if !ok {
		return 0, false
	}
	r := v.(leaseRev)
	return r.rev, r.holder == holder
}

// leaseMarkerTTL is how long the bucket keeps the marker of an expired
// lease.
const leaseMarkerTTL = time.Minute

// leaseKey is the KV key of a task's lease: the instance's subject token,
// the run and the task id.
func leaseKey(k lifecycle.LeaseKey) string {
	return EncodeID(k.Instance) + "." + k.Run.String() + "." + k.Task.String()
}

// ttlSeconds rounds ttl up to whole seconds, at least 1.
func ttlSeconds(ttl time.Duration) time.Duration {
	secs := (ttl + time.Second - 1) / time.Second
	return max(secs, 1) * time.Second
}

func (l *kvLeases) AcquireLease(ctx context.Context, lk lifecycle.LeaseKey, holder string, ttl time.Duration) (bool, string, error) {
	kv, err := l.b.get(ctx, true)
	if err != nil {
		return false, "", err
	}
	key := leaseKey(lk)
	if err := l.settle(ctx, key); err != nil {
		return false, "", err
	}
	var opts []natsjs.KVCreateOpt
	if ttl > 0 {
		opts = append(opts, natsjs.KeyTTL(ttlSeconds(ttl)))
	}
	for {
		rev, err := kv.Create(ctx, key, []byte(holder), opts...)
		if err == nil {
			l.noteRev(key, holder, rev)
			return true, "", nil
		}
		if !errors.Is(err, natsjs.ErrKeyExists) {
			return false, "", fmt.Errorf("jetstream: acquire lease %s: %w", key, err)
		}
		e, gerr := kv.Get(ctx, key)
		if errors.Is(gerr, natsjs.ErrKeyNotFound) {
			continue // it ended in between: try again
		}
		if gerr != nil {
			return false, "", fmt.Errorf("jetstream: read lease %s: %w", key, gerr)
		}
		return false, string(e.Value()), nil
	}
}

func (l *kvLeases) RenewLease(ctx context.Context, lk lifecycle.LeaseKey, holder string, ttl time.Duration) (bool, error) {
	kv, err := l.b.get(ctx, true)
	if err != nil {
		return false, err
	}
	key := leaseKey(lk)
	if err := l.settle(ctx, key); err != nil {
		return false, err
	}
	if rev, ok := l.knownRev(key, holder); ok {
		renewed, err := l.renewAt(ctx, key, holder, ttl, rev)
		if renewed || err != nil {
			return renewed, err
		}
		// Not the revision this store wrote last: read it.
	}
	l.forgetRev(key)
	e, err := kv.Get(ctx, key)
	if errors.Is(err, natsjs.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("jetstream: read lease %s: %w", key, err)
	}
	if string(e.Value()) != holder {
		return false, nil
	}
	return l.renewAt(ctx, key, holder, ttl, e.Revision())
}

// renewAt renews key's lease for holder with a new TTL if rev is still
// its revision; false when it is not (it ended, or changed hands, or was
// renewed elsewhere).
func (l *kvLeases) renewAt(ctx context.Context, key, holder string, ttl time.Duration, rev uint64) (bool, error) {
	// nats.go's Update takes no TTL: the publish is made by hand.
	m := nats.NewMsg("$KV." + l.s.LeaseBucket() + "." + key)
	m.Data = []byte(holder)
	m.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	if ttl > 0 {
		m.Header.Set("Nats-TTL", strconv.FormatInt(int64(ttlSeconds(ttl)/time.Second), 10))
	}
	ack, err := l.s.js.PublishMsg(ctx, m)
	if err != nil {
		if _, ok := wrongSequence(err); ok {
			return false, nil
		}
		return false, fmt.Errorf("jetstream: renew lease %s: %w", key, err)
	}
	l.noteRev(key, holder, ack.Sequence)
	return true, nil
}

func (l *kvLeases) LeaseHolder(ctx context.Context, lk lifecycle.LeaseKey) (string, bool, error) {
	kv, err := l.b.get(ctx, true)
	if err != nil {
		return "", false, err
	}
	key := leaseKey(lk)
	if err := l.settle(ctx, key); err != nil {
		return "", false, err
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, natsjs.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("jetstream: read lease %s: %w", key, err)
	}
	return string(e.Value()), true, nil
}

func (l *kvLeases) ReleaseLease(ctx context.Context, lk lifecycle.LeaseKey, holder string) error {
	kv, err := l.b.get(ctx, true)
	if err != nil {
		return err
	}
	key := leaseKey(lk)
	if err := l.settle(ctx, key); err != nil {
		return err
	}
	if rev, ok := l.knownRev(key, holder); ok {
		// The revision this store wrote last: a delete that expects it
		// ends the lease if nobody changed it since, and does nothing
		// otherwise, so its answer is not waited for (see Log.Leases).
		l.forgetRev(key)
		l.releaseInBackground(key, rev)
		return nil
	}
	l.forgetRev(key)
	e, err := kv.Get(ctx, key)
	if errors.Is(err, natsjs.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("jetstream: read lease %s: %w", key, err)
	}
	if string(e.Value()) != holder {
		return nil
	}
	if err := kv.Delete(ctx, key, natsjs.LastRevision(e.Revision())); err != nil {
		if _, ok := wrongSequence(err); ok {
			return nil // renewed or changed hands in between: not ours to end
		}
		return fmt.Errorf("jetstream: release lease %s: %w", key, err)
	}
	return nil
}

// releaseTimeout bounds the wait for the answer to a release sent in the
// background.
const releaseTimeout = 5 * time.Second

// releaseInBackground deletes key's lease if its revision is still rev,
// without waiting: the delete is sent at once on the store's connection
// (so that it reaches the server before any later request of this
// store), and its answer is waited for in a goroutine. The lease's later
// operations in this store wait for it (settle). Its outcome is not
// reported: a revision that moved on means the lease is not ours to end
// any more, and a delete that failed leaves a lease that ends at its ttl.
func (l *kvLeases) releaseInBackground(key string, rev uint64) {
	done := make(chan struct{})
	l.inflight.Store(key, done)
	m := nats.NewMsg("$KV." + l.s.LeaseBucket() + "." + key)
	m.Header.Set("KV-Operation", "DEL")
	m.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	ack, err := l.s.js.PublishMsgAsync(m)
	if err != nil {
		l.inflight.CompareAndDelete(key, done)
		close(done)
		return
	}
	// The log's JetStream context ends an answer's wait after
	// releaseTimeout (WithPublishAsyncTimeout in Open).
	l.s.background.Go(func() {
		defer close(done)
		defer l.inflight.CompareAndDelete(key, done)
		select {
		case <-ack.Ok():
		case <-ack.Err():
		}
	})
}

// settle waits until the release of key this store has in flight, if
// any, was answered.
func (l *kvLeases) settle(ctx context.Context, key string) error {
	v, ok := l.inflight.Load(key)
	if !ok {
		return nil
	}
	select {
	case <-v.(chan struct{}):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
