package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/lifecycle"
)

// CheckpointBucket returns the name of the KV bucket that holds the
// store's projection checkpoints: the log's stream name with
// "_CHECKPOINTS" appended.
func (s *Store) CheckpointBucket() string { return s.cfg.Stream + "_CHECKPOINTS" }

// Checkpoints returns the store's projection checkpoint store
// ([lifecycle.Checkpoints]) for lifecycle.Config.Checkpoints: a KV bucket
// ([Store.CheckpointBucket], one revision per key, the log's storage and
// replicas), created when first written to. Keys are the instances' ids
// encoded as in subjects ([EncodeID]). It is derived data, outside the
// audit chain: deleting the bucket costs folds, never history.
func (s *Store) Checkpoints() lifecycle.Checkpoints { return &kvCheckpoints{s: s} }

type kvCheckpoints struct {
	s  *Store
	mu sync.Mutex
	kv natsjs.KeyValue
}

// bucket returns the KV bucket, creating it when create is set; nil, nil
// when it does not exist and create is not set.
func (c *kvCheckpoints) bucket(ctx context.Context, create bool) (natsjs.KeyValue, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kv != nil {
		return c.kv, nil
	}
	kv, err := c.s.js.KeyValue(ctx, c.s.CheckpointBucket())
	if errors.Is(err, natsjs.ErrBucketNotFound) {
		if !create {
			return nil, nil
		}
		kv, err = c.s.js.CreateOrUpdateKeyValue(ctx, natsjs.KeyValueConfig{Bucket: c.s.CheckpointBucket(),
			Description: "runlog projection checkpoints of stream " + c.s.cfg.Stream + " (derived data)",
			History:     1, Storage: c.s.cfg.Storage, Replicas: c.s.cfg.Replicas})
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: checkpoint bucket %s: %w", c.s.CheckpointBucket(), err)
	}
	c.kv = kv
	return kv, nil
}

func (c *kvCheckpoints) LoadCheckpoint(ctx context.Context, instance string) ([]byte, bool, error) {
	kv, err := c.bucket(ctx, false)
	if err != nil || kv == nil {
		return nil, false, err
	}
	e, err := kv.Get(ctx, EncodeID(instance))
	if errors.Is(err, natsjs.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("jetstream: load checkpoint of %q: %w", instance, err)
	}
	return e.Value(), true, nil
}

func (c *kvCheckpoints) SaveCheckpoint(ctx context.Context, instance string, data []byte) error {
	kv, err := c.bucket(ctx, true)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, EncodeID(instance), data); err != nil {
		return fmt.Errorf("jetstream: save checkpoint of %q: %w", instance, err)
	}
	return nil
}
