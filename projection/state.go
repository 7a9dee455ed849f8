package projection

import (
	"errors"
	"fmt"
	"iter"
	"maps"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/workflow"
)

// State is an instance's current state: the fold of its history.
type State struct {
	Instance string             // the instance id
	Exists   bool               // a snapshot exists (created and not deleted)
	Snapshot *workflow.Snapshot // the snapshot; nil unless Exists
	Run      ulid.ULID          // the current run, or the last one after a delete; zero before the first
	Runs     int                // runs created so far

	// Signals holds the pending cancel and pause requests.
	Signals map[workflow.SignalKind]workflow.SignalRequest

	LastSeq  uint64          // sequence of the last commit folded; 0 for none
	Head     workflow.Hash32 // hash of the last commit folded: the next commit's Prev
	LastTime time.Time       // time of the last commit folded
	Commits  int             // commits folded
	Events   int             // events folded
	Bytes    int             // payload bytes folded
}

// New returns the state of an instance with no history.
func New(instance string) State { return State{Instance: instance} }

// Clone returns a deep copy of s.
func (s *State) Clone() State {
	c := *s
	c.Snapshot = s.Snapshot.Clone()
	c.Signals = maps.Clone(s.Signals)
	return c
}

// Signal returns the pending request of kind k.
func (s *State) Signal(k workflow.SignalKind) (workflow.SignalRequest, bool) {
	r, ok := s.Signals[k]
	return r, ok
}

// Status returns the snapshot's status; ok is false when no snapshot exists.
func (s *State) Status() (st workflow.Status, ok bool) {
	if !s.Exists {
		return st, false
	}
	return s.Snapshot.State.AsStatus(), true
}

// ErrInvalidHistory is matched by every [*HistoryError]: a history that
// decodes but cannot be folded (a broken hash chain, an event that is not
// allowed in the state it finds).
var ErrInvalidHistory = errors.New("projection: invalid history")

// HistoryError says which commit of which instance breaks the history.
type HistoryError struct {
	Instance string
	Seq      uint64      // the commit's stream sequence
	Event    int         // the event's index in the commit, or -1 for the commit itself
	Type     events.Type // the event's type, if Event >= 0
	Reason   string
}

func (e *HistoryError) Error() string {
	s := fmt.Sprintf("projection: instance %q seq %d", e.Instance, e.Seq)
	if e.Event >= 0 {
		s += fmt.Sprintf(" event %d (%s)", e.Event, e.Type)
	}
	return s + ": " + e.Reason
}

// Is reports whether target is [ErrInvalidHistory].
func (e *HistoryError) Is(target error) bool { return target == ErrInvalidHistory }

// Apply folds one commit into s. It checks the commit against the state:
// the sequence increases, the commit names this instance, its Prev is the
// hash of the previous commit, and each event is allowed where it finds the
// state. On error s is left unchanged.
func (s *State) Apply(rec events.Record) error {
	c := &rec.Commit
	fail := func(i int, format string, args ...any) error {
		e := &HistoryError{Instance: s.Instance, Seq: rec.Seq, Event: i, Reason: fmt.Sprintf(format, args...)}
		if i >= 0 {
			e.Type = c.Events[i].Type
		}
		return e
	}
	if s.Instance == "" {
		s.Instance = c.Instance
	}
	switch {
	case c.Instance != s.Instance:
		return fail(-1, "commit names instance %q", c.Instance)
	case rec.Seq <= s.LastSeq:
		return fail(-1, "sequence does not increase (last was %d)", s.LastSeq)
	case c.Prev != s.Head:
		if s.Commits == 0 {
			return fail(-1, "hash chain broken: first commit of the instance has prev %s (history truncated or rewritten)", c.Prev)
		}
		return fail(-1, "hash chain broken: prev is %s, the commit at seq %d hashes to %s", short(c.Prev), s.LastSeq, short(s.Head))
	case len(c.Events) == 0:
		return fail(-1, "commit has no events")
	}
	// A multi-event commit works on a copy so that a failure half-way
	// leaves s unchanged. A single event is applied in place: every rule
	// checks before it mutates.
	next := *s
	if len(c.Events) > 1 {
		next = s.Clone()
	}
	for i := range c.Events {
		if err := next.applyEvent(&c.Events[i], c.Time); err != nil {
			return fail(i, "%s", err.Error())
		}
	}
	next.LastSeq, next.Head, next.LastTime = rec.Seq, rec.Hash, c.Time
	next.Commits++
	next.Events += len(c.Events)
	next.Bytes += rec.Size
	*s = next
	return nil
}

func (s *State) applyEvent(e *events.Event, at time.Time) error {
	if e.Type != events.SnapshotCreated && e.Run != s.Run {
		return fmt.Errorf("event belongs to run %s, the current run is %s", e.Run, s.Run)
	}
	switch d := e.Data.(type) {
	case *events.SnapshotCreatedData:
		if s.Exists {
			return errors.New("snapshot created while one exists")
		}
		if len(s.Signals) > 0 {
			return errors.New("snapshot created while signals are pending")
		}
		if e.Run.IsZero() || e.Run == s.Run {
			return fmt.Errorf("new run needs a new run id, got %s", e.Run)
		}
		snap := workflow.NewSnapshot(s.Instance, d.DefinitionHash, d.Input, at)
		snap.UpdatePosition(workflow.AtTaskPosition(d.FirstTask.ID), at)
		snap.SetTaskHint(d.FirstTask)
		snap.TraceParent = d.TraceParent
		s.Snapshot, s.Exists, s.Run = snap, true, e.Run
		s.Runs++
	case *events.SnapshotDeletedData:
		if !s.Exists {
			return errors.New("snapshot deleted while none exists")
		}
		s.Snapshot, s.Exists = nil, false
	case *events.SignalStoredData:
		if !s.Exists {
			return errors.New("signal stored while no snapshot exists")
		}
		if !d.Kind.Valid() {
			return fmt.Errorf("invalid signal kind %d", d.Kind)
		}
		if s.Signals == nil {
			s.Signals = make(map[workflow.SignalKind]workflow.SignalRequest, 2)
		}
		s.Signals[d.Kind] = d.Request()
	case *events.SignalClearedData:
		if _, ok := s.Signals[d.Kind]; !ok {
			return fmt.Errorf("%s signal cleared while none is pending", d.Kind)
		}
		delete(s.Signals, d.Kind)
	default:
		return fmt.Errorf("no projection rule for event type %q", e.Type)
	}
	return nil
}

func short(h workflow.Hash32) string { return h.String()[:16] }

// Until bounds a fold: it stops before the first commit whose sequence is
// greater than Seq (when Seq > 0) or whose time is after Time (when Time is
// not zero).
type Until struct {
	Seq  uint64
	Time time.Time
}

func (u Until) excludes(m events.Message, commitTime time.Time) bool {
	return u.Seq > 0 && m.Seq > u.Seq || !u.Time.IsZero() && commitTime.After(u.Time)
}

// Fold decodes and folds an instance's messages, in order, into a new
// state. It stops at the first error: a read error is returned as is,
// decoding errors are [*events.DecodeError]s and folding errors are
// [*HistoryError]s, each naming the sequence.
func Fold(instance string, msgs iter.Seq2[events.Message, error]) (State, error) {
	s := New(instance)
	err := s.CatchUp(msgs, Until{})
	return s, err
}

// FoldUntil is [Fold] bounded by u: the state as of a sequence or a time.
func FoldUntil(instance string, msgs iter.Seq2[events.Message, error], u Until) (State, error) {
	s := New(instance)
	err := s.CatchUp(msgs, u)
	return s, err
}

// CatchUp folds further messages into s (for example those read after
// s.LastSeq), stopping at u. On error s holds the state before the failing
// message.
func (s *State) CatchUp(msgs iter.Seq2[events.Message, error], u Until) error {
	for m, err := range msgs {
		if err != nil {
			return err
		}
		rec, err := events.Decode(m, s.Instance)
		if err != nil {
			return err
		}
		if u.excludes(m, rec.Commit.Time) {
			return nil
		}
		if err := s.Apply(rec); err != nil {
			return err
		}
	}
	return nil
}
