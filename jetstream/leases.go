package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/lifecycle"
)

// LeaseBucket returns the name of the KV bucket that holds the store's
// claim leases: the log's stream name with "_LEASES" appended.
func (s *Store) LeaseBucket() string { return s.cfg.Stream + "_LEASES" }

// Leases returns the lease store of task claims (lifecycle.Config.Leases):
// a KV bucket ([Store.LeaseBucket], created on first use) with one key
// per claimed task, whose per-key time to live the server enforces by its
// own clock — a worker's clock never decides whether a lease ended. The
// server's per-message TTL counts whole seconds from 1 s: a shorter ttl is
// rounded up to 1 s, a longer one up to the next second. The audit stream
// is never touched (its settings stay as [Open] requires; per-message
// TTLs live in the bucket's own stream).
func (s *Store) Leases() lifecycle.Leases {
	return &kvLeases{s: s, b: &kvBucket{s: s, cfg: natsjs.KeyValueConfig{Bucket: s.LeaseBucket(),
		Description: "runlog task claim leases of stream " + s.cfg.Stream + " (liveness only: the claims are in the log)",
		History:     1, Storage: s.cfg.Storage, Replicas: s.cfg.Replicas, LimitMarkerTTL: leaseMarkerTTL}}}
}

type kvLeases struct {
	s *Store
	b *kvBucket
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
	var opts []natsjs.KVCreateOpt
	if ttl > 0 {
		opts = append(opts, natsjs.KeyTTL(ttlSeconds(ttl)))
	}
	for {
		_, err = kv.Create(ctx, key, []byte(holder), opts...)
		if err == nil {
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
	// An update with a new TTL, only if the lease is still this revision
	// (nats.go's Update takes no TTL: the publish is made by hand).
	m := nats.NewMsg("$KV." + l.s.LeaseBucket() + "." + key)
	m.Data = []byte(holder)
	m.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(e.Revision(), 10))
	if ttl > 0 {
		m.Header.Set("Nats-TTL", strconv.FormatInt(int64(ttlSeconds(ttl)/time.Second), 10))
	}
	if _, err := l.s.js.PublishMsg(ctx, m); err != nil {
		if _, ok := wrongSequence(err); ok {
			return false, nil // it ended or changed hands in between
		}
		return false, fmt.Errorf("jetstream: renew lease %s: %w", key, err)
	}
	return true, nil
}

func (l *kvLeases) LeaseHolder(ctx context.Context, lk lifecycle.LeaseKey) (string, bool, error) {
	kv, err := l.b.get(ctx, true)
	if err != nil {
		return "", false, err
	}
	key := leaseKey(lk)
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
