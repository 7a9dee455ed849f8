package lifecycle

import (
	"context"
	"slices"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// Due reports whether st's run is parked at a node whose wake time has
// come by now: a delay (AtDelay), or a signal wait with a timeout
// (AtSignal) that has no buffered event for its signal (an event that
// arrived is consumed, not timed out).
func Due(st *projection.State, now time.Time) bool {
	if !st.Exists || st.Snapshot == nil || st.Snapshot.State.Kind != workflow.InProgress {
		return false
	}
	pos := st.Snapshot.State.Position
	switch pos.Kind {
	case workflow.AtDelay:
	case workflow.AtSignal:
		if len(st.Buffered[pos.SignalName]) > 0 {
			return false
		}
	default:
		return false
	}
	return pos.WakeAt != nil && !now.Before(*pos.WakeAt)
}

// AdvanceDue moves a run whose timer is due ([Due]) past its parking node,
// as Sayiir's dispatch does for an expired delay: to the node's next task,
// or, when the node is the last, to Completed with the output that flowed
// into it (the last completed task's, else the run's input). A signal wait
// that timed out advances with no payload. It reports whether it wrote;
// a run not parked, or not yet due, is left as it is (nothing written),
// so any number of timer processes may call it: the sequence check lets
// one commit, and the others find the run moved on. now is the caller's
// clock: timers fire when the caller's clock reaches the wake time the
// workflow recorded.
func (s *Store) AdvanceDue(ctx context.Context, id string, now time.Time) (bool, error) {
	if err := validateID(id); err != nil {
		return false, err
	}
	actor := ActorFrom(ctx)
	advanced := false
	_, err := s.write(ctx, "advance due", id, func(st *projection.State) (*events.Commit, error) {
		advanced = false
		if !Due(st, now) {
			return nil, nil
		}
		next := st.Snapshot.Clone()
		pos := next.State.Position
		if pos.NextTaskID != nil {
			next.UpdatePosition(workflow.AtTaskPosition(*pos.NextTaskID), now)
		} else {
			out := next.InitialInput
			if last := next.State.LastCompletedTask; last != nil {
				if o, ok := st.Results[*last]; ok {
					out = o
				}
			}
			next.MarkCompleted(slices.Clone(out), now)
		}
		ps, err := diffSnapshot(st.Snapshot, next)
		if err != nil || len(ps) == 0 {
			return nil, err
		}
		advanced = true
		return s.commitOf(st, "advance_due", actor, st.Run, ps...)
	})
	if err != nil {
		return false, wrap("advance due", id, err)
	}
	return advanced, nil
}

// Signaled reports whether st's run is parked at a signal wait (AtSignal)
// with an event of its signal buffered, and the signal's name: a run
// [Store.AdvanceSignaled] moves on at once, without a caller.
func Signaled(st *projection.State) (string, bool) {
	if !st.Exists || st.Snapshot == nil || st.Snapshot.State.Kind != workflow.InProgress {
		return "", false
	}
	pos := st.Snapshot.State.Position
	if pos.Kind != workflow.AtSignal || pos.SignalName == "" || len(st.Buffered[pos.SignalName]) == 0 {
		return "", false
	}
	return pos.SignalName, true
}

// AdvanceSignaled moves a run parked at a signal wait past it when an
// event of its signal is buffered ([Signaled]), in one commit: the oldest
// such event is consumed (event.consumed), its payload becomes the signal
// node's result, and the run goes to the node's next task, or, when the
// node is the last, to Completed with the payload as output. This is the
// consumption a worker would do with [Store.ConsumeEvent] and an Advance,
// done for the run by the durable timers (jetstream.RunnableIndex.RunTimers)
// as soon as the event arrives. It reports whether it wrote; any number of
// processes may call it: the sequence check lets one commit.
func (s *Store) AdvanceSignaled(ctx context.Context, id string, now time.Time) (bool, error) {
	if err := validateID(id); err != nil {
		return false, err
	}
	actor := ActorFrom(ctx)
	advanced := false
	_, err := s.write(ctx, "advance signaled", id, func(st *projection.State) (*events.Commit, error) {
		advanced = false
		name, ok := Signaled(st)
		if !ok {
			return nil, nil
		}
		head := st.Buffered[name][0]
		next := st.Snapshot.Clone()
		pos := next.State.Position
		payload := slices.Clone(head.Payload)
		if pos.NextTaskID != nil {
			if !pos.NodeID.IsZero() {
				next.MarkTaskCompleted(pos.NodeID, payload, now)
			}
			next.UpdatePosition(workflow.AtTaskPosition(*pos.NextTaskID), now)
		} else {
			next.MarkCompleted(payload, now)
		}
		if err := s.checkSnapshotPayloads(next); err != nil {
			return nil, err
		}
		more, err := diffSnapshot(st.Snapshot, next)
		if err != nil {
			return nil, err
		}
		advanced = true
		ps := append([]events.Payload{&events.EventConsumedData{Name: name, EventID: head.ID}}, more...)
		return s.commitOf(st, "advance_signaled", actor, st.Run, ps...)
	})
	if err != nil {
		return false, wrap("advance signaled", id, err)
	}
	return advanced, nil
}
