package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// kvBucket is a KV bucket of the store's derived data (checkpoints,
// leases), looked up on first use and created then if asked.
type kvBucket struct {
	s   *Log
	cfg natsjs.KeyValueConfig // the configuration it is created with

	mu sync.Mutex
	kv natsjs.KeyValue
}

// get returns the bucket, creating it when create is set; nil, nil when
// it does not exist and create is not set.
func (b *kvBucket) get(ctx context.Context, create bool) (natsjs.KeyValue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kv != nil {
		return b.kv, nil
	}
	kv, err := b.s.js.KeyValue(ctx, b.cfg.Bucket)
	if errors.Is(err, natsjs.ErrBucketNotFound) {
		if !create {
			return nil, nil
		}
		kv, err = b.s.js.CreateOrUpdateKeyValue(ctx, b.cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: bucket %s: %w", b.cfg.Bucket, err)
	}
	b.kv = kv
	return kv, nil
}
