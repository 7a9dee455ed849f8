package jetstream

import (
	"context"
	"errors"
	"fmt"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/lifecycle"
)

// CheckpointBucket returns the name of the KV bucket that holds the
// store's projection checkpoints: the log's stream name with
// "_CHECKPOINTS" appended.
func (s *Log) CheckpointBucket() string { return s.cfg.Stream + "_CHECKPOINTS" }

// Checkpoints returns the store's projection checkpoint store
// ([lifecycle.Checkpoints]) for lifecycle.Config.Checkpoints: a KV bucket
// ([Log.CheckpointBucket], one revision per key, the log's storage and
// replicas), created when first written to. Keys are the instances' ids
// encoded as in subjects ([EncodeID]). It is derived data, outside the
// audit chain: deleting the bucket costs folds, never history.
func (s *Log) Checkpoints() lifecycle.Checkpoints {
	return &kvCheckpoints{b: &kvBucket{s: s, cfg: natsjs.KeyValueConfig{Bucket: s.CheckpointBucket(),
		Description: "runlog projection checkpoints of stream " + s.cfg.Stream + " (derived data)",
		History:     1, Storage: s.cfg.Storage, Replicas: s.cfg.Replicas}}}
}

type kvCheckpoints struct{ b *kvBucket }

func (c *kvCheckpoints) LoadCheckpoint(ctx context.Context, instance string) ([]byte, bool, error) {
	kv, err := c.b.get(ctx, false)
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
	kv, err := c.b.get(ctx, true)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, EncodeID(instance), data); err != nil {
		return fmt.Errorf("jetstream: save checkpoint of %q: %w", instance, err)
	}
	return nil
}
