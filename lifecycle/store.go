package lifecycle

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// Config configures a [Store]. The zero value is valid.
type Config struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Entropy feeds the ULIDs of commits, events and runs; nil means a
	// cryptographically random source. Commit ids are the logs'
	// de-duplication keys: two stores sharing a log must never draw the
	// same ids, so a fixed source is for single-store tests only.
	Entropy io.Reader
	// MaxAttempts bounds how often one operation decides and appends
	// before it gives up with ErrConcurrentModification; 0 means 16.
	// After the second conflict each retry waits a jittered pause that
	// doubles from 1 ms up to 64 ms (about 0.6 s over 16 attempts), up to
	// 512 ms after a conflict whose re-read showed no new commit (a
	// replicated stream applying the winner: about 2.5 s over 16).
	MaxAttempts int
	// MaxPayload bounds an input, output or event payload, in bytes; 0
	// means 512 KiB. Larger payloads are refused with ErrInvalidRequest
	// before anything is sent.
	MaxPayload int
	// CacheSize bounds the projection cache, in instances; 0 means 4096,
	// a negative value disables the cache. See [Store] for what it holds.
	CacheSize int
	// Logger receives conflict retries at debug level; nil means slog.Default().
	Logger *slog.Logger
	// Checkpoints, if set, keeps projection checkpoints of the instances
	// (derived data, outside the audit chain; see [Checkpoints]): a store
	// that has not cached an instance reads its checkpoint and the commits
	// after it instead of folding the whole history, so a cold read costs
	// about the same whatever the history's length. A checkpoint is used
	// only if the message at its sequence is in the history with its head
	// hash; otherwise it is ignored (logged at warn) and the history
	// folded. A checkpoint that cannot be read or written never fails an
	// operation. nil: every cold read folds the whole history.
	Checkpoints Checkpoints
	// CheckpointEvery is how many commits may be folded past an
	// instance's last checkpoint before the store writes a new one (after
	// a fold or an append); 0 means 256. Only used with Checkpoints.
	CheckpointEvery int
	// AfterCommit, if set, is called after each commit the store appended,
	// with the instance's projection after it: for a hint that must go
	// out as soon as the log holds the commit (jetstream's
	// RunnableIndex.Hints announces runnable tasks to idle workers). It
	// runs while the instance is locked: it must be quick, must not call
	// the store, and must not keep st. Nothing it does can fail the
	// operation.
	AfterCommit func(ctx context.Context, st *projection.State)
	// TracerProvider, if set, gives the tracer of the store's spans: one
	// per operation (a child of the context's span, else of the run's
	// trace parent), with a child per append and per read
	// (docs/INTEGRATION.md). nil: no spans. The global provider is never
	// used.
	TracerProvider trace.TracerProvider
	// MeterProvider, if set, gives the meter of the store's metrics
	// (docs/INTEGRATION.md). nil: no metrics. The global provider is
	// never used.
	MeterProvider metric.MeterProvider
	// Leases keeps the liveness of task claims (docs/WORKERS.md):
	// [Store.ClaimTask] and the operations on claims need it
	// (jetstream.Log.Leases, memlog.Log.Leases); without it they are
	// refused with ErrInvalidConfig.
	Leases Leases
	// Catalog, if set, is the store's definition catalog: a Log of its
	// own (never the instances' log), with one history per definition
	// hash naming its workflow and tasks ([Store.RegisterDefinition]).
	// jetstream.Log.Catalog opens the one that goes with a stream; on
	// memlog, a second memlog.Log. nil: RegisterDefinition is refused
	// with ErrInvalidConfig and names come only from the histories.
	Catalog Log
}

// Store is the persistence engine of a workflow runtime: every operation
// reads the instance's projection, decides, and appends the resulting
// events as one commit with an optimistic sequence check. It is safe for
// concurrent use, by any number of goroutines and processes sharing the
// log.
//
// The store caches the projections of the instances it touched most
// recently (Config.CacheSize, least recently used evicted). A cached
// projection is brought up to date by reading only the messages after its
// last sequence (one direct get of the last message, when the log has
// [Last], then one per new commit back along AfterSeq when up to 8 are
// new). A write decides on
// the cached projection without reading first: the sequence check refuses
// it if the projection was behind, and the store then reads what it missed
// and decides again. On a cache miss a write reads first, except PrepareRun
// under Fail, which creates without reading (one append for a new id). A decision that
// writes nothing (a refusal, or a no-op) is always confirmed on a
// projection read in the same call. Operations on one instance from one
// Store are serialised.
type Store struct {
	log         Log
	ids         *events.IDSource
	now         func() time.Time
	maxAttempts int
	maxPayload  int
	logger      *slog.Logger
	cache       *cache
	tel         *telemetry
	afterCommit func(context.Context, *projection.State)

	checkpoints     Checkpoints
	checkpointEvery int
	leases          Leases
	// leaseView holds the leases this store acquired or renewed itself
	// (LeaseKey → leaseSeen), so that a fenced write need not read a
	// lease it knows to be live.
	leaseView  sync.Map
	leaseNotes atomic.Uint64 // leases noted, for the sweep of leaseView

	catalog    Log
	registered sync.Map // DefinitionHash → *workflow.Definition: found in the catalog (they never change)
}

// New returns a store writing to log.
func New(log Log, cfg Config) (*Store, error) {
	if log == nil {
		return nil, fmt.Errorf("%w: nil log", ErrInvalidConfig)
	}
	if cfg.MaxAttempts < 0 || cfg.MaxPayload < 0 || cfg.CheckpointEvery < 0 {
		return nil, fmt.Errorf("%w: MaxAttempts, MaxPayload and CheckpointEvery must not be negative", ErrInvalidConfig)
	}
	s := &Store{log: log, now: cfg.Now, maxAttempts: cfg.MaxAttempts, maxPayload: cfg.MaxPayload, logger: cfg.Logger,
		checkpoints: cfg.Checkpoints, checkpointEvery: cfg.CheckpointEvery, leases: cfg.Leases, catalog: cfg.Catalog}
	if s.checkpointEvery == 0 {
		s.checkpointEvery = 256
	}
	tel, err := newTelemetry(cfg.TracerProvider, cfg.MeterProvider)
	if err != nil {
		return nil, fmt.Errorf("%w: telemetry: %w", ErrInvalidConfig, err)
	}
	s.tel = tel
	s.afterCommit = cfg.AfterCommit
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxAttempts == 0 {
		s.maxAttempts = 16
	}
	if s.maxPayload == 0 {
		s.maxPayload = 512 << 10
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	size := cfg.CacheSize
	if size == 0 {
		size = 4096
	}
	s.cache = newCache(size)
	s.ids = events.NewIDSource(s.now, cfg.Entropy)
	return s, nil
}

// Log returns the store's event log.
func (s *Store) Log() Log { return s.log }

// Load returns a copy of the instance's projected state, up to date with
// its history. A state with Exists false is not an error. Errors: invalid
// id ([ErrInvalidInstanceID]), a corrupt history ([events.ErrCorrupt],
// [projection.ErrInvalidHistory], naming the sequence) or the log's error,
// wrapped.
func (s *Store) Load(ctx context.Context, id string) (projection.State, error) {
	if err := validateID(id); err != nil {
		return projection.State{}, err
	}
	var out projection.State
	err := s.read(ctx, id, func(st *projection.State) error {
		out = st.Clone()
		return nil
	})
	if err != nil {
		return projection.State{}, fmt.Errorf("lifecycle: load %q: %w", id, err)
	}
	return out, nil
}

// LoadWith is [Store.Load] for a caller that has just received m, a
// message of instance id, from the log itself (a consumer's delivery: the
// server's copy, never a client's): it returns a projection at least as
// new as m, without reading the log when the cached projection holds m
// already or ends where m begins (m's expected previous sequence is its
// last: m is folded in). Otherwise it reads the log, as Load does. A
// message that does not fold there gives Load's answer instead, read
// afresh.
func (s *Store) LoadWith(ctx context.Context, id string, m events.Message) (projection.State, error) {
	if err := validateID(id); err != nil {
		return projection.State{}, err
	}
	e := s.cache.acquire(id)
	defer s.cache.release(e)
	st := &e.st
	current := st.Commits > 0 && st.LastSeq >= m.Seq
	if !current && st.Commits > 0 && m.AfterKnown && m.AfterSeq == st.LastSeq {
		if step := st.Step(m, projection.StepOptions{Discard: true}); step.Err != nil {
			*st = projection.New(id) // read afresh below
		} else {
			s.maybeCheckpoint(ctx, e)
			current = true
		}
	}
	if !current {
		if _, err := s.catchUp(ctx, e, ulid.ULID{}); err != nil {
			return projection.State{}, fmt.Errorf("lifecycle: load %q: %w", id, err)
		}
	}
	return st.Clone(), nil
}

// read brings the instance's projection up to date and calls fn with it.
// fn must not keep st.
func (s *Store) read(ctx context.Context, id string, fn func(st *projection.State) error) error {
	e := s.cache.acquire(id)
	defer s.cache.release(e)
	if _, err := s.catchUp(ctx, e, ulid.ULID{}); err != nil {
		return err
	}
	return fn(&e.st)
}

// peek calls fn with the instance's cached projection as it is, without
// reading the log, and reports cached true; on a cache miss it reads the
// instance first, as read does, and reports cached false. fn must not
// keep st. What is decided on a peeked projection must be proved by the
// log before it is acted on: an append's sequence check, or the lease
// store's answer.
func (s *Store) peek(ctx context.Context, id string, fn func(st *projection.State) error) (cached bool, err error) {
	e := s.cache.acquire(id)
	defer s.cache.release(e)
	if e.st.LastSeq != 0 || e.st.Commits != 0 {
		return true, fn(&e.st)
	}
	if _, err := s.catchUp(ctx, e, ulid.ULID{}); err != nil {
		return false, err
	}
	return false, fn(&e.st)
}

// catchUp folds the messages after e.st.LastSeq into e.st and reports
// whether a commit with id pending was among them. An empty projection
// starts from the instance's checkpoint when there is a valid one.
func (s *Store) catchUp(ctx context.Context, e *entry, pending ulid.ULID) (found bool, err error) {
	if s.tel.on {
		var read step
		ctx, read = s.tel.step(ctx, spanRead, e.st.Instance)
		before := e.st.Commits
		defer func() { read.end(err, e.st.LastSeq, e.st.Commits-before) }()
	}
	return s.catchUpStep(ctx, e, pending)
}

func (s *Store) catchUpStep(ctx context.Context, e *entry, pending ulid.ULID) (bool, error) {
	st := &e.st
	if st.LastSeq == 0 && st.Commits == 0 && s.checkpoints != nil {
		found, used, err := s.resume(ctx, e, pending)
		if err != nil || used {
			return found, err
		}
	}
	// The common case, nothing new or a few new commits, costs one cheap
	// read of the instance's last message, and one per new commit, when
	// the log can do it.
	if l, ok := s.log.(Last); ok {
		m, ok, err := l.LastMessage(ctx, st.Instance)
		if err != nil {
			return false, err
		}
		switch {
		case !ok && st.LastSeq == 0, ok && m.Seq == st.LastSeq:
			return false, nil
		case ok && m.AfterKnown && m.AfterSeq >= st.LastSeq:
			// Walk back from the last message, one cheap read per
			// commit, to the projection's last: up to about 8, single
			// reads cost less than one batched read (on JetStream here,
			// ~25–35 µs each against ~50 µs and ~17 µs a message:
			// jetstream's BenchmarkReadShort).
			chain := []events.Message{m}
			cur := m
			for cur.AfterSeq > st.LastSeq {
				if len(chain) == walkBackMax {
					chain = nil // too many new commits: read them in batches
					break
				}
				prev, ok, err := l.MessageAt(ctx, st.Instance, cur.AfterSeq)
				if err != nil {
					return false, err
				}
				if !ok || !prev.AfterKnown {
					chain = nil
					break
				}
				chain = append(chain, prev)
				cur = prev
			}
			if chain != nil && cur.AfterSeq == st.LastSeq {
				found := false
				for i := len(chain) - 1; i >= 0; i-- {
					rec, err := st.ApplyMessage(chain[i])
					if err != nil {
						return false, err
					}
					found = found || !pending.IsZero() && rec.Commit.ID == pending
				}
				s.maybeCheckpoint(ctx, e)
				return found, nil
			}
		}
	}
	found := false
	for m, err := range s.log.Read(ctx, st.Instance, st.LastSeq) {
		if err != nil {
			return false, err
		}
		rec, err := st.ApplyMessage(m)
		if err != nil {
			return false, err
		}
		found = found || !pending.IsZero() && rec.Commit.ID == pending
	}
	s.maybeCheckpoint(ctx, e)
	return found, nil
}

// resume starts e's empty projection from the instance's checkpoint, if
// there is one that the history vouches for, and folds the commits after
// it, in one read from the checkpoint's sequence: the message there must
// be the instance's with the checkpoint's head hash. used is false when
// there is no usable checkpoint (then nothing was changed); only the
// log's read errors and a history that does not fold are errors.
func (s *Store) resume(ctx context.Context, e *entry, pending ulid.ULID) (found, used bool, err error) {
	id := e.st.Instance
	data, ok, err := s.checkpoints.LoadCheckpoint(ctx, id)
	if err != nil {
		s.logger.LogAttrs(ctx, slog.LevelWarn, "runlog: checkpoint not read; folding the history", slog.String("instance", id), slog.Any("err", err))
		return false, false, nil
	}
	if !ok {
		return false, false, nil
	}
	cp, err := projection.UnmarshalCheckpoint(id, data)
	if err != nil {
		s.logger.LogAttrs(ctx, slog.LevelWarn, "runlog: checkpoint ignored; folding the history", slog.String("instance", id), slog.Any("err", err))
		return false, false, nil
	}
	first := true
	for m, err := range s.log.Read(ctx, id, cp.LastSeq-1) {
		if err != nil {
			return false, used, err
		}
		if first {
			first = false
			if m.Seq != cp.LastSeq || workflow.Sha256(m.Data) != cp.Head {
				s.logger.LogAttrs(ctx, slog.LevelWarn, "runlog: checkpoint does not match the history; folding the history",
					slog.String("instance", id), slog.Uint64("seq", cp.LastSeq), slog.Uint64("found_seq", m.Seq))
				return false, false, nil
			}
			e.st, e.checkpointed, used = cp, cp.Commits, true
			continue
		}
		rec, err := e.st.ApplyMessage(m)
		if err != nil {
			return false, used, err
		}
		found = found || !pending.IsZero() && rec.Commit.ID == pending
	}
	if !used {
		s.logger.LogAttrs(ctx, slog.LevelWarn, "runlog: checkpoint beyond the history; folding the history", slog.String("instance", id), slog.Uint64("seq", cp.LastSeq))
		return false, false, nil
	}
	s.maybeCheckpoint(ctx, e)
	return found, true, nil
}

// maybeCheckpoint writes e's projection as the instance's checkpoint when
// CheckpointEvery commits were folded since the last one. A failure is
// logged, never returned: a checkpoint is derived data.
func (s *Store) maybeCheckpoint(ctx context.Context, e *entry) {
	if s.checkpoints == nil || e.st.LastSeq == 0 || e.st.Commits-e.checkpointed < s.checkpointEvery {
		return
	}
	data, err := e.st.MarshalCheckpoint()
	if err == nil {
		err = s.checkpoints.SaveCheckpoint(ctx, e.st.Instance, data)
	}
	if err != nil {
		s.logger.LogAttrs(ctx, slog.LevelWarn, "runlog: checkpoint not written", slog.String("instance", e.st.Instance), slog.Any("err", err))
		return
	}
	e.checkpointed = e.st.Commits
}

// walkBackMax is the most new commits a catch-up reads one by one,
// following each message's AfterSeq back from the last; more are read in
// batches.
const walkBackMax = 8

// decider is the pure decision of an operation on a projection: a commit
// to append, nil to write nothing, or an error that refuses. It does no
// I/O and may be called several times.
type decider func(st *projection.State) (*events.Commit, error)

// write is the loop every operation shares. It decides on the cached
// projection, appends the decision expecting the projection's last
// sequence and, on a conflict, reads what it missed and decides again, at
// most maxAttempts times. A decision that writes nothing or refuses is
// confirmed on a projection read in this call. If an append fails with a
// conflict but a later read finds that very commit, it landed (a retried
// append whose first attempt succeeded) and the write succeeds. It
// returns the revision the operation left.
func (s *Store) write(ctx context.Context, op, id string, decide decider, opts ...writeOption) (Revision, error) {
	var o writeOptions
	for _, f := range opts {
		f(&o)
	}
	var rev Revision
	err := s.writeEntry(ctx, op, id, decide, &rev, o)
	return rev, err
}

// writeOptions change how write goes about one operation.
type writeOptions struct {
	blind       bool                    // decide on the empty projection on a cache miss
	after       func(*projection.State) // called with the projection left, before unlocking
	traceParent string                  // the run's trace parent, when the operation creates the run
}

type writeOption func(*writeOptions)

// createBlind is for a decision that is expected to create: on a cache
// miss the decision is made on the empty projection without reading
// first, so a fresh create costs one append; an existing instance is
// found by the conflict.
func createBlind() writeOption { return func(o *writeOptions) { o.blind = true } }

// withRunTrace names the trace parent of the run an operation creates.
func withRunTrace(tp string) writeOption { return func(o *writeOptions) { o.traceParent = tp } }

// thenWith calls after with the projection the operation left behind,
// before the instance is unlocked.
func thenWith(after func(st *projection.State)) writeOption {
	return func(o *writeOptions) { o.after = after }
}

// Revision identifies the version of a snapshot a writer acts on: the run
// and the sequence of the last commit that changed the snapshot. Pending
// signals and buffered events do not change it.
type Revision = projection.Revision

// writeEntry is write's loop: it takes the instance's cache entry (and
// its lock) for the whole operation.
func (s *Store) writeEntry(ctx context.Context, op, id string, decide decider, rev *Revision, o writeOptions) (err error) {
	e := s.cache.acquire(id)
	defer s.cache.release(e)
	st := &e.st
	runTrace := o.traceParent
	if runTrace == "" && st.Snapshot != nil {
		runTrace = st.Snapshot.TraceParent
	}
	ctx, m := s.tel.startOp(ctx, op, id, runTrace)
	attempts, conflicts := 0, 0
	defer func() {
		*rev = st.Revision()
		if err == nil && o.after != nil {
			o.after(st)
		}
		m.end(ctx, err, attempts, conflicts)
	}()
	m.cacheLookup(ctx, st.LastSeq != 0 || st.Commits != 0)
	verified := false
	if !o.blind && st.LastSeq == 0 && st.Commits == 0 {
		// A cache miss: read first rather than decide on nothing.
		if _, err := s.catchUp(ctx, e, ulid.ULID{}); err != nil {
			return err
		}
		verified = true
	}
	var last error
	invisible := false // the last conflict's re-read showed no new commit
	for attempt := 1; ; {
		attempts = attempt
		c, err := decide(st)
		if err != nil && !isDomain(err) {
			return err
		}
		if err != nil || c == nil {
			if verified {
				return err
			}
			if _, err := s.catchUp(ctx, e, ulid.ULID{}); err != nil {
				return err
			}
			verified = true
			continue
		}
		err = s.appendCommit(ctx, st, c)
		if err == nil {
			s.maybeCheckpoint(ctx, e)
			return nil
		}
		if !errors.Is(err, ErrWrongSequence) {
			return err
		}
		last = err
		conflicts++
		m.conflict(ctx, st.LastSeq, attempt)
		s.logger.LogAttrs(ctx, slog.LevelDebug, "runlog: conflict, deciding again",
			slog.String("op", op), slog.String("instance", id), slog.Uint64("seq", st.LastSeq), slog.Int("attempt", attempt))
		if attempt >= s.maxAttempts {
			return &ConcurrentModificationError{ID: id, Op: op, Attempts: attempt, Last: last}
		}
		attempt++
		if err := backoff(ctx, attempt, invisible); err != nil {
			return err
		}
		before := st.LastSeq
		found, err := s.catchUp(ctx, e, c.ID)
		if err != nil {
			return err
		}
		if found {
			return nil
		}
		verified = true
		// The log refused the append, yet the re-read shows no new
		// commit: on a replicated stream the winner is proposed but not
		// applied yet (10164; slow under load or while a replica catches
		// up). Deciding again at once cannot see it either: wait longer.
		invisible = st.LastSeq == before
	}
}

// Conflict backoff: the first retry is immediate (a stale cache costs one
// re-read); later ones wait a jittered, doubling pause. On a replicated
// stream the log answers a conflict (10164) while another write to the
// instance is still being applied, and a re-read at once may not see it
// yet; under heavy contention the pause spreads the writers out. After a
// conflict whose re-read showed no new commit the pause may grow to
// backoffInvisibleMax: the winner is being applied, and under load that
// has taken longer than 16 attempts of at most 64 ms (TestNodeLoss,
// docs/RELIABILITY.md Findings).
const (
	backoffBase         = time.Millisecond
	backoffMax          = 64 * time.Millisecond
	backoffInvisibleMax = 512 * time.Millisecond
)

// backoff waits before attempt (2 = the first retry) of a write;
// invisible: the last conflict showed no new commit.
func backoff(ctx context.Context, attempt int, invisible bool) error {
	if attempt <= 2 {
		return nil
	}
	d := backoffBase << min(attempt-3, 9)
	if invisible {
		d = min(d, backoffInvisibleMax)
	} else {
		d = min(d, backoffMax)
	}
	d = d/2 + rand.N(d/2+1) // jitter: [d/2, d]
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// appendCommit encodes c and appends it expecting st.LastSeq. On success it
// folds the commit into st.
func (s *Store) appendCommit(ctx context.Context, st *projection.State, c *events.Commit) error {
	msg, err := c.Encode()
	if errors.Is(err, events.ErrInvalidText) {
		// Text given by the caller (an actor, a reason, a name): nothing
		// is written.
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if err != nil {
		return err
	}
	runTrace := ""
	if st.Snapshot != nil {
		runTrace = st.Snapshot.TraceParent
	}
	if tp := traceHeader(ctx, c, runTrace); tp != "" {
		msg.Header[HeaderTraceParent] = []string{tp}
	}
	actx, appended := s.tel.step(ctx, spanAppend, st.Instance)
	seq, err := s.log.Append(actx, st.Instance, msg, st.LastSeq)
	appended.end(err, seq, -1)
	if err != nil {
		return err
	}
	// The commit was built here, from payloads that own their bytes (the
	// deciders copy what they take from callers), so it folds as is.
	rec := events.Record{Seq: seq, Stored: c.Time, Hash: workflow.Sha256(msg.Data), Size: len(msg.Data), Commit: *c}
	if err := st.ApplyOrDiscard(rec); err != nil {
		// The log holds the commit but the projection refuses it: only a
		// bug can do that. Start the projection afresh next time.
		*st = projection.New(st.Instance)
		return fmt.Errorf("lifecycle: own commit at seq %d does not fold: %w", seq, err)
	}
	if s.afterCommit != nil {
		s.afterCommit(ctx, st)
	}
	return nil
}

// commitBuilder assembles the events of one decision.
type commitBuilder struct {
	s *Store
	c events.Commit
}

func (s *Store) newCommit(st *projection.State, command, actor string) (*commitBuilder, error) {
	id, t, err := s.ids.New()
	if err != nil {
		return nil, err
	}
	return &commitBuilder{s: s, c: events.Commit{ID: id, Instance: st.Instance, Time: t.UTC(), Command: command, Actor: actor, Prev: st.Head}}, nil
}

func (b *commitBuilder) add(run ulid.ULID, p events.Payload) error {
	id, err := b.s.ids.Next(b.c.Time)
	if err != nil {
		return err
	}
	b.addWithID(id, run, p)
	return nil
}

// addWithID adds an event whose id was drawn before (a claim's).
func (b *commitBuilder) addWithID(id, run ulid.ULID, p events.Payload) {
	b.c.Events = append(b.c.Events, events.Event{ID: id, Type: p.EventType(), Run: run, Data: p, Instance: b.c.Instance, Time: b.c.Time, Schema: events.SchemaVersion})
}

// commitOf builds a commit of payloads, all of run.
func (s *Store) commitOf(st *projection.State, command, actor string, run ulid.ULID, ps ...events.Payload) (*events.Commit, error) {
	b, err := s.newCommit(st, command, actor)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if err := b.add(run, p); err != nil {
			return nil, err
		}
	}
	return &b.c, nil
}

// newRunID returns a fresh run id.
func (s *Store) newRunID() (ulid.ULID, error) {
	id, _, err := s.ids.New()
	return id, err
}

type actorKey struct{}

// WithActor returns a context that records actor (a user, a worker id) as
// the author of the commits written with it.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom returns the actor recorded by [WithActor], or "".
func ActorFrom(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

// cache is a bounded LRU of instance projections. Each entry has its own
// lock, held for the whole operation on that instance.
type cache struct {
	mu      sync.Mutex
	size    int
	entries map[string]*list.Element
	lru     list.List // of *entry, most recent first
}

type entry struct {
	id   string
	mu   sync.Mutex
	refs int // operations holding it; guarded by cache.mu
	st   projection.State
	// checkpointed is st.Commits when the instance's checkpoint was last
	// written or read by this store.
	checkpointed int
}

func newCache(size int) *cache {
	return &cache{size: size, entries: make(map[string]*list.Element)}
}

func (c *cache) acquire(id string) *entry {
	c.mu.Lock()
	var e *entry
	if el, ok := c.entries[id]; ok {
		c.lru.MoveToFront(el)
		e = el.Value.(*entry)
	} else {
		e = &entry{id: id, st: projection.New(id)}
		if c.size > 0 {
			c.entries[id] = c.lru.PushFront(e)
			c.evict()
		}
	}
	e.refs++
	c.mu.Unlock()
	e.mu.Lock()
	return e
}

func (c *cache) release(e *entry) {
	e.mu.Unlock()
	c.mu.Lock()
	e.refs--
	c.mu.Unlock()
}

// evict drops least recently used entries beyond the size that nobody
// holds. Called with c.mu held.
func (c *cache) evict() {
	for el := c.lru.Back(); el != nil && c.lru.Len() > c.size; {
		prev := el.Prev()
		if e := el.Value.(*entry); e.refs == 0 {
			c.lru.Remove(el)
			delete(c.entries, e.id)
		}
		el = prev
	}
}
