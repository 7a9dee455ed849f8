package audit

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// Statuses an instance can have beyond the workflow's own.
const (
	// StatusDeleted: the snapshot was deleted; the history remains.
	StatusDeleted = "deleted"
	// StatusCorrupt: the history does not decode or fold (run Verify).
	StatusCorrupt = "corrupt"
	// StatusNone: a history with no snapshot created (only in a corrupt
	// history).
	StatusNone = "none"
)

// Statuses lists the statuses a [Query] can select: the workflow
// statuses, [StatusDeleted] and [StatusCorrupt].
func Statuses() []string {
	var out []string
	for k := workflow.StatusInProgress; k <= workflow.StatusAwaitingSignal; k++ {
		out = append(out, k.String())
	}
	return append(out, StatusDeleted, StatusCorrupt)
}

// StatusOf names the status of a folded state: its workflow status,
// [StatusDeleted] or [StatusNone].
func StatusOf(s *projection.State) string {
	if st, ok := s.Status(); ok {
		return st.Kind.String()
	}
	if s.Runs > 0 {
		return StatusDeleted
	}
	return StatusNone
}

// Instance is what a search knows of an instance: the fold of its
// history and what the history says of who and what.
type Instance struct {
	ID      string
	Status  string // [StatusOf], or [StatusCorrupt] with Error
	Error   string // why the history does not fold, for StatusCorrupt
	Run     ulid.ULID
	Runs    int
	Commits int
	Events  int
	Bytes   int
	LastSeq uint64
	Updated time.Time // the last commit's time
	Created time.Time // the current run's creation; zero without a snapshot
	// Workflow names the run's workflow when the history names it
	// (docs/EVENTS.md "Names"); nil otherwise.
	Workflow   *workflow.Definition
	Definition workflow.DefinitionHash // the run's; zero without a snapshot
	StatusKind workflow.StatusKind     // the run's status, when Exists
	Exists     bool
	Signals    []workflow.SignalKind // pending requests
	Actors     []string              // every commit's actor and every cancel or pause requester, in order met
	Types      []events.Type         // every event type of the history, in order met
}

// WorkflowLabel is the run's workflow as a label: "name version", the
// name alone, or "" when the history names none.
func (in *Instance) WorkflowLabel() string {
	if in.Workflow == nil {
		return ""
	}
	if in.Workflow.Version != "" {
		return in.Workflow.Name + " " + in.Workflow.Version
	}
	return in.Workflow.Name
}

// Describe folds an instance's history into what a search knows of it.
// A history that does not fold gives an Instance with [StatusCorrupt]; a
// read error is returned.
func Describe(ctx context.Context, src Source, id string) (Instance, error) {
	return DescribeNamed(ctx, src, id, nil)
}

// DescribeNamed is [Describe] with a definition catalog: an instance
// whose history names no workflow is named by what cat knows of its
// definition (projection.State.Catalog; lifecycle.Store.Names reads the
// store's catalog). A nil cat names nothing.
func DescribeNamed(ctx context.Context, src Source, id string, cat projection.Catalog) (Instance, error) {
	d := NewDescriber(id)
	d.State.Catalog = cat
	if err := d.Fold(src.Read(ctx, id, 0)); err != nil {
		return d.Instance(), err
	}
	return d.Instance(), nil
}

// A Describer folds an instance's history, message by message, into its
// [Instance]: [Describe] in steps, for a reader that sees the history in
// pieces (the visibility index folds each new commit into the Describer
// it kept). Its fields are what it must keep between pieces.
type Describer struct {
	State   projection.State
	Actors  []string      // as [Instance.Actors]
	Types   []events.Type // as [Instance.Types]
	Refused string        // why the first refused message was refused; "" when none was
}

// NewDescriber returns a Describer of instance id that has folded nothing.
func NewDescriber(id string) *Describer { return &Describer{State: projection.New(id)} }

// Fold folds msgs, the next messages of the instance's history. A message
// that does not decode or fold is noted (the Instance is then
// [StatusCorrupt]) and the fold goes on, as [projection.State.Steps]
// does; a read error, or a refusal that is neither, is returned.
func (d *Describer) Fold(msgs iter.Seq2[events.Message, error]) error {
	for step, err := range d.State.Steps(msgs) {
		if err != nil {
			return err
		}
		if step.Err != nil {
			if !errors.Is(step.Err, events.ErrCorrupt) && !errors.Is(step.Err, projection.ErrInvalidHistory) {
				return step.Err
			}
			if d.Refused == "" {
				d.Refused = step.Err.Error()
			}
			continue
		}
		c := &step.Record.Commit
		if c.Actor != "" && !slices.Contains(d.Actors, c.Actor) {
			d.Actors = append(d.Actors, c.Actor)
		}
		for _, ev := range c.Events {
			if !slices.Contains(d.Types, ev.Type) {
				d.Types = append(d.Types, ev.Type)
			}
			if sd, ok := ev.Data.(*events.SignalStoredData); ok && sd.RequestedBy != "" && !slices.Contains(d.Actors, sd.RequestedBy) {
				d.Actors = append(d.Actors, sd.RequestedBy)
			}
		}
	}
	return nil
}

// Instance is what the messages folded so far say of the instance.
func (d *Describer) Instance() Instance {
	s := &d.State
	in := Instance{ID: s.Instance, Actors: slices.Clone(d.Actors), Types: slices.Clone(d.Types)}
	in.Status, in.Run, in.Runs, in.Commits, in.Events, in.Bytes, in.LastSeq, in.Updated, in.Exists =
		StatusOf(s), s.Run, s.Runs, s.Commits, s.Events, s.Bytes, s.LastSeq, s.LastTime, s.Exists
	if wf, ok := s.Workflow(); ok {
		in.Workflow = wf
	}
	if snap := s.Snapshot; snap != nil {
		in.Definition, in.Created = snap.DefinitionHash, snap.CreatedAt
	}
	if st, ok := s.Status(); ok {
		in.StatusKind = st.Kind
	}
	for _, k := range workflow.SignalKinds() {
		if _, ok := s.Signals[k]; ok {
			in.Signals = append(in.Signals, k)
		}
	}
	if d.Refused != "" {
		in.Status, in.Error = StatusCorrupt, d.Refused
	}
	return in
}

// Query selects instances; every filter set must hold (the zero Query
// selects all).
type Query struct {
	Statuses     []string  // one of these statuses ([Statuses])
	Since, Until time.Time // the last change at or after Since, at or before Until
	// Workflow: the run is of this workflow, as its history names it:
	// "name", or "name version" for one version.
	Workflow string
	// Definition: the run's definition hash starts with this hex prefix.
	Definition string
	// Actor: a commit was made by Actor, or Actor requested a cancel or
	// pause.
	Actor string
	// Signal: a request of this kind is pending.
	Signal *workflow.SignalKind
	// Waiting: the run is parked with this status (workflow.StatusWaiting
	// for a delay, workflow.StatusAwaitingSignal for an external event).
	Waiting *workflow.StatusKind
	// CreatedSince: the current run was created at or after it.
	CreatedSince time.Time
	// EventType: the history holds an event of this type.
	EventType events.Type
}

// Check reports what is wrong with q, as an error matching
// [ErrInvalidQuery].
func (q *Query) Check() error {
	for _, s := range q.Statuses {
		if !slices.Contains(Statuses(), s) {
			return fmt.Errorf("%w: unknown status %q: use %s", ErrInvalidQuery, s, strings.Join(Statuses(), ", "))
		}
	}
	if d := strings.ToLower(q.Definition); strings.Trim(d, "0123456789abcdef") != "" || len(d) > 64 {
		return fmt.Errorf("%w: definition %q: want the start of a definition hash, in hex", ErrInvalidQuery, q.Definition)
	}
	if q.Signal != nil && !q.Signal.Valid() {
		return fmt.Errorf("%w: signal kind %d", ErrInvalidQuery, *q.Signal)
	}
	if w := q.Waiting; w != nil && *w != workflow.StatusWaiting && *w != workflow.StatusAwaitingSignal {
		return fmt.Errorf("%w: waiting on %s: want waiting (a delay) or awaiting_signal", ErrInvalidQuery, *w)
	}
	if q.EventType != "" && !events.Known(q.EventType) {
		return fmt.Errorf("%w: event type %q is not one (docs/EVENTS.md lists them)", ErrInvalidQuery, q.EventType)
	}
	return nil
}

// ErrInvalidQuery is matched by the errors of [Query.Check].
var ErrInvalidQuery = errors.New("audit: invalid query")

// Matches reports whether an instance passes the query.
func (q *Query) Matches(in *Instance) bool {
	name := ""
	if in.Workflow != nil {
		name = in.Workflow.Name
	}
	switch {
	case len(q.Statuses) > 0 && !slices.Contains(q.Statuses, in.Status),
		!q.Since.IsZero() && in.Updated.Before(q.Since),
		!q.Until.IsZero() && in.Updated.After(q.Until),
		q.Workflow != "" && q.Workflow != name && q.Workflow != in.WorkflowLabel(),
		q.Definition != "" && (in.Definition.IsZero() || !strings.HasPrefix(in.Definition.String(), strings.ToLower(q.Definition))),
		q.Actor != "" && !slices.Contains(in.Actors, q.Actor),
		q.Signal != nil && !slices.Contains(in.Signals, *q.Signal),
		q.Waiting != nil && (!in.Exists || in.StatusKind != *q.Waiting),
		!q.CreatedSince.IsZero() && (in.Created.IsZero() || in.Created.Before(q.CreatedSince)),
		q.EventType != "" && !slices.Contains(in.Types, q.EventType):
		return false
	}
	return true
}
