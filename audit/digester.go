package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nkeys"
)

// Digester makes a signed digest of a log at a fixed interval and hands
// each to Publish: run it in a service beside the writers, so that no
// commit stays uncovered by a digest for much longer than the interval
// (a digest covers the commits up to its last sequence, never later
// ones). Publish should put the digest out of the log's writers' reach: a
// separate stream mirrored elsewhere (jetstream.Log.PublishDigest
// publishes its compact form), object storage with retention locks, a
// transparency log, an auditor's inbox.
//
// Several Digesters may run on one log (any may be killed at any moment):
// each digest stands on its own, so duplicates cost only space.
type Digester struct {
	Source   HeadSource
	Key      nkeys.KeyPair // signs every digest; required
	Interval time.Duration // between two digests; at least a second
	// Publish receives each digest. An error is logged, and the digest
	// is tried again (made anew) at the next tick.
	Publish func(ctx context.Context, d *Digest) error
	// Logger receives failures at warn level and each digest at debug
	// level; nil means slog.Default.
	Logger *slog.Logger
}

// ErrInvalidDigester is matched by the error [Digester.Run] returns for a
// Digester with a missing field.
var ErrInvalidDigester = errors.New("audit: invalid digester")

// Run makes a digest at once and then every Interval, until ctx is done,
// and returns ctx's error. A tick at which the log has not grown since the
// last published digest publishes nothing.
func (g *Digester) Run(ctx context.Context) error {
	switch {
	case g.Source == nil:
		return fmt.Errorf("%w: no Source", ErrInvalidDigester)
	case g.Key == nil:
		return fmt.Errorf("%w: no Key: digests must be signed", ErrInvalidDigester)
	case g.Publish == nil:
		return fmt.Errorf("%w: no Publish", ErrInvalidDigester)
	case g.Interval < time.Second:
		return fmt.Errorf("%w: Interval %v, want at least 1s", ErrInvalidDigester, g.Interval)
	}
	log := g.Logger
	if log == nil {
		log = slog.Default()
	}
	var last uint64
	published := false
	t := time.NewTicker(g.Interval)
	defer t.Stop()
	for {
		if info, err := g.Source.LogInfo(ctx); err != nil {
			log.Warn("audit: digester: describe the log", slog.Any("err", err))
		} else if !published || info.LastSeq != last {
			d, err := MakeDigest(ctx, g.Source, DigestOptions{Key: g.Key})
			if err == nil {
				err = g.Publish(ctx, d)
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("audit: digester: digest not published; trying again at the next tick", slog.Any("err", err))
			} else if err == nil {
				last, published = d.LastSeq, true
				log.Debug("audit: digester: published", slog.Uint64("last_seq", d.LastSeq), slog.Int("instances", d.Instances), slog.String("root", d.Root.String()))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// A DigestPublisher stores digests out of the log: jetstream.Log is one
// (its digest stream).
type DigestPublisher interface {
	PublishDigest(ctx context.Context, digest []byte, id string) (uint64, error)
}

// PublishCompact returns a [Digester.Publish] that publishes each digest's
// compact form ([Digest.Compact]) to p, with an id made of the digest's
// stream, last sequence and root (so that the same digest published twice
// is stored once).
func PublishCompact(p DigestPublisher) func(ctx context.Context, d *Digest) error {
	return func(ctx context.Context, d *Digest) error {
		b, err := json.Marshal(d.Compact())
		if err != nil {
			return err
		}
		_, err = p.PublishDigest(ctx, b, fmt.Sprintf("%s-%d-%s", d.Stream, d.LastSeq, d.Root))
		return err
	}
}
