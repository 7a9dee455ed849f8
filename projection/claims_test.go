package projection_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

func claimed(run ulid.ULID, task workflow.TaskID, worker string, ttl time.Duration, over *events.ClaimRef) events.Event {
	return events.Event{Type: events.TaskClaimed, Run: run, Data: &events.TaskClaimedData{TaskID: task, Worker: worker, TTLMS: uint64(ttl.Milliseconds()), TakenOver: over}}
}

func released(run ulid.ULID, task workflow.TaskID, c projection.Claim) events.Event {
	return events.Event{Type: events.TaskClaimReleased, Run: run, Data: &events.TaskClaimReleasedData{TaskID: task, Claim: c.ID, Worker: c.Worker, Reason: "released"}}
}

// TestFoldClaims: a claim is recorded without changing the snapshot's
// revision, taken over only by naming it, released only by its own id,
// and ended by a new run, a delete or a terminal state.
func TestFoldClaims(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, "x"))
	before := fold(t, h)
	h.add(claimed(run1, taskA, "w-1", 30*time.Second, nil))
	st := fold(t, h)
	c, ok := st.Claims[taskA]
	if !ok || c.Worker != "w-1" || c.TTL != 30*time.Second || c.ID.IsZero() {
		t.Fatalf("claims %+v", st.Claims)
	}
	if st.RevisionSeq != before.RevisionSeq {
		t.Errorf("a claim moved the snapshot's revision from %d to %d", before.RevisionSeq, st.RevisionSeq)
	}

	refuse := func(name, says string, evs ...events.Event) {
		t.Helper()
		s := fold(t, h)
		err := s.Apply(h.next(evs...))
		if !errors.Is(err, projection.ErrInvalidHistory) || !strings.Contains(err.Error(), says) {
			t.Errorf("%s: %v, want a refusal saying %q", name, err, says)
		}
	}
	refuse("a second claim", `while "w-1" holds claim`, claimed(run1, taskA, "w-2", 0, nil))
	refuse("a take-over naming another claim", "the task's claim is", claimed(run1, taskA, "w-2", 0, &events.ClaimRef{Claim: ulid.Make(), Worker: "w-1"}))
	refuse("a release of another claim", "not the task's claim", released(run1, taskA, projection.Claim{ID: ulid.Make(), Worker: "w-1"}))
	refuse("an empty worker", "empty worker", claimed(run1, taskB, "", 0, nil))
	refuse("a take-over of nothing", "has no claim", claimed(run1, taskB, "w-2", 0, &events.ClaimRef{Claim: c.ID, Worker: "w-1"}))

	h.add(claimed(run1, taskA, "w-2", 0, &events.ClaimRef{Claim: c.ID, Worker: "w-1"}))
	st = fold(t, h)
	c2 := st.Claims[taskA]
	if c2.Worker != "w-2" || c2.TTL != 0 || c2.ID == c.ID {
		t.Fatalf("after the take-over: %+v", st.Claims)
	}
	refuse("a release by the worker taken over", "not the task's claim", released(run1, taskA, c))
	h.add(released(run1, taskA, c2))
	if st = fold(t, h); len(st.Claims) != 0 {
		t.Fatalf("after the release: %+v", st.Claims)
	}

	// A new run, a delete and a terminal state end every claim.
	h.add(claimed(run1, taskA, "w-3", time.Minute, nil))
	h.add(deleted(run1), created(run2, "y"))
	if st = fold(t, h); len(st.Claims) != 0 {
		t.Fatalf("claims after TerminateExisting: %+v", st.Claims)
	}
	h.add(claimed(run2, taskA, "w-3", time.Minute, nil))
	h.add(events.Event{Type: events.WorkflowFailed, Run: run2, Data: &events.WorkflowFailedData{Error: "boom"}})
	if st = fold(t, h); len(st.Claims) != 0 {
		t.Fatalf("claims after the run failed: %+v", st.Claims)
	}
	refuse("a claim on a terminal run", "after the run reached the terminal state", claimed(run2, taskA, "w-4", 0, nil))

	// A checkpoint round-trips the claims.
	h2 := newHistory(t)
	h2.add(created(run1, "x"))
	h2.add(claimed(run1, taskA, "w-1", time.Second, nil))
	st = fold(t, h2)
	b, err := st.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	back, err := projection.UnmarshalCheckpoint(inst, b)
	if err != nil || back.Claims[taskA] != st.Claims[taskA] {
		t.Fatalf("checkpoint claims %+v, want %+v (%v)", back.Claims, st.Claims, err)
	}
}

// TestFoldClaimRefusedOnCompletedTask: a task with a result cannot be
// claimed, nor a task of a paused run.
func TestFoldClaimRefusedOnCompletedTask(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, "x"))
	h.add(events.Event{Type: events.TaskCompleted, Run: run1, Data: &events.TaskCompletedData{TaskID: taskA, Output: []byte("o")}})
	st := fold(t, h)
	if err := st.Apply(h.next(claimed(run1, taskA, "w-1", 0, nil))); err == nil || !strings.Contains(err.Error(), "after it completed") {
		t.Fatalf("claim of a completed task: %v", err)
	}
	h.add(events.Event{Type: events.WorkflowPaused, Run: run1, Data: &events.WorkflowPausedData{At: t0}})
	st = fold(t, h)
	if err := st.Apply(h.next(claimed(run1, taskB, "w-1", 0, nil))); err == nil || !strings.Contains(err.Error(), "claimed in state") {
		t.Fatalf("claim on a paused run: %v", err)
	}
}
