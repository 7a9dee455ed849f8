package lifecycle

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// LoadSnapshot returns a copy of the instance's current snapshot and its
// revision, to pass to the next [Store.SaveSnapshot]. Errors:
// [ErrInvalidInstanceID]; [*NotFoundError] when no snapshot exists (never
// created, or deleted); a corrupt history or a log failure, wrapped.
func (s *Store) LoadSnapshot(ctx context.Context, id string) (*workflow.Snapshot, Revision, error) {
	if err := validateID(id); err != nil {
		return nil, Revision{}, err
	}
	var snap *workflow.Snapshot
	var rev Revision
	err := s.read(ctx, id, func(st *projection.State) error {
		if err := needSnapshot(st); err != nil {
			return err
		}
		snap, rev = st.Snapshot.Clone(), st.Revision()
		return nil
	})
	if err != nil {
		return nil, Revision{}, wrap("load snapshot", id, err)
	}
	return snap, rev, nil
}

// SaveSnapshot writes a checkpoint: the changes from the snapshot at
// revision rev to snap, as events that carry only what changed (task
// results added, the new position, ...), in one commit. It returns the new
// revision. A snapshot equal to the stored one writes nothing.
//
// The save is fenced, where Sayiir's is an upsert:
//   - [*StaleError] (ErrStale) if rev.Run is not the current run (the
//     instance was replaced by TerminateExisting: this writer must stop)
//     or another change of the snapshot landed after rev.Seq (reload).
//     Signals stored meanwhile do not make a checkpoint stale.
//   - [*TerminalError] (ErrTerminal) if the run is completed, failed or
//     cancelled: terminal states are absorbing.
//   - [*NotFoundError] if no snapshot exists.
//   - ErrInvalidRequest if snap changes what a checkpoint cannot (the
//     instance id, definition hash, initial input or creation time), or a
//     payload exceeds Config.MaxPayload.
//   - With [WithClaim], ErrClaimLost if the worker no longer holds the
//     claim; the same commit may release it.
func (s *Store) SaveSnapshot(ctx context.Context, snap *workflow.Snapshot, rev Revision, opts ...SaveOption) (Revision, error) {
	if snap == nil {
		return Revision{}, fmt.Errorf("%w: nil snapshot", ErrInvalidRequest)
	}
	id := snap.InstanceID
	if err := validateID(id); err != nil {
		return Revision{}, err
	}
	if err := s.checkSnapshotPayloads(snap); err != nil {
		return Revision{}, err
	}
	o := saveOptionsOf(opts)
	if err := s.checkLease(ctx, o); err != nil {
		return Revision{}, wrap("save snapshot", id, err)
	}
	actor := ActorFrom(ctx)
	newRev, err := s.write(ctx, "save snapshot", id, func(st *projection.State) (*events.Commit, error) {
		if err := fence(st, "save snapshot", rev, true); err != nil {
			return nil, err
		}
		rel, err := fenceClaim(st, o)
		if err != nil {
			return nil, err
		}
		ps, err := diffSnapshot(st.Snapshot, snap)
		if err != nil {
			return nil, err
		}
		if rel != nil {
			// First: a transition to a terminal state ends every claim.
			ps = append([]events.Payload{rel}, ps...)
		}
		if len(ps) == 0 {
			return nil, nil
		}
		return s.commitOf(st, "save_snapshot", actor, st.Run, ps...)
	})
	if err != nil {
		return Revision{}, wrap("save snapshot", id, err)
	}
	s.afterFencedWrite(ctx, o)
	return newRev, nil
}

// SaveTaskResult records one task's output (Sayiir's save_task_result): the
// granular write of a fork branch, so that concurrent branches never
// overwrite each other's results. It is fenced by run only: rev.Run must be
// the current run ([*StaleError] otherwise); rev.Seq is not checked. The
// run must not be terminal ([*TerminalError]); a paused run keeps the
// result. It returns the new revision; a writer that then saves a whole
// snapshot must reload it first. With [WithClaim] it is fenced by the
// claim too (ErrClaimLost).
func (s *Store) SaveTaskResult(ctx context.Context, id string, rev Revision, task workflow.TaskID, output []byte, opts ...SaveOption) (Revision, error) {
	if err := validateID(id); err != nil {
		return Revision{}, err
	}
	if err := s.checkPayload(id, "task output", len(output)); err != nil {
		return Revision{}, err
	}
	o := saveOptionsOf(opts)
	if err := s.checkLease(ctx, o); err != nil {
		return Revision{}, wrap("save task result", id, err)
	}
	actor := ActorFrom(ctx)
	newRev, err := s.write(ctx, "save task result", id, func(st *projection.State) (*events.Commit, error) {
		if err := fence(st, "save task result", rev, false); err != nil {
			return nil, err
		}
		rel, err := fenceClaim(st, o)
		if err != nil {
			return nil, err
		}
		ps := []events.Payload{&events.TaskCompletedData{TaskID: task, Output: bytes.Clone(output)}}
		if rel != nil {
			ps = append(ps, rel)
		}
		return s.commitOf(st, "save_task_result", actor, st.Run, ps...)
	})
	if err != nil {
		return Revision{}, wrap("save task result", id, err)
	}
	s.afterFencedWrite(ctx, o)
	return newRev, nil
}

// LoadTaskResult returns a task's output from the current run (Sayiir's
// TaskResultStore). Results stay loadable after the run completes or
// fails, when the snapshot itself has dropped them. ok is false when the
// task has no result. [*NotFoundError] if the instance has no snapshot.
func (s *Store) LoadTaskResult(ctx context.Context, id string, task workflow.TaskID) (out []byte, ok bool, err error) {
	if err := validateID(id); err != nil {
		return nil, false, err
	}
	err = s.read(ctx, id, func(st *projection.State) error {
		if err := needSnapshot(st); err != nil {
			return err
		}
		var r []byte
		r, ok = st.Results[task]
		out = slices.Clone(r)
		return nil
	})
	if err != nil {
		return nil, false, wrap("load task result", id, err)
	}
	return out, ok, nil
}

// DeleteSnapshot deletes the instance's snapshot, with its pending signals
// and buffered external events, in one commit; the history stays. reason is
// recorded. [*NotFoundError] if no snapshot exists. A writer still acting on
// the deleted run is refused from then on ([ErrNotFound] or, after a new
// run, [ErrStale]).
func (s *Store) DeleteSnapshot(ctx context.Context, id, reason string) error {
	if err := validateID(id); err != nil {
		return err
	}
	actor := ActorFrom(ctx)
	_, err := s.write(ctx, "delete snapshot", id, func(st *projection.State) (*events.Commit, error) {
		if err := needSnapshot(st); err != nil {
			return nil, err
		}
		// The order of TerminateExisting (and Sayiir's): delete, then clear.
		ps := []events.Payload{&events.SnapshotDeletedData{Reason: reason, DiscardedEvents: st.Pending()}}
		for _, k := range workflow.SignalKinds() {
			if _, ok := st.Signals[k]; ok {
				ps = append(ps, &events.SignalClearedData{Kind: k, Reason: "deleted"})
			}
		}
		return s.commitOf(st, "delete_snapshot", actor, st.Run, ps...)
	})
	return wrap("delete snapshot", id, err)
}

// Lister is an optional capability of a [Log]: the instance ids that have a
// history, in increasing order, after a cursor, at most limit (limit <= 0:
// the implementation's page size).
type Lister interface {
	Instances(ctx context.Context, after string, limit int) ([]string, error)
}

// ListInstances returns up to limit ids (in increasing order) of instances
// that have a history, after the cursor after ("" for the first page). Pass
// the last id of a page as the next cursor; an empty page is the end.
// Memory is bounded by limit, whatever the number of instances. Deleted
// instances are included (their history remains): LoadSnapshot tells them
// apart. The log must implement [Lister]; otherwise the error matches
// ErrInvalidRequest.
func (s *Store) ListInstances(ctx context.Context, after string, limit int) ([]string, error) {
	l, ok := s.log.(Lister)
	if !ok {
		return nil, fmt.Errorf("%w: the log %T cannot list instances", ErrInvalidRequest, s.log)
	}
	if limit <= 0 {
		limit = 1000
	}
	ids, err := l.Instances(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: list instances: %w", err)
	}
	return ids, nil
}

// fence checks that a writer acting on revision rev may change the
// snapshot: it exists, rev.Run is the current run, it is not terminal and,
// when strict, nothing changed it after rev.Seq.
func fence(st *projection.State, op string, rev Revision, strict bool) error {
	if err := needSnapshot(st); err != nil {
		return err
	}
	cur := st.Revision()
	if rev.Run != st.Run {
		return &StaleError{ID: st.Instance, Op: op, Have: rev, Current: cur}
	}
	if k := st.Snapshot.State.Kind; k.Terminal() {
		return &TerminalError{ID: st.Instance, Op: op, State: k}
	}
	if strict && rev.Seq != st.RevisionSeq {
		return &StaleError{ID: st.Instance, Op: op, Have: rev, Current: cur}
	}
	return nil
}

func needSnapshot(st *projection.State) error {
	if !st.Exists {
		return &NotFoundError{ID: st.Instance, Deleted: st.Runs > 0}
	}
	return nil
}

func wrap(op, id string, err error) error {
	if err == nil || isDomain(err) {
		return err
	}
	return fmt.Errorf("lifecycle: %s %q: %w", op, id, err)
}

func (s *Store) checkPayload(id, what string, n int) error {
	if n > s.maxPayload {
		return fmt.Errorf("%w: %s of instance %q is %d bytes, more than the limit of %d (Config.MaxPayload): store large payloads elsewhere and pass a reference",
			ErrInvalidRequest, what, id, n, s.maxPayload)
	}
	return nil
}

func (s *Store) checkSnapshotPayloads(snap *workflow.Snapshot) error {
	total := len(snap.State.FinalOutput)
	for _, out := range snap.State.CompletedTasks {
		if err := s.checkPayload(snap.InstanceID, "task output", len(out)); err != nil {
			return err
		}
	}
	return s.checkPayload(snap.InstanceID, "final output", total)
}

// diffSnapshot returns the events that take old to new: a checkpoint of
// what changed and the state transition, if any. It refuses changes a
// checkpoint cannot make.
func diffSnapshot(old, new *workflow.Snapshot) ([]events.Payload, error) {
	switch {
	case new.DefinitionHash != old.DefinitionHash:
		return nil, fmt.Errorf("%w: a checkpoint cannot change the definition hash of %q (stored %s, given %s)", ErrInvalidRequest, old.InstanceID, old.DefinitionHash, new.DefinitionHash)
	case !bytes.Equal(new.InitialInput, old.InitialInput):
		return nil, fmt.Errorf("%w: a checkpoint cannot change the initial input of %q", ErrInvalidRequest, old.InstanceID)
	case !new.CreatedAt.Equal(old.CreatedAt):
		return nil, fmt.Errorf("%w: a checkpoint cannot change when %q was created (stored %s, given %s): save the snapshot as loaded", ErrInvalidRequest, old.InstanceID, old.CreatedAt.UTC().Format(time.RFC3339Nano), new.CreatedAt.UTC().Format(time.RFC3339Nano))
	}
	from, to := old.State.Kind, new.State.Kind
	var ps []events.Payload
	cp := diffFields(old, new)
	keepsResults := func(k workflow.StateKind) bool {
		return k == workflow.InProgress || k == workflow.Paused || k == workflow.Cancelled
	}
	if keepsResults(to) && (from == workflow.InProgress || from == workflow.Paused) {
		diffResults(cp, old.State, new.State)
	}
	switch {
	case from == to:
		if to == workflow.Paused && !new.State.Position.Equal(old.State.Position) {
			return nil, fmt.Errorf("%w: a paused workflow's position cannot change; unpause it first", ErrInvalidRequest)
		}
		if to == workflow.InProgress && !new.State.Position.Equal(old.State.Position) {
			p := new.State.Position.Clone()
			cp.Position = &p
		}
		if !cp.Empty() {
			ps = append(ps, cp)
		}
	case to == workflow.InProgress && from == workflow.Paused:
		ps = append(ps, &events.WorkflowUnpausedData{})
		if !new.State.Position.Equal(old.State.Position) {
			p := new.State.Position.Clone()
			cp.Position = &p
		}
		if !cp.Empty() {
			ps = append(ps, cp)
		}
	case to == workflow.Paused && from == workflow.InProgress:
		if !new.State.Position.Equal(old.State.Position) {
			p := new.State.Position.Clone()
			cp.Position = &p
		}
		if !cp.Empty() {
			ps = append(ps, cp)
		}
		ps = append(ps, &events.WorkflowPausedData{Reason: new.State.Reason, By: new.State.By, At: new.State.At})
	case to == workflow.Completed || to == workflow.Failed:
		// The results of tasks completed in the same save are recorded
		// with the transition (the snapshot itself drops them).
		if at, ok := new.FinishedFrom(); ok && from == workflow.InProgress && at.Kind == workflow.InProgress {
			rc := &events.CheckpointSavedData{}
			diffResults(rc, old.State, workflow.State{CompletedTasks: at.CompletedTasks, LastCompletedTask: at.LastCompletedTask})
			rc.Removed = nil // finishing removes nothing: the history keeps every result
			if !rc.Empty() {
				ps = append(ps, rc)
			}
		}
		if to == workflow.Completed {
			ps = append(ps, &events.WorkflowCompletedData{Output: bytes.Clone(new.State.FinalOutput)})
		} else {
			ps = append(ps, &events.WorkflowFailedData{Error: new.State.Error})
		}
	case to == workflow.Cancelled:
		if !cp.Empty() {
			ps = append(ps, cp)
		}
		ps = append(ps, &events.WorkflowCancelledData{Reason: new.State.Reason, By: new.State.By, At: new.State.At, InterruptedAtTask: new.State.InterruptedAtTask})
	default:
		return nil, fmt.Errorf("%w: a checkpoint cannot move %q from %s to %s", ErrInvalidRequest, old.InstanceID, from, to)
	}
	return ps, nil
}

// diffFields fills a checkpoint with the changes of the fields every state
// has: hint, deadline, retries, loop counters, trace parent.
func diffFields(old, new *workflow.Snapshot) *events.CheckpointSavedData {
	cp := &events.CheckpointSavedData{}
	if !eqU8(old.TaskPriority, new.TaskPriority) || !slices.Equal(old.TaskTags, new.TaskTags) {
		cp.Hint = &events.HintChange{Priority: new.TaskPriority, Tags: slices.Clone(new.TaskTags)}
	}
	switch {
	case new.TaskDeadline == nil && old.TaskDeadline != nil:
		cp.ClearDeadline = true
	case new.TaskDeadline != nil && (old.TaskDeadline == nil || *new.TaskDeadline != *old.TaskDeadline):
		d := *new.TaskDeadline
		cp.Deadline = &d
	}
	for id, r := range new.TaskRetries {
		if o, ok := old.TaskRetries[id]; !ok || o != r {
			if cp.Retries == nil {
				cp.Retries = make(map[workflow.TaskID]workflow.TaskRetryState)
			}
			cp.Retries[id] = r
		}
	}
	for id := range old.TaskRetries {
		if _, ok := new.TaskRetries[id]; !ok {
			cp.RemovedRetries = append(cp.RemovedRetries, id)
		}
	}
	for id, n := range new.LoopIterations {
		if o, ok := old.LoopIterations[id]; !ok || o != n {
			if cp.Loops == nil {
				cp.Loops = make(map[workflow.TaskID]uint32)
			}
			cp.Loops[id] = n
		}
	}
	for id := range old.LoopIterations {
		if _, ok := new.LoopIterations[id]; !ok {
			cp.RemovedLoops = append(cp.RemovedLoops, id)
		}
	}
	if new.TraceParent != old.TraceParent {
		tp := new.TraceParent
		cp.TraceParent = &tp
	}
	sortIDs(cp.RemovedRetries)
	sortIDs(cp.RemovedLoops)
	return cp
}

// diffResults adds the task results that were added, changed or removed.
func diffResults(cp *events.CheckpointSavedData, old, new workflow.State) {
	for id, out := range new.CompletedTasks {
		if o, ok := old.CompletedTasks[id]; !ok || !bytes.Equal(o, out) {
			cp.Completed = append(cp.Completed, events.TaskOutput{Task: id, Output: bytes.Clone(out)})
		}
	}
	cp.Completed.Sort()
	for id := range old.CompletedTasks {
		if _, ok := new.CompletedTasks[id]; !ok {
			cp.Removed = append(cp.Removed, id)
		}
	}
	sortIDs(cp.Removed)
	changed := new.LastCompletedTask != nil && (old.LastCompletedTask == nil || *old.LastCompletedTask != *new.LastCompletedTask)
	if len(cp.Completed) == 1 && new.LastCompletedTask != nil {
		// One result added: it is implicitly the last completed task
		// (the common checkpoint), so say so only when it is not.
		changed = cp.Completed[0].Task != *new.LastCompletedTask
	}
	if changed {
		t := *new.LastCompletedTask
		cp.LastCompletedTask = &t
	}
}

func sortIDs(ids []workflow.TaskID) {
	slices.SortFunc(ids, func(a, b workflow.TaskID) int { return bytes.Compare(a[:], b[:]) })
}

func eqU8(a, b *uint8) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
