package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
)

// Config configures a [Store]. The zero value is valid.
type Config struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Entropy feeds the ULIDs of commits, events and runs; nil means a
	// cryptographically random source.
	Entropy io.Reader
	// MaxAttempts bounds how often one operation decides and appends
	// before it gives up with ErrConcurrentModification; 0 means 16.
	MaxAttempts int
	// MaxPayload bounds an input or output, in bytes; 0 means 512 KiB.
	// Larger payloads are refused with ErrInvalidRequest before anything
	// is sent.
	MaxPayload int
	// Logger receives conflict retries at debug level; nil means slog.Default().
	Logger *slog.Logger
}

// Store is the persistence engine of a workflow runtime: every operation
// reads the instance's projection, decides, and appends the resulting
// events as one commit with an optimistic sequence check. It is safe for
// concurrent use.
type Store struct {
	log         Log
	ids         *events.IDSource
	now         func() time.Time
	maxAttempts int
	maxPayload  int
	logger      *slog.Logger
}

// New returns a store writing to log.
func New(log Log, cfg Config) (*Store, error) {
	if log == nil {
		return nil, fmt.Errorf("%w: nil log", ErrInvalidConfig)
	}
	if cfg.MaxAttempts < 0 || cfg.MaxPayload < 0 {
		return nil, fmt.Errorf("%w: MaxAttempts and MaxPayload must not be negative", ErrInvalidConfig)
	}
	s := &Store{log: log, now: cfg.Now, maxAttempts: cfg.MaxAttempts, maxPayload: cfg.MaxPayload, logger: cfg.Logger}
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
	s.ids = events.NewIDSource(s.now, cfg.Entropy)
	return s, nil
}

// Log returns the store's event log.
func (s *Store) Log() Log { return s.log }

// Load returns the instance's projected state, read from its whole
// history. A state with Exists false is not an error. Errors: invalid id
// ([ErrInvalidInstanceID]), a corrupt history ([events.ErrCorrupt],
// [projection.ErrInvalidHistory]) or the log's error, wrapped.
func (s *Store) Load(ctx context.Context, id string) (projection.State, error) {
	if err := validateID(id); err != nil {
		return projection.State{}, err
	}
	st := projection.New(id)
	if err := s.catchUp(ctx, &st); err != nil {
		return projection.State{}, fmt.Errorf("lifecycle: load %q: %w", id, err)
	}
	return st, nil
}

func (s *Store) catchUp(ctx context.Context, st *projection.State) error {
	return st.CatchUp(s.log.Read(ctx, st.Instance, st.LastSeq), projection.Until{})
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
	b.c.Events = append(b.c.Events, events.Event{ID: id, Type: p.EventType(), Run: run, Data: p, Instance: b.c.Instance, Time: b.c.Time, Schema: events.SchemaVersion})
	return nil
}

// newRunID returns a fresh run id.
func (s *Store) newRunID() (ulid.ULID, error) {
	id, _, err := s.ids.New()
	return id, err
}

// appendCommit encodes c and appends it expecting st.LastSeq. On success it
// folds the commit into st.
func (s *Store) appendCommit(ctx context.Context, st *projection.State, c *events.Commit) error {
	msg, err := c.Encode()
	if err != nil {
		return err
	}
	seq, err := s.log.Append(ctx, st.Instance, msg, st.LastSeq)
	if err != nil {
		return err
	}
	msg.Seq = seq
	rec, err := events.Decode(msg, st.Instance)
	if err != nil {
		return fmt.Errorf("lifecycle: re-decode own commit: %w", err)
	}
	return st.Apply(rec)
}

// decision is what a decider returns: a commit to append, or nothing to
// write. A decider does no I/O.
type decider func(st *projection.State) (*events.Commit, error)

// run is the write loop every operation shares: catch up, decide, append
// with the sequence the decision was made on; on a conflict, catch up and
// decide again, at most maxAttempts times. It returns the state after the
// commit (or as read, when the decider wrote nothing).
//
// If an append's outcome is unknown and a later read finds that commit in
// the history, the commit is taken as landed.
func (s *Store) run(ctx context.Context, op string, st *projection.State, decide decider) error {
	var last error
	var pending ulid.ULID
	for attempt := 1; attempt <= s.maxAttempts; attempt++ {
		if attempt > 1 || st.LastSeq == 0 && st.Commits == 0 {
			found, err := s.catchUpFinding(ctx, st, pending)
			if err != nil {
				return err
			}
			if found {
				return nil
			}
		}
		c, err := decide(st)
		if err != nil || c == nil {
			return err
		}
		pending = c.ID
		err = s.appendCommit(ctx, st, c)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrWrongSequence) {
			return err
		}
		last = err
		s.logger.LogAttrs(ctx, slog.LevelDebug, "runlog: conflict, deciding again",
			slog.String("op", op), slog.String("instance", st.Instance), slog.Uint64("seq", st.LastSeq), slog.Int("attempt", attempt))
	}
	return &ConcurrentModificationError{ID: st.Instance, Op: op, Attempts: s.maxAttempts, Last: last}
}

// catchUpFinding folds new messages into st and reports whether a commit
// with id pending was among them (it landed although its append reported
// a conflict or failed).
func (s *Store) catchUpFinding(ctx context.Context, st *projection.State, pending ulid.ULID) (bool, error) {
	found := false
	for m, err := range s.log.Read(ctx, st.Instance, st.LastSeq) {
		if err != nil {
			return false, err
		}
		rec, err := events.Decode(m, st.Instance)
		if err != nil {
			return false, err
		}
		if err := st.Apply(rec); err != nil {
			return false, err
		}
		if !pending.IsZero() && rec.Commit.ID == pending {
			found = true
		}
	}
	return found, nil
}
