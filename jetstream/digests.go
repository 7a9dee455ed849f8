package jetstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// DigestStream returns the name of the stream [Log.PublishDigest]
// publishes to: the log's stream name with "_DIGESTS" appended. Its one
// subject is [Log.DigestSubject] with ".>"; it denies deletes and
// purges and keeps every message, like the log, so that it can be
// mirrored to, or sourced by, a stream the log's writers cannot reach
// (another account or cluster), or sealed.
func (s *Log) DigestStream() string { return s.cfg.Stream + "_DIGESTS" }

// DigestSubject returns the subject prefix of the digest stream:
// "runlog.digests." and the log's stream name.
func (s *Log) DigestSubject() string { return "runlog.digests." + s.cfg.Stream }

// PublishDigest publishes digest (a digest's JSON, normally its compact
// form: see audit.Digest.Compact) to the digest stream, creating the
// stream if it does not exist, with id as its Nats-Msg-Id (a digest
// published twice is stored once). It returns the message's sequence in
// the digest stream. An existing digest stream whose configuration could
// lose digests gives a [*StreamMismatchError]. It works on a store opened
// with [Config.ReadOnly] too: it does not write to the log.
func (s *Log) PublishDigest(ctx context.Context, digest []byte, id string) (uint64, error) {
	cfg := Config{Stream: s.DigestStream(), Subject: s.DigestSubject(), Storage: s.cfg.Storage, Replicas: s.cfg.Replicas, Duplicates: s.cfg.Duplicates}
	dp := &partition{name: cfg.Stream, prefix: cfg.Subject}
	stream, err := s.js.Stream(ctx, cfg.Stream)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		sc := streamConfig(cfg, dp, 1)
		sc.Description = "runlog digests of stream " + s.cfg.Stream
		stream, err = s.js.CreateStream(ctx, sc)
		if errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
			stream, err = s.js.Stream(ctx, cfg.Stream)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("jetstream: publish digest: stream %s: %w", cfg.Stream, err)
	}
	if unsafe, shape := streamDiffs(stream.CachedInfo().Config, cfg, dp.filter()); len(unsafe)+len(shape) > 0 {
		return 0, fmt.Errorf("jetstream: publish digest: %w", &StreamMismatchError{Stream: cfg.Stream, Differences: append(shape, unsafe...)})
	}
	m := nats.NewMsg(cfg.Subject + ".digest")
	m.Data = digest
	m.Header.Set("Content-Type", "application/json")
	ack, err := s.js.PublishMsg(ctx, m, natsjs.WithMsgID(id), natsjs.WithExpectStream(cfg.Stream))
	if err != nil {
		return 0, fmt.Errorf("jetstream: publish digest: %w", err)
	}
	return ack.Sequence, nil
}
