package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/lifecycle"
)

// Compile-time checks that *Store is a lifecycle log with the Last and
// Lister capabilities.
var (
	_ lifecycle.Log    = (*Store)(nil)
	_ lifecycle.Last   = (*Store)(nil)
	_ lifecycle.Lister = (*Store)(nil)
)

// Log attribute keys.
const (
	logKeyStream   = "stream"
	logKeyInstance = "instance"
	logKeySeq      = "seq"
	logKeyAttempt  = "attempt"
	logKeyErr      = "err"
)

// Store is the event log on one JetStream stream. It is safe for
// concurrent use. Make one with [Open], [OpenEmbedded] or [Connect].
type Store struct {
	cfg    Config
	log    *slog.Logger
	nc     *nats.Conn
	js     natsjs.JetStream
	stream natsjs.Stream
	// request sends an append's publish and waits for the answer:
	// nc.RequestMsgWithContext (a seam for the tests' lost acks).
	request func(context.Context, *nats.Msg) (*nats.Msg, error)
	// scanWait is how often Scan, while no message arrives, asks whether
	// any are left (the last ones may have been deleted since the scan
	// began): defaultScanWait (a seam for the tests).
	scanWait time.Duration

	ownConn bool      // Close closes nc
	emb     *Embedded // Close closes it, if not nil

	closeOnce sync.Once
	closeErr  error
}

// Open returns a store on nc. It creates the stream if it does not exist
// (limits retention with no limits, direct gets allowed, deletes and
// purges denied, the configured subjects, storage, replicas and
// de-duplication window). If the stream exists, Open verifies it and
// never modifies it: a configuration that differs in a way that matters
// gives a [*StreamMismatchError] matching [ErrStreamMismatch], naming
// every difference. With [Config.NoCreate] a missing stream gives an
// error matching [natsjs.ErrStreamNotFound]. An invalid cfg or a nil nc
// gives an error matching [ErrInvalidConfig]. Other errors come from the
// server, wrapped.
//
// The store does not own nc: [Store.Close] leaves it open.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, fmt.Errorf("%w: nil NATS connection", ErrInvalidConfig)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: open: %w", err)
	}
	stream, err := ensureStream(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	return &Store{
		cfg:      cfg,
		log:      cfg.Logger.With(slog.String(logKeyStream, cfg.Stream)),
		nc:       nc,
		js:       js,
		stream:   stream,
		request:  nc.RequestMsgWithContext,
		scanWait: defaultScanWait,
	}, nil
}

// streamConfig is the configuration Open creates.
func streamConfig(cfg Config) natsjs.StreamConfig {
	return natsjs.StreamConfig{
		Name:              cfg.Stream,
		Description:       "runlog event log",
		Subjects:          []string{cfg.Subject + ".>"},
		Retention:         natsjs.LimitsPolicy,
		MaxConsumers:      -1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxAge:            0,
		MaxMsgsPerSubject: -1,
		Discard:           natsjs.DiscardOld,
		Storage:           cfg.Storage,
		Replicas:          cfg.Replicas,
		Duplicates:        cfg.Duplicates,
		AllowDirect:       true,
		DenyDelete:        true,
		DenyPurge:         true,
	}
}

// ensureStream creates the stream or verifies the existing one.
func ensureStream(ctx context.Context, js natsjs.JetStream, cfg Config) (natsjs.Stream, error) {
	stream, err := js.Stream(ctx, cfg.Stream)
	if errors.Is(err, natsjs.ErrStreamNotFound) && cfg.NoCreate {
		return nil, fmt.Errorf("jetstream: stream %s does not exist (not created: Config.NoCreate is set): %w", cfg.Stream, err)
	}
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		stream, err = js.CreateStream(ctx, streamConfig(cfg))
		if errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
			// Created by someone else in between: verify theirs.
			stream, err = js.Stream(ctx, cfg.Stream)
		} else if err != nil {
			return nil, fmt.Errorf("jetstream: create stream %s: %w", cfg.Stream, err)
		} else {
			return stream, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: look up stream %s: %w", cfg.Stream, err)
	}
	if diffs := streamDiffs(stream.CachedInfo().Config, cfg); len(diffs) > 0 {
		return nil, &StreamMismatchError{Stream: cfg.Stream, Differences: diffs}
	}
	return stream, nil
}

// streamDiffs lists the differences between an existing stream's
// configuration and what the store needs, in a fixed order. Differences
// that cannot lose, hide or reject history (description, metadata,
// de-duplication window, deny delete/purge, compression) are ignored.
func streamDiffs(got natsjs.StreamConfig, cfg Config) []string {
	var d []string
	add := func(format string, args ...any) { d = append(d, fmt.Sprintf(format, args...)) }

	want := []string{cfg.Subject + ".>"}
	if g := slices.Sorted(slices.Values(got.Subjects)); !slices.Equal(g, want) {
		add("subjects are [%s] want [%s]", strings.Join(got.Subjects, " "), want[0])
	}
	if got.Retention != natsjs.LimitsPolicy {
		add("retention is %s want limits", retentionName(got.Retention))
	}
	if got.Storage != cfg.Storage {
		add("storage is %s want %s", storageName(got.Storage), storageName(cfg.Storage))
	}
	if got.Replicas != cfg.Replicas {
		add("replicas is %d want %d", got.Replicas, cfg.Replicas)
	}
	if !got.AllowDirect {
		add("allow_direct is false want true")
	}
	if got.MaxMsgsPerSubject > 0 {
		add("max_msgs_per_subject is %d want -1 (unlimited)", got.MaxMsgsPerSubject)
	}
	if got.MaxAge > 0 {
		add("max_age is %v want 0 (unlimited)", got.MaxAge)
	}
	if got.MaxMsgs > 0 {
		add("max_msgs is %d want -1 (unlimited)", got.MaxMsgs)
	}
	if got.MaxBytes > 0 {
		add("max_bytes is %d want -1 (unlimited)", got.MaxBytes)
	}
	if got.Discard != natsjs.DiscardOld {
		add("discard is %s want old", discardName(got.Discard))
	}
	if got.Sealed {
		add("sealed is true want false")
	}
	if got.Mirror != nil {
		add("mirror is %s want none", got.Mirror.Name)
	}
	if got.PersistMode != natsjs.DefaultPersistMode {
		add("persist_mode is async want default")
	}
	return d
}

func retentionName(r natsjs.RetentionPolicy) string {
	switch r {
	case natsjs.LimitsPolicy:
		return "limits"
	case natsjs.InterestPolicy:
		return "interest"
	case natsjs.WorkQueuePolicy:
		return "workqueue"
	}
	return fmt.Sprintf("unknown(%d)", int(r))
}

func storageName(s natsjs.StorageType) string {
	switch s {
	case natsjs.FileStorage:
		return "file"
	case natsjs.MemoryStorage:
		return "memory"
	}
	return fmt.Sprintf("unknown(%d)", int(s))
}

func discardName(p natsjs.DiscardPolicy) string {
	switch p {
	case natsjs.DiscardOld:
		return "old"
	case natsjs.DiscardNew:
		return "new"
	}
	return fmt.Sprintf("unknown(%d)", int(p))
}

// Stream returns the name of the store's stream.
func (s *Store) Stream() string { return s.cfg.Stream }

// Conn returns the store's NATS connection.
func (s *Store) Conn() *nats.Conn { return s.nc }

// JetStream returns the JetStream context the store uses.
func (s *Store) JetStream() natsjs.JetStream { return s.js }

// Close releases what the store owns: the connection made by [Connect] or
// [OpenEmbedded] and the server started by [OpenEmbedded]. A store made by
// [Open] does not own its connection, so Close leaves it open. Close may
// be called more than once; later calls return the first call's result.
// The only errors come from shutting down an embedded server.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.ownConn && s.nc != nil {
			s.nc.Close()
		}
		if s.emb != nil {
			s.closeErr = s.emb.Close()
		}
	})
	return s.closeErr
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
