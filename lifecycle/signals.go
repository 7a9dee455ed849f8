package lifecycle

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// StoreSignal records a pending cancel or pause request; a later request of
// the same kind replaces it (latest wins). The admission matrix is
// Sayiir's:
//
//	state \ kind   cancel            pause
//	InProgress     stored            stored
//	Paused         stored (*)        no-op, nothing written
//	Cancelled      no-op             ErrCannotPause
//	Completed      ErrCannotCancel   ErrCannotPause
//	Failed         ErrCannotCancel   ErrCannotPause
//
// (*) A cancel stored while paused waits, as Temporal does: nothing runs
// while paused, and [Store.Unpause] applies it in the same commit, so the
// workflow goes from paused to cancelled without running again.
//
// A zero RequestedAt is stamped with the commit time. Errors:
// [*NotFoundError], [*SignalRefusedError] (ErrCannotCancel,
// ErrCannotPause), ErrInvalidRequest for an unknown kind. Storing a signal
// does not change the snapshot's revision.
func (s *Store) StoreSignal(ctx context.Context, id string, kind workflow.SignalKind, req workflow.SignalRequest) error {
	if err := validateID(id); err != nil {
		return err
	}
	if !kind.Valid() {
		return fmt.Errorf("%w: unknown signal kind %d: valid kinds are cancel, pause", ErrInvalidRequest, kind)
	}
	actor := ActorFrom(ctx)
	_, err := s.write(ctx, "store signal", id, func(st *projection.State) (*events.Commit, error) {
		if err := needSnapshot(st); err != nil {
			return nil, err
		}
		state := st.Snapshot.State.Kind
		switch {
		case state == workflow.Completed || state == workflow.Failed,
			kind == workflow.Pause && state == workflow.Cancelled:
			return nil, &SignalRefusedError{ID: id, Kind: kind, State: state}
		case kind == workflow.Cancel && state == workflow.Cancelled,
			kind == workflow.Pause && state == workflow.Paused:
			return nil, nil // idempotent: already there
		}
		b, err := s.newCommit(st, "store_signal", actor)
		if err != nil {
			return nil, err
		}
		at := req.RequestedAt
		if at.IsZero() {
			at = b.c.Time
		}
		if err := b.add(st.Run, &events.SignalStoredData{Kind: kind, Reason: req.Reason, RequestedBy: req.RequestedBy, RequestedAt: at.UTC()}); err != nil {
			return nil, err
		}
		return &b.c, nil
	})
	return wrap("store signal", id, err)
}

// GetSignal returns the pending request of kind, if any. [*NotFoundError]
// if the instance has no snapshot.
func (s *Store) GetSignal(ctx context.Context, id string, kind workflow.SignalKind) (req workflow.SignalRequest, ok bool, err error) {
	if err := validateID(id); err != nil {
		return req, false, err
	}
	err = s.read(ctx, id, func(st *projection.State) error {
		if err := needSnapshot(st); err != nil {
			return err
		}
		req, ok = st.Signals[kind]
		return nil
	})
	return req, ok, wrap("get signal", id, err)
}

// ClearSignal drops the pending request of kind. Nothing is written when
// none is pending. [*NotFoundError] if the instance has no snapshot;
// ErrInvalidRequest for an unknown kind (nothing is read or written).
func (s *Store) ClearSignal(ctx context.Context, id string, kind workflow.SignalKind) error {
	if err := validateID(id); err != nil {
		return err
	}
	if !kind.Valid() {
		return fmt.Errorf("%w: unknown signal kind %d: valid kinds are cancel, pause", ErrInvalidRequest, kind)
	}
	actor := ActorFrom(ctx)
	_, err := s.write(ctx, "clear signal", id, func(st *projection.State) (*events.Commit, error) {
		if err := needSnapshot(st); err != nil {
			return nil, err
		}
		if _, ok := st.Signals[kind]; !ok {
			return nil, nil
		}
		return s.commitOf(st, "clear_signal", actor, st.Run, &events.SignalClearedData{Kind: kind, Reason: "cleared"})
	})
	return wrap("clear signal", id, err)
}

// CheckAndCancel applies a pending cancel: if one is pending and the run is
// in progress, the run becomes Cancelled (keeping its task results, with
// interruptedAt recorded) and the signal is cleared, in one commit, and it
// reports true. Otherwise it writes nothing, leaves any signal in place and
// reports false.
func (s *Store) CheckAndCancel(ctx context.Context, id string, interruptedAt *workflow.TaskID) (bool, error) {
	sig, err := s.checkSignals(ctx, id, "check and cancel", interruptedAt, []workflow.SignalKind{workflow.Cancel})
	return sig == ControlCancelled, err
}

// CheckAndPause applies a pending pause: if one is pending and the run is
// in progress, the run becomes Paused at its position and the signal is
// cleared, in one commit, and it reports true. Otherwise it writes nothing
// and reports false.
func (s *Store) CheckAndPause(ctx context.Context, id string) (bool, error) {
	sig, err := s.checkSignals(ctx, id, "check and pause", nil, []workflow.SignalKind{workflow.Pause})
	return sig == ControlPaused, err
}

// ControlSignal is the signal [Store.CheckControlSignals] applied.
type ControlSignal uint8

const (
	ControlNone      ControlSignal = iota // nothing pending, or nothing applicable
	ControlCancelled                      // the run was cancelled
	ControlPaused                         // the run was paused
)

func (c ControlSignal) String() string {
	switch c {
	case ControlCancelled:
		return "cancelled"
	case ControlPaused:
		return "paused"
	}
	return "none"
}

// CheckControlSignals applies a pending cancel, else a pending pause, as
// [Store.CheckAndCancel] and [Store.CheckAndPause] do. In the common case
// of no pending signal it costs one read of what is new since the cached
// projection, and writes nothing.
func (s *Store) CheckControlSignals(ctx context.Context, id string, interruptedAt *workflow.TaskID) (ControlSignal, error) {
	return s.checkSignals(ctx, id, "check control signals", interruptedAt, []workflow.SignalKind{workflow.Cancel, workflow.Pause})
}

func (s *Store) checkSignals(ctx context.Context, id, op string, interruptedAt *workflow.TaskID, kinds []workflow.SignalKind) (ControlSignal, error) {
	if err := validateID(id); err != nil {
		return ControlNone, err
	}
	actor := ActorFrom(ctx)
	var out ControlSignal
	_, err := s.write(ctx, op, id, func(st *projection.State) (*events.Commit, error) {
		out = ControlNone
		if err := needSnapshot(st); err != nil {
			return nil, err
		}
		if st.Snapshot.State.Kind != workflow.InProgress {
			return nil, nil
		}
		for _, k := range kinds {
			req, ok := st.Signals[k]
			if !ok {
				continue
			}
			var change events.Payload = &events.WorkflowPausedData{Reason: req.Reason, By: req.RequestedBy, At: req.RequestedAt}
			out = ControlPaused
			if k == workflow.Cancel {
				change = &events.WorkflowCancelledData{Reason: req.Reason, By: req.RequestedBy, At: req.RequestedAt, InterruptedAtTask: interruptedAt}
				out = ControlCancelled
			}
			return s.commitOf(st, "apply_signal", actor, st.Run, change, &events.SignalClearedData{Kind: k, Reason: "applied"})
		}
		return nil, nil
	})
	if err != nil {
		return ControlNone, wrap(op, id, err)
	}
	return out, nil
}

// Unpause resumes a paused run at the position it was paused at and clears
// any pending pause, in one commit, and returns the snapshot. A cancel
// requested while paused is applied in the same commit: the snapshot comes
// back Cancelled and nothing runs. [*NotPausedError] (ErrNotPaused) if the
// run is not paused; [*NotFoundError] if no snapshot exists.
func (s *Store) Unpause(ctx context.Context, id string) (*workflow.Snapshot, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	actor := ActorFrom(ctx)
	var snap *workflow.Snapshot
	_, err := s.write(ctx, "unpause", id, func(st *projection.State) (*events.Commit, error) {
		if err := needSnapshot(st); err != nil {
			return nil, err
		}
		if k := st.Snapshot.State.Kind; k != workflow.Paused {
			return nil, &NotPausedError{ID: id, State: k}
		}
		ps := []events.Payload{&events.WorkflowUnpausedData{}}
		if _, ok := st.Signals[workflow.Pause]; ok {
			ps = append(ps, &events.SignalClearedData{Kind: workflow.Pause, Reason: "unpaused"})
		}
		if req, ok := st.Signals[workflow.Cancel]; ok {
			ps = append(ps, &events.WorkflowCancelledData{Reason: req.Reason, By: req.RequestedBy, At: req.RequestedAt},
				&events.SignalClearedData{Kind: workflow.Cancel, Reason: "applied"})
		}
		return s.commitOf(st, "unpause", actor, st.Run, ps...)
	}, thenWith(func(st *projection.State) { snap = st.Snapshot.Clone() }))
	if err != nil {
		return nil, wrap("unpause", id, err)
	}
	return snap, nil
}

// SendEvent buffers a named external event with its payload, FIFO per
// instance and name, for [Store.ConsumeEvent]. Unlike Sayiir's trait, which
// silently stores events for unknown or finished instances, it refuses:
// [*NotFoundError] without a snapshot, [*TerminalError] on a finished run,
// ErrInvalidRequest for an empty name or an oversized payload. Sending does
// not change the snapshot's revision.
func (s *Store) SendEvent(ctx context.Context, id, name string, payload []byte) error {
	if err := validateID(id); err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("%w: external event name must not be empty", ErrInvalidRequest)
	}
	if err := s.checkPayload(id, "event payload", len(payload)); err != nil {
		return err
	}
	actor := ActorFrom(ctx)
	_, err := s.write(ctx, "send event", id, func(st *projection.State) (*events.Commit, error) {
		if err := needSnapshot(st); err != nil {
			return nil, err
		}
		if k := st.Snapshot.State.Kind; k.Terminal() {
			return nil, &TerminalError{ID: id, Op: "send event", State: k}
		}
		return s.commitOf(st, "send_event", actor, st.Run, &events.EventSentData{Name: name, Payload: bytes.Clone(payload)})
	})
	return wrap("send event", id, err)
}

// ConsumeRequest asks [Store.ConsumeEvent] to take the oldest buffered
// event of a name and, optionally, to advance the snapshot in the same
// commit.
type ConsumeRequest struct {
	InstanceID string
	Name       string
	// Revision fences the consumption like a checkpoint when Advance is
	// set (run and revision must be current); otherwise only a non-zero
	// Revision.Run is checked.
	Revision Revision
	// Advance, if set, is called with a copy of the snapshot and the
	// event's payload, and changes the copy (typically: mark the signal
	// node completed with the payload and move to the next task). The
	// changes are saved as a checkpoint in the same commit as the
	// consumption, so a crash can never consume an event without
	// advancing, or advance without consuming it. Advance may be called
	// more than once (on conflicts) and must not do I/O.
	Advance func(snap *workflow.Snapshot, payload []byte) error
}

// Consumed is the result of [Store.ConsumeEvent].
type Consumed struct {
	OK       bool   // an event was consumed
	Payload  []byte // its payload
	Revision Revision
}

// ConsumeEvent removes and returns the oldest buffered event of the name
// (OK false, nothing written, when none is buffered). See [ConsumeRequest]
// for the atomic consume-and-advance. Errors: [*NotFoundError],
// [*StaleError], [*TerminalError] (when advancing), ErrInvalidRequest, or
// the error Advance returned, wrapped. With [WithClaim] it is fenced by
// the claim too (ErrClaimLost).
func (s *Store) ConsumeEvent(ctx context.Context, req ConsumeRequest, opts ...SaveOption) (Consumed, error) {
	id := req.InstanceID
	if err := validateID(id); err != nil {
		return Consumed{}, err
	}
	if req.Name == "" {
		return Consumed{}, fmt.Errorf("%w: external event name must not be empty", ErrInvalidRequest)
	}
	o := saveOptionsOf(opts)
	if err := s.checkLease(ctx, o); err != nil {
		return Consumed{}, wrap("consume event", id, err)
	}
	actor := ActorFrom(ctx)
	var out Consumed
	rev, err := s.write(ctx, "consume event", id, func(st *projection.State) (*events.Commit, error) {
		out = Consumed{}
		if err := needSnapshot(st); err != nil {
			return nil, err
		}
		rel, err := fenceClaim(st, o)
		if err != nil {
			return nil, err
		}
		if req.Advance != nil {
			if err := fence(st, "consume event", req.Revision, true); err != nil {
				return nil, err
			}
		} else if !req.Revision.Run.IsZero() && req.Revision.Run != st.Run {
			return nil, &StaleError{ID: id, Op: "consume event", Have: req.Revision, Current: st.Revision()}
		}
		q := st.Buffered[req.Name]
		if len(q) == 0 {
			return nil, nil
		}
		head := q[0]
		ps := []events.Payload{&events.EventConsumedData{Name: req.Name, EventID: head.ID}}
		if req.Advance != nil {
			next := st.Snapshot.Clone()
			if err := req.Advance(next, slices.Clone(head.Payload)); err != nil {
				return nil, fmt.Errorf("%w: advance: %w", ErrInvalidRequest, err)
			}
			if err := s.checkSnapshotPayloads(next); err != nil {
				return nil, err
			}
			more, err := diffSnapshot(st.Snapshot, next)
			if err != nil {
				return nil, err
			}
			ps = append(ps, more...)
		}
		if rel != nil {
			// Before the advance: a terminal state ends every claim.
			ps = append([]events.Payload{rel}, ps...)
		}
		out = Consumed{OK: true, Payload: slices.Clone(head.Payload)}
		return s.commitOf(st, "consume_event", actor, st.Run, ps...)
	})
	if err != nil {
		return Consumed{}, wrap("consume event", id, err)
	}
	if out.OK {
		s.afterFencedWrite(ctx, o)
	}
	out.Revision = rev
	return out, nil
}
