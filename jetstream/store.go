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

// Compile-time checks that *Log is a lifecycle log with the Last and
// Lister capabilities.
var (
	_ lifecycle.Log    = (*Log)(nil)
	_ lifecycle.Last   = (*Log)(nil)
	_ lifecycle.Lister = (*Log)(nil)
)

// Log attribute keys.
const (
	logKeyStream   = "stream"
	logKeyInstance = "instance"
	logKeySeq      = "seq"
	logKeyAttempt  = "attempt"
	logKeyErr      = "err"
)

// Log is the event log on one JetStream stream. It is safe for
// concurrent use. Make one with [Open], [OpenEmbedded] or [Connect].
type Log struct {
	cfg Config
	log *slog.Logger
	nc  *nats.Conn
	js  natsjs.JetStream
	// all are the store's partitions, one stream each, by index: one
	// (the stream cfg.Stream) unless the store is partitioned. Operations
	// on an instance go to its partition among them.
	all []*partition
	// parts are the partitions the reads across instances cover (Scan,
	// listings, heads, problems): all of them, or one for a view made by
	// Log.Partition.
	parts []*partition
	// request sends an append's publish and waits for the answer:
	// nc.RequestMsgWithContext (a seam for the tests' lost acks).
	request func(context.Context, *nats.Msg) (*nats.Msg, error)
	// replies receives the replies of batched direct gets, shared by
	// the partition views of one store.
	replies *replies
	// scanWait is how often Scan, while no message arrives, asks whether
	// any are left (the last ones may have been deleted since the scan
	// began): defaultScanWait (a seam for the tests).
	scanWait time.Duration

	ownConn  bool       // Close closes nc
	view     bool       // made by Log.Partition: Close leaves what it shares alone
	servedBy ServerFile // the server file OpenEmbedded connected through, if it did
	emb      *Embedded  // Close closes it, if not nil

	catalogMu sync.Mutex
	catalog   *Log // the definition catalog, once opened (CatalogLog)

	// leases is the log's lease store (Log.Leases), shared by its
	// partition views; background counts its releases in flight, which
	// Close waits for.
	leasesOnce sync.Once
	leases     *kvLeases
	background *sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Open returns a store on nc. It creates the stream if it does not exist
// (limits retention with no limits, direct gets allowed, deletes and
// purges denied, the configured subjects, storage, replicas and
// de-duplication window). If the stream exists, Open verifies it and
// never modifies it: a configuration that differs in a way that matters
// gives a [*StreamMismatchError] matching [ErrStreamMismatch], naming
// every difference: deletes or purges allowed, rollups, per-message TTLs,
// subject delete markers, schedules, counters, any limit or retention
// that discards messages, sources, asynchronous persistence (history can
// be lost or rewritten), and subjects, storage, replicas, direct gets,
// sealing or mirroring (the store cannot work). With [Config.ReadOnly]
// only the subjects and direct gets must match: the settings that could
// lose history are reported by [Log.StreamProblems] instead. With
// [Config.NoCreate] (or ReadOnly) a missing stream gives an
// error matching [natsjs.ErrStreamNotFound]. An invalid cfg or a nil nc
// gives an error matching [ErrInvalidConfig]. Other errors come from the
// server, wrapped.
//
// The store does not own nc: [Log.Close] leaves it open.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Log, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, fmt.Errorf("%w: nil NATS connection", ErrInvalidConfig)
	}
	js, err := natsjs.New(nc, natsjs.WithPublishAsyncTimeout(releaseTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: open: %w", err)
	}
	k, err := layout(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	parts := make([]*partition, k)
	for p := range k {
		part := &partition{index: p, name: PartitionStream(cfg.Stream, p, k), prefix: partitionPrefix(cfg.Subject, p, k)}
		if part.stream, part.created, err = ensureStream(ctx, js, cfg, part, k); err != nil {
			return nil, err
		}
		parts[p] = part
	}
	s := &Log{
		cfg:      cfg,
		log:      cfg.Logger.With(slog.String(logKeyStream, cfg.Stream)),
		nc:       nc,
		js:       js,
		all:      parts,
		parts:    parts,
		request:  nc.RequestMsgWithContext,
		replies:  newReplies(nc),
		scanWait: defaultScanWait,
	}
	s.background = new(sync.WaitGroup)
	s.leases = newLeases(s)
	if cfg.GroupCommit > 0 && !cfg.ReadOnly {
		for _, p := range parts {
			if !p.stream.CachedInfo().Config.AllowAtomicPublish {
				s.log.Warn("jetstream: group commit off: the stream does not allow atomic batch publishes (runlog never changes an existing stream; allow_atomic can be set on it with nats stream edit)",
					slog.String("partition_stream", p.name))
				continue
			}
			p.commit = &committer{s: s, p: p, min: cfg.GroupCommit}
		}
	}
	return s, nil
}

// streamConfig is the configuration Open creates for partition p of k.
func streamConfig(cfg Config, p *partition, k int) natsjs.StreamConfig {
	desc := "runlog event log"
	if k > 1 {
		desc = fmt.Sprintf("runlog event log %s, partition %d of %d", cfg.Stream, p.index, k)
	}
	return natsjs.StreamConfig{
		Name:               p.name,
		Description:        desc,
		Subjects:           []string{p.filter()},
		Metadata:           partitionMeta(p.index, k),
		AllowAtomicPublish: cfg.GroupCommit > 0,
		Retention:          natsjs.LimitsPolicy,
		MaxConsumers:       -1,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		MaxMsgsPerSubject:  -1,
		Discard:            natsjs.DiscardOld,
		Storage:            cfg.Storage,
		Compression:        cfg.Compression,
		Replicas:           cfg.Replicas,
		Duplicates:         cfg.Duplicates,
		AllowDirect:        true,
		DenyDelete:         true,
		DenyPurge:          true,
	}
}

// ensureStream creates partition p's stream (of k) or verifies the
// existing one.
func ensureStream(ctx context.Context, js natsjs.JetStream, cfg Config, p *partition, k int) (stream natsjs.Stream, created bool, err error) {
	stream, err = js.Stream(ctx, p.name)
	if errors.Is(err, natsjs.ErrStreamNotFound) && (cfg.NoCreate || cfg.ReadOnly) {
		what := "stream " + p.name
		if k > 1 {
			what = fmt.Sprintf("stream %s (partition %d of %d)", p.name, p.index, k)
		}
		return nil, false, fmt.Errorf("jetstream: %s does not exist (not created: Config.NoCreate or ReadOnly is set): %w", what, err)
	}
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		stream, err = js.CreateStream(ctx, streamConfig(cfg, p, k))
		if errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
			// Created by someone else in between: verify theirs.
			stream, err = js.Stream(ctx, p.name)
		} else if err != nil {
			return nil, false, fmt.Errorf("jetstream: create stream %s: %w", p.name, err)
		} else {
			return stream, true, nil
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("jetstream: look up stream %s: %w", p.name, err)
	}
	got := stream.CachedInfo().Config
	if err := checkPartition(p.name, got.Metadata, p.index, k); err != nil {
		return nil, false, err
	}
	unsafe, shape := streamDiffs(got, cfg, p.filter())
	if cfg.ReadOnly {
		unsafe = nil // reported by StreamProblems
	}
	if diffs := append(shape, unsafe...); len(diffs) > 0 {
		return nil, false, &StreamMismatchError{Stream: p.name, Differences: diffs}
	}
	return stream, false, nil
}

// DropIfNew deletes the store's streams if this store's Open created
// every one of them and they are still empty, and reports whether it did:
// for a program that created a store only to refuse to write to it (replay
// import of a file that does not verify), so that it leaves no empty store
// behind. A stream that existed before, or that holds a message, is never
// deleted.
func (s *Log) DropIfNew(ctx context.Context) (bool, error) {
	for _, p := range s.all {
		if !p.created {
			return false, nil
		}
		info, err := p.stream.Info(ctx)
		if err != nil {
			return false, fmt.Errorf("jetstream: stream %s: %w", p.name, err)
		}
		if info.State.Msgs > 0 || info.State.LastSeq > 0 {
			return false, nil
		}
	}
	for _, p := range s.all {
		if err := s.js.DeleteStream(ctx, p.name); err != nil {
			return false, fmt.Errorf("jetstream: drop the new stream %s: %w", p.name, err)
		}
	}
	return true, nil
}

// streamDiffs lists the differences between an existing stream's
// configuration and what the store needs, in a fixed order, in two
// groups: unsafe are the settings under which history can be lost,
// rewritten or added behind runlog's back (deletes or purges allowed,
// rollups, per-message TTLs, subject delete markers, message schedules,
// counters, limits or a retention that drop messages, sources,
// asynchronous persistence); shape are the ones the store cannot work
// with (subjects, storage, replicas, direct gets, sealing, mirroring).
// Differences that cannot lose, hide or reject history (description,
// metadata, de-duplication window, compression) are ignored. With
// readOnly, storage, replicas, sealing and mirroring do not matter: a
// reader needs only the subjects and direct gets.
func streamDiffs(got natsjs.StreamConfig, cfg Config, filter string) (unsafe, shape []string) {
	bad := func(list *[]string, format string, args ...any) { *list = append(*list, fmt.Sprintf(format, args...)) }

	want := []string{filter}
	if g := slices.Sorted(slices.Values(got.Subjects)); !slices.Equal(g, want) {
		bad(&shape, "subjects are [%s] want [%s]", strings.Join(got.Subjects, " "), want[0])
	}
	if !cfg.ReadOnly {
		if got.Storage != cfg.Storage {
			bad(&shape, "storage is %s want %s", storageName(got.Storage), storageName(cfg.Storage))
		}
		if got.Replicas != cfg.Replicas {
			bad(&shape, "replicas is %d want %d", got.Replicas, cfg.Replicas)
		}
	}
	if !got.AllowDirect {
		bad(&shape, "allow_direct is false want true")
	}
	if !cfg.ReadOnly {
		if got.Sealed {
			bad(&shape, "sealed is true want false")
		}
		if got.Mirror != nil {
			bad(&shape, "mirror is %s want none", got.Mirror.Name)
		}
	}

	if got.Retention != natsjs.LimitsPolicy {
		bad(&unsafe, "retention is %s want limits", retentionName(got.Retention))
	}
	if !got.DenyDelete {
		bad(&unsafe, "deny_delete is false want true (messages can be deleted)")
	}
	if !got.DenyPurge {
		bad(&unsafe, "deny_purge is false want true (subjects can be purged)")
	}
	if got.AllowRollup {
		bad(&unsafe, "allow_rollup_hdrs is true want false (a Nats-Rollup message replaces a subject's history)")
	}
	if got.AllowMsgTTL {
		bad(&unsafe, "allow_msg_ttl is true want false (a Nats-TTL message expires)")
	}
	if got.SubjectDeleteMarkerTTL > 0 {
		bad(&unsafe, "subject_delete_marker_ttl is %v want 0 (markers are written into instance subjects)", got.SubjectDeleteMarkerTTL)
	}
	if got.AllowMsgSchedules {
		bad(&unsafe, "allow_msg_schedules is true want false (schedules write messages and turn rollups on)")
	}
	if got.AllowMsgCounter {
		bad(&unsafe, "allow_msg_counter is true want false")
	}
	if got.MaxMsgsPerSubject > 0 {
		bad(&unsafe, "max_msgs_per_subject is %d want -1 (unlimited)", got.MaxMsgsPerSubject)
	}
	if got.MaxAge > 0 {
		bad(&unsafe, "max_age is %v want 0 (unlimited)", got.MaxAge)
	}
	if got.MaxMsgs > 0 {
		bad(&unsafe, "max_msgs is %d want -1 (unlimited)", got.MaxMsgs)
	}
	if got.MaxBytes > 0 {
		bad(&unsafe, "max_bytes is %d want -1 (unlimited)", got.MaxBytes)
	}
	if got.Discard != natsjs.DiscardOld {
		bad(&unsafe, "discard is %s want old", discardName(got.Discard))
	}
	if got.DiscardNewPerSubject {
		bad(&unsafe, "discard_new_per_subject is true want false")
	}
	if len(got.Sources) > 0 {
		names := make([]string, len(got.Sources))
		for i, src := range got.Sources {
			names[i] = src.Name
		}
		bad(&unsafe, "sources are [%s] want none (messages are copied in from elsewhere)", strings.Join(names, " "))
	}
	if got.PersistMode != natsjs.DefaultPersistMode {
		bad(&unsafe, "persist_mode is async want default (acknowledged writes can be lost)")
	}
	return unsafe, shape
}

// StreamProblems reads the stream's configuration and state afresh and
// returns every setting under which its history could be lost, rewritten
// or added to behind runlog's back (see [Open]), and every sign that
// messages were lost ([Log.Damage]), one sentence each, or nil.
// A store opened with [Config.ReadOnly] may have such problems; audits
// report them (audit.Verify does, through this method).
//
// A partitioned store's sentences begin with the stream they are about.
func (s *Log) StreamProblems(ctx context.Context) ([]string, error) {
	var all []string
	for _, p := range s.parts {
		info, err := s.streamInfo(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("jetstream: stream problems: %w", err)
		}
		unsafe, _ := streamDiffs(info.Config, s.cfg, p.filter())
		all = append(all, s.about(p, append(unsafe, damage(info.State)...))...)
	}
	return all, nil
}

// about prefixes each of a partition's findings with its stream's name
// when the store has several.
func (s *Log) about(p *partition, findings []string) []string {
	if len(s.parts) > 1 {
		for i, f := range findings {
			findings[i] = "stream " + p.name + ": " + f
		}
	}
	return findings
}

// Damage reads the stream's state afresh and describes the signs that the
// server lost messages (see [Log.StreamProblems], which includes them),
// or returns nil. [OpenEmbedded] logs them at warn level when it opens a
// damaged store.
func (s *Log) Damage(ctx context.Context) ([]string, error) {
	var all []string
	for _, p := range s.parts {
		info, err := s.streamInfo(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("jetstream: damage: %w", err)
		}
		all = append(all, s.about(p, damage(info.State))...)
	}
	return all, nil
}

// damage describes the signs of lost messages in a stream's state: the
// server's own record of data lost recovering damaged files, and
// sequences missing between the first and the last one (runlog's streams
// deny deletes, so a hole is data the store lost, as when a block file
// was cut). A damaged store is otherwise served as if whole: the server
// rebuilds its state from what is left and says so only in its log.
func damage(st natsjs.StreamState) []string {
	var d []string
	if st.Lost != nil && (len(st.Lost.Msgs) > 0 || st.Lost.Bytes > 0) {
		seqs := st.Lost.Msgs
		more := ""
		if len(seqs) > 8 {
			seqs, more = seqs[:8], fmt.Sprintf(" and %d more", len(st.Lost.Msgs)-8)
		}
		d = append(d, fmt.Sprintf("the server lost %d messages (%d bytes) recovering damaged store files: seq %v%s", len(st.Lost.Msgs), st.Lost.Bytes, seqs, more))
	}
	if st.Msgs > 0 && st.LastSeq >= st.FirstSeq {
		if span := st.LastSeq - st.FirstSeq + 1; span > st.Msgs {
			d = append(d, fmt.Sprintf("the stream holds %d messages between seq %d and %d: %d are missing though deletes are denied (the store lost them: damaged or cut files, or deleted before deletes were denied)", st.Msgs, st.FirstSeq, st.LastSeq, span-st.Msgs))
		}
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

// Stream returns the name of the store: its stream's, or for a
// partitioned store the base name of its streams ([Log.Streams]).
// Derived data is named after it ([Log.CheckpointBucket],
// [Log.DigestStream]).
func (s *Log) Stream() string { return s.cfg.Stream }

// Conn returns the store's NATS connection: for programs that publish on
// the same NATS system as the store (the CloudEvents bridge, feed.Run).
// It belongs to the store: do not close it.
func (s *Log) Conn() *nats.Conn { return s.nc }

// Close releases what the store owns: the connection made by [Connect] or
// [OpenEmbedded], the server started by [OpenEmbedded], and the one
// subscription its batched reads share. It first waits for the lease
// releases in flight ([Log.Leases]), 5 s at most. A store made by [Open]
// does not own its connection, so Close leaves it open; a store made by
// [Log.Partition] shares its parent's, and its Close does nothing. Close may
// be called more than once; later calls return the first call's result.
// The only errors come from shutting down an embedded server.
func (s *Log) Close() error {
	s.closeOnce.Do(func() {
		if s.view {
			return // what it has is its parent's
		}
		if s.background != nil {
			s.background.Wait() // the lease releases in flight: releaseTimeout at most
		}
		if s.replies != nil {
			s.replies.stop()
		}
		s.catalogMu.Lock()
		if s.catalog != nil {
			_ = s.catalog.Close() // it owns nothing but its reply subscription
		}
		s.catalogMu.Unlock()
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
