package projection

import (
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
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

	// RevisionSeq is the sequence of the last commit that changed the
	// snapshot (signals and buffered events do not count): the Seq of
	// [State.Revision]. A checkpoint written from a view older than it is
	// stale.
	RevisionSeq uint64

	// Signals holds the pending cancel and pause requests.
	Signals map[workflow.SignalKind]workflow.SignalRequest
	// Buffered holds the external events not yet consumed, oldest first,
	// per name.
	Buffered map[string][]Buffered
	// Results holds every task output of the current run, kept after the
	// run finishes (a finished snapshot drops them, as Sayiir's does).
	Results map[workflow.TaskID][]byte
	// Claims holds the claims on tasks of the current run that were not
	// released (docs/WORKERS.md): who claimed each task and when. Whether
	// a claim's lease is still live is the lease store's to say; a new
	// run, a delete and a terminal state end every claim.
	Claims map[workflow.TaskID]Claim
	// Released holds, per task of the current run, the last claim that
	// was released: a lease still held under that claim is one its
	// worker failed (or has yet) to remove, which the next claim may end
	// (lifecycle.Store.ClaimTask). A new run, a delete and a terminal
	// state clear it.
	Released map[workflow.TaskID]ulid.ULID
	// Definitions holds the definitions whose names the history records
	// (snapshot.created's workflow), by hash: what reads the history by
	// name ([State.TaskName], [State.Workflow]).
	Definitions map[workflow.DefinitionHash]*workflow.Definition
	// Catalog, when set, names a definition the history does not name
	// itself: [State.Workflow] and [State.TaskName] ask it after
	// Definitions (readers set it to the store's definition catalog,
	// lifecycle.Store.Definition). It is not part of the fold: Apply
	// never reads it and checkpoints do not keep it.
	Catalog Catalog `json:"-"`

	LastSeq  uint64          // sequence of the last commit folded; 0 for none
	Head     workflow.Hash32 // hash of the last commit folded: the next commit's Prev
	LastTime time.Time       // time of the last commit folded
	Commits  int             // commits folded
	Events   int             // events folded
	Bytes    int             // payload bytes folded

	pastRuns map[ulid.ULID]struct{} // every run id used so far: a run id is never reused
}

// Buffered is an external event waiting to be consumed.
type Buffered struct {
	ID      ulid.ULID // the EventSent event's id
	Payload []byte
	SentAt  time.Time
}

// Claim is a worker's claim on a task, as its TaskClaimed event recorded
// it.
type Claim struct {
	ID     ulid.ULID     // the TaskClaimed event's id: the claim's id
	Worker string        // the worker that holds it
	TTL    time.Duration // the lease's time to live as asked; 0: it never expires
	At     time.Time     // when the claim was committed
}

// Revision identifies a version of an instance's snapshot: its run and
// the sequence of the last commit that changed it. A writer acts on a
// revision; lifecycle.Revision is this type.
type Revision struct {
	Run ulid.ULID
	Seq uint64
}

// Revision returns the snapshot's current revision.
func (s *State) Revision() Revision { return Revision{Run: s.Run, Seq: s.RevisionSeq} }

// A Catalog returns the names of the definition with a hash, if it knows
// them ([State.Catalog]).
type Catalog func(workflow.DefinitionHash) (*workflow.Definition, bool)

// Workflow returns the names of the current (or last) run's definition,
// when the history records them or, failing that, [State.Catalog] knows
// them.
func (s *State) Workflow() (*workflow.Definition, bool) {
	if s.Snapshot == nil {
		return nil, false
	}
	if d, ok := s.Definitions[s.Snapshot.DefinitionHash]; ok {
		return d, true
	}
	if s.Catalog != nil {
		return s.Catalog(s.Snapshot.DefinitionHash)
	}
	return nil, false
}

// TaskName returns the name of a task of the current run's definition,
// when the history records it (or [State.Catalog] knows it).
func (s *State) TaskName(id workflow.TaskID) (string, bool) {
	d, _ := s.Workflow()
	return d.TaskName(id)
}

// New returns the state of an instance with no history.
func New(instance string) State { return State{Instance: instance} }

// Clone returns a deep copy of s: no map, slice or byte is shared.
func (s *State) Clone() State {
	c := s.structural()
	c.Snapshot = s.Snapshot.Clone()
	for k, v := range c.Results {
		c.Results[k] = slices.Clone(v)
	}
	for _, q := range c.Buffered {
		for i := range q {
			q[i].Payload = slices.Clone(q[i].Payload)
		}
	}
	return c
}

// structural returns a copy that shares byte slices (which the fold never
// mutates) but no map or struct the fold mutates.
func (s *State) structural() State {
	c := *s
	if s.Snapshot != nil {
		snap := *s.Snapshot
		snap.State.CompletedTasks = maps.Clone(s.Snapshot.State.CompletedTasks)
		snap.State.Position = s.Snapshot.State.Position.Clone()
		snap.TaskRetries = maps.Clone(s.Snapshot.TaskRetries)
		snap.LoopIterations = maps.Clone(s.Snapshot.LoopIterations)
		c.Snapshot = &snap
	}
	c.Signals = maps.Clone(s.Signals)
	c.Results = maps.Clone(s.Results)
	c.Claims = maps.Clone(s.Claims)
	c.Released = maps.Clone(s.Released)
	c.Definitions = maps.Clone(s.Definitions) // the definitions themselves are never changed once folded
	c.pastRuns = maps.Clone(s.pastRuns)
	if s.Buffered != nil {
		c.Buffered = make(map[string][]Buffered, len(s.Buffered))
		for k, v := range s.Buffered {
			c.Buffered[k] = slices.Clone(v)
		}
	}
	return c
}

// Pending returns the number of buffered external events.
func (s *State) Pending() int {
	n := 0
	for _, b := range s.Buffered {
		n += len(b)
	}
	return n
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

// ApplyUnlinked is [State.Apply] for a caller that judges the hash chain
// itself (an audit that reports a broken link once and folds on from the
// commit that broke it): rec is folded as if it linked to s's head. On
// error s is unchanged, its head included.
func (s *State) ApplyUnlinked(rec events.Record) error { return s.applyUnlinked(rec, true) }

func (s *State) applyUnlinked(rec events.Record, atomic bool) error {
	head := s.Head
	s.Head = rec.Commit.Prev
	if err := s.apply(rec, atomic); err != nil {
		s.Head = head
		return err
	}
	return nil
}

// Apply folds one commit into s. It checks the commit against the state:
// the sequence increases, the commit names this instance, its Prev is the
// hash of the previous commit, and each event is allowed where it finds the
// state. On error s is left unchanged.
func (s *State) Apply(rec events.Record) error { return s.apply(rec, true) }

// ApplyOrDiscard is [State.Apply] for a caller that throws s away when the
// commit is refused: a store folding the commit it has just appended
// (which only a bug can refuse; the store then reads the instance
// afresh). A commit of several events is folded in place, without the
// copy of every map of the state that keeps s unchanged on error (a few
// microseconds for a checkpoint that also releases a claim), so on error
// s is partly folded and must not be used again. A state it folds equals
// the one Apply folds.
func (s *State) ApplyOrDiscard(rec events.Record) error { return s.apply(rec, false) }

// apply is Apply; atomic false folds a commit of several events in place
// (ApplyOrDiscard).
func (s *State) apply(rec events.Record, atomic bool) error {
	c := &rec.Commit
	instance := s.Instance
	if instance == "" {
		instance = c.Instance
	}
	fail := func(i int, format string, args ...any) error {
		e := &HistoryError{Instance: instance, Seq: rec.Seq, Event: i, Reason: fmt.Sprintf(format, args...)}
		if i >= 0 {
			e.Type = c.Events[i].Type
		}
		return e
	}
	switch {
	case c.Instance != instance:
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
	// leaves s unchanged, unless the caller discards s on failure. A
	// single event is applied in place: every rule checks before it
	// mutates.
	next := *s
	if atomic && len(c.Events) > 1 {
		next = s.structural()
	}
	next.Instance = instance
	changed := false
	for i := range c.Events {
		if err := next.applyEvent(&c.Events[i], c.Time); err != nil {
			return fail(i, "%s", err.Error())
		}
		switch c.Events[i].Type {
		case events.SignalStored, events.SignalCleared, events.EventSent, events.EventConsumed, events.TaskClaimed, events.TaskClaimReleased:
			// Not a change of the snapshot: a worker's revision stays
			// valid across its own claim.
		default:
			changed = true
		}
	}
	if !next.Exists && len(next.Signals) > 0 {
		return fail(-1, "commit leaves %d signal(s) pending on an instance without a snapshot", len(next.Signals))
	}
	if changed {
		next.RevisionSeq = rec.Seq
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
		if _, used := s.pastRuns[e.Run]; e.Run.IsZero() || used {
			return fmt.Errorf("new run needs a new run id, got %s, already used", e.Run)
		}
		if len(s.Buffered) > 0 {
			return errors.New("snapshot created while external events are buffered")
		}
		snap := workflow.NewSnapshot(s.Instance, d.DefinitionHash, d.Input, at)
		snap.UpdatePosition(workflow.AtTaskPosition(d.FirstTask.ID), at)
		snap.SetTaskHint(d.FirstTask)
		snap.TraceParent = d.TraceParent
		if s.pastRuns == nil {
			s.pastRuns = make(map[ulid.ULID]struct{}, 1)
		}
		s.pastRuns[e.Run] = struct{}{}
		s.Snapshot, s.Exists, s.Run, s.Results, s.Claims, s.Released = snap, true, e.Run, nil, nil, nil
		s.Runs++
		if d.Workflow != nil {
			if s.Definitions == nil {
				s.Definitions = make(map[workflow.DefinitionHash]*workflow.Definition, 1)
			}
			s.Definitions[d.DefinitionHash] = d.Workflow.Clone()
		}
	case *events.SnapshotDeletedData:
		if !s.Exists {
			return errors.New("snapshot deleted while none exists")
		}
		// Buffered external events go with the snapshot. Pending signals
		// must be cleared by their own events in the same commit (checked
		// once the commit is folded).
		s.Snapshot, s.Exists, s.Buffered, s.Claims, s.Released = nil, false, nil, nil, nil
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
	case *events.DefinitionRegisteredData:
		// A catalog's history: one definition, named by its hash, and
		// nothing else (lifecycle.Store.RegisterDefinition).
		switch {
		case s.Runs > 0 || len(s.Signals) > 0 || len(s.Buffered) > 0:
			return errors.New("definition registered in an instance's history (it belongs in the definition catalog)")
		case len(s.Definitions) > 0:
			return errors.New("definition registered twice in one catalog history")
		case d.DefinitionHash.IsZero() || s.Instance != d.DefinitionHash.String():
			return fmt.Errorf("definition %s registered in the catalog history of %q (each has its own, named by its hash)", d.DefinitionHash, s.Instance)
		case d.Workflow == nil:
			return errors.New("definition registered without its names")
		}
		if err := d.Workflow.Validate(); err != nil {
			return err
		}
		s.Definitions = map[workflow.DefinitionHash]*workflow.Definition{d.DefinitionHash: d.Workflow.Clone()}
	default:
		return s.applyRunEvent(e, at)
	}
	return nil
}

// applyRunEvent folds the events that change a live run. Each rule checks
// before it mutates.
func (s *State) applyRunEvent(e *events.Event, at time.Time) error {
	if !s.Exists {
		return fmt.Errorf("%s while no snapshot exists", e.Type)
	}
	snap := s.Snapshot
	kind := snap.State.Kind
	if kind.Terminal() && e.Type != events.EventConsumed {
		return fmt.Errorf("%s after the run reached the terminal state %s", e.Type, kind)
	}
	switch d := e.Data.(type) {
	case *events.TaskCompletedData:
		if kind != workflow.InProgress && kind != workflow.Paused {
			return fmt.Errorf("task completed in state %s", kind)
		}
		s.setResult(d.TaskID, d.Output)
		t := d.TaskID
		snap.State.LastCompletedTask = &t
		snap.UpdatedAt = at
	case *events.CheckpointSavedData:
		if d.Position != nil && kind != workflow.InProgress {
			return fmt.Errorf("position changed in state %s", kind)
		}
		if (len(d.Completed) > 0 || len(d.Removed) > 0 || d.LastCompletedTask != nil) && kind != workflow.InProgress && kind != workflow.Paused {
			return fmt.Errorf("task results changed in state %s", kind)
		}
		applyCheckpoint(s, d, at)
	case *events.WorkflowCompletedData:
		snap.MarkCompleted(d.Output, at)
		s.Claims, s.Released = nil, nil
	case *events.WorkflowFailedData:
		snap.MarkFailed(d.Error, at)
		s.Claims, s.Released = nil, nil
	case *events.WorkflowCancelledData:
		snap.MarkCancelled(workflow.SignalRequest{Reason: d.Reason, RequestedBy: d.By, RequestedAt: d.At}, d.InterruptedAtTask, at)
		s.Claims, s.Released = nil, nil
	case *events.TaskClaimedData:
		return s.applyClaim(e, d, at)
	case *events.TaskClaimReleasedData:
		c, ok := s.Claims[d.TaskID]
		if !ok || c.ID != d.Claim || c.Worker != d.Worker {
			return fmt.Errorf("claim %s of %q on task %s released, but it is not the task's claim", d.Claim, d.Worker, d.TaskID)
		}
		delete(s.Claims, d.TaskID)
		if s.Released == nil {
			s.Released = make(map[workflow.TaskID]ulid.ULID, 1)
		}
		s.Released[d.TaskID] = d.Claim
	case *events.WorkflowPausedData:
		if !snap.MarkPaused(workflow.SignalRequest{Reason: d.Reason, RequestedBy: d.By, RequestedAt: d.At}, at) {
			return fmt.Errorf("paused in state %s", kind)
		}
	case *events.WorkflowUnpausedData:
		if !snap.MarkUnpaused(at) {
			return fmt.Errorf("unpaused in state %s", kind)
		}
	case *events.EventSentData:
		if d.Name == "" {
			return errors.New("external event with an empty name")
		}
		if s.Buffered == nil {
			s.Buffered = make(map[string][]Buffered)
		}
		s.Buffered[d.Name] = append(s.Buffered[d.Name], Buffered{ID: e.ID, Payload: d.Payload, SentAt: at})
	case *events.EventConsumedData:
		q := s.Buffered[d.Name]
		if len(q) == 0 || q[0].ID != d.EventID {
			return fmt.Errorf("consumed external event %s of %q is not the oldest buffered one", d.EventID, d.Name)
		}
		if len(q) == 1 {
			delete(s.Buffered, d.Name)
		} else {
			s.Buffered[d.Name] = q[1:]
		}
	default:
		return fmt.Errorf("no projection rule for event type %q", e.Type)
	}
	return nil
}

func (s *State) setResult(id workflow.TaskID, out []byte) {
	snap := s.Snapshot
	if snap.State.CompletedTasks == nil {
		snap.State.CompletedTasks = make(map[workflow.TaskID][]byte)
	}
	snap.State.CompletedTasks[id] = out
	if s.Results == nil {
		s.Results = make(map[workflow.TaskID][]byte)
	}
	s.Results[id] = out
}

func applyCheckpoint(s *State, d *events.CheckpointSavedData, at time.Time) {
	snap := s.Snapshot
	if d.Position != nil {
		snap.State.Position = d.Position.Clone()
	}
	for _, o := range d.Completed {
		s.setResult(o.Task, o.Output)
	}
	for _, id := range d.Removed {
		delete(snap.State.CompletedTasks, id)
		delete(s.Results, id)
	}
	last := d.LastCompletedTask
	if last == nil && len(d.Completed) == 1 {
		// A single result added is the last completed task unless the
		// checkpoint names another.
		last = &d.Completed[0].Task
	}
	if last != nil && (snap.State.LastCompletedTask == nil || *snap.State.LastCompletedTask != *last) {
		t := *last
		snap.State.LastCompletedTask = &t
	}
	if d.Hint != nil {
		snap.SetTaskHint(workflow.TaskHint{Priority: d.Hint.Priority, Tags: d.Hint.Tags})
	}
	if d.ClearDeadline {
		snap.TaskDeadline = nil
	}
	if d.Deadline != nil {
		dl := *d.Deadline
		snap.TaskDeadline = &dl
	}
	// The maps below are usually empty: a length check costs less than
	// starting an iteration.
	if len(d.Retries) > 0 {
		if snap.TaskRetries == nil {
			snap.TaskRetries = make(map[workflow.TaskID]workflow.TaskRetryState, len(d.Retries))
		}
		for id, r := range d.Retries {
			snap.TaskRetries[id] = r
		}
	}
	for _, id := range d.RemovedRetries {
		delete(snap.TaskRetries, id)
	}
	if len(d.Loops) > 0 {
		if snap.LoopIterations == nil {
			snap.LoopIterations = make(map[workflow.TaskID]uint32, len(d.Loops))
		}
		for id, n := range d.Loops {
			snap.LoopIterations[id] = n
		}
	}
	for _, id := range d.RemovedLoops {
		delete(snap.LoopIterations, id)
	}
	if d.TraceParent != nil {
		snap.TraceParent = *d.TraceParent
	}
	snap.UpdatedAt = at
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
	for st, err := range s.steps(msgs, u) {
		if err != nil {
			return err
		}
		if st.Err != nil {
			return st.Err
		}
	}
	return nil
}

// ApplyMessage decodes m as a commit of s's instance and folds it into s,
// returning the record: [State.Step] for a caller that stops at the first
// error (a catch-up). Errors are those of [events.Decode] and
// [State.Apply]; on error s is unchanged.
func (s *State) ApplyMessage(m events.Message) (events.Record, error) {
	st := s.Step(m, StepOptions{})
	return st.Record, st.Err
}

// StepOptions says how [State.Step] reads and folds a message.
type StepOptions struct {
	// Hash is workflow.Sha256 of the message's data when the caller has
	// computed it already (it is then not computed again); zero means
	// compute it. A wrong hash gives a wrong record.
	Hash workflow.Hash32
	// Unlinked folds the commit as [State.ApplyUnlinked] does: the caller
	// judges the hash chain (an audit reports a broken link once, as a
	// chain problem, and folds on from the commit that broke it).
	Unlinked bool
	// Discard folds the commit as [State.ApplyOrDiscard] does, for a
	// caller that throws the state away when the step fails: after a
	// refused commit s is partly folded (a message that does not decode
	// still leaves it unchanged).
	Discard bool
}

// Step decodes m as a commit of s's instance and folds it into s: the one
// decode-then-fold step of every reader of a history (the store's
// catch-ups, replay show and stats, audit's verify and import). The
// step's Err is a [*events.DecodeError] when m does not decode (wrapping
// [events.ErrNewerSchema] or [events.ErrForeignCommit] when that is why)
// and a [*HistoryError] when the projection refuses it; on error s is
// unchanged.
func (s *State) Step(m events.Message, o StepOptions) Step {
	st := Step{Message: m}
	st.Record, _, st.Err = s.applyMessage(m, Until{}, o)
	return st
}

// applyMessage is the one decode-then-fold step: it decodes m, leaves it
// out (excluded) when u excludes it, and folds it.
func (s *State) applyMessage(m events.Message, u Until, o StepOptions) (rec events.Record, excluded bool, err error) {
	if u.Seq > 0 && m.Seq > u.Seq {
		return rec, true, nil
	}
	if o.Hash.IsZero() {
		rec, err = events.Decode(m, s.Instance)
	} else {
		rec, err = events.DecodeHashed(m, s.Instance, o.Hash)
	}
	if err != nil {
		return rec, false, err
	}
	if u.excludes(m, rec.Commit.Time) {
		return rec, true, nil
	}
	if o.Unlinked {
		return rec, false, s.applyUnlinked(rec, !o.Discard)
	}
	return rec, false, s.apply(rec, !o.Discard)
}

// Step is one message of an instance's history as the fold met it.
type Step struct {
	Message events.Message
	// Record is the decoded commit; its Commit.ID is zero when the
	// message does not decode.
	Record events.Record
	// Err says why the message was not folded: a [*events.DecodeError]
	// when it does not decode, a [*HistoryError] when the projection
	// refused it (the state is unchanged); nil when it was folded.
	Err error
}

// Decoded reports whether the step's message decoded.
func (st *Step) Decoded() bool { return !st.Record.Commit.ID.IsZero() }

// Steps folds msgs into s one message at a time, yielding each step after
// it (s then holds the state after it): the loop of every reader that
// shows or counts a history as well as folding it (replay show, stats).
// Unlike [State.CatchUp] it goes on after a message that does not decode
// or that the projection refuses: that step carries the error and leaves
// s unchanged, so the commits after it are judged against the state
// before it (a broken chain refuses them too). A read error is yielded as
// the second value and ends the walk.
func (s *State) Steps(msgs iter.Seq2[events.Message, error]) iter.Seq2[*Step, error] {
	return s.steps(msgs, Until{})
}

func (s *State) steps(msgs iter.Seq2[events.Message, error], u Until) iter.Seq2[*Step, error] {
	return func(yield func(*Step, error) bool) {
		for m, err := range msgs {
			if err != nil {
				yield(nil, err)
				return
			}
			st := &Step{Message: m}
			var excluded bool
			st.Record, excluded, st.Err = s.applyMessage(m, u, StepOptions{})
			if excluded || !yield(st, nil) {
				return
			}
		}
	}
}

// applyClaim folds a TaskClaimed event: a claim on a task of an
// in-progress run that has no result yet, with no claim on it, or taking
// over the claim the task has.
func (s *State) applyClaim(e *events.Event, d *events.TaskClaimedData, at time.Time) error {
	if k := s.Snapshot.State.Kind; k != workflow.InProgress {
		return fmt.Errorf("task %s claimed in state %s", d.TaskID, k)
	}
	if d.Worker == "" {
		return fmt.Errorf("task %s claimed by an empty worker id", d.TaskID)
	}
	if _, done := s.Results[d.TaskID]; done {
		return fmt.Errorf("task %s claimed after it completed", d.TaskID)
	}
	cur, held := s.Claims[d.TaskID]
	switch {
	case held && d.TakenOver == nil:
		return fmt.Errorf("task %s claimed by %q while %q holds claim %s", d.TaskID, d.Worker, cur.Worker, cur.ID)
	case held && (d.TakenOver.Claim != cur.ID || d.TakenOver.Worker != cur.Worker):
		return fmt.Errorf("task %s claim takes over %s of %q, but the task's claim is %s of %q", d.TaskID, d.TakenOver.Claim, d.TakenOver.Worker, cur.ID, cur.Worker)
	case !held && d.TakenOver != nil:
		return fmt.Errorf("task %s claim takes over %s of %q, but the task has no claim", d.TaskID, d.TakenOver.Claim, d.TakenOver.Worker)
	}
	if s.Claims == nil {
		s.Claims = make(map[workflow.TaskID]Claim, 1)
	}
	s.Claims[d.TaskID] = Claim{ID: e.ID, Worker: d.Worker, TTL: time.Duration(d.TTLMS) * time.Millisecond, At: at}
	return nil
}
