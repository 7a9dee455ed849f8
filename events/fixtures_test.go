package events_test

import (
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/workflow"
)

// Deterministic inputs: fixed ULIDs and a fixed clock, so that encoded
// commits (and the golden files made from them) never change by accident.

// fixedTime has nanoseconds, to pin the time format.
var fixedTime = time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.UTC)

// uid returns the n-th fixed ULID.
func uid(n int) ulid.ULID { return ulid.MustParse(fmt.Sprintf("01JQ%022d", n)) }

var (
	run1     = uid(900)
	run2     = uid(901)
	def      = workflow.DefinitionHashOf("order-workflow@1")
	taskA    = workflow.NewTaskID("charge")
	taskB    = workflow.NewTaskID("ship")
	prevHash = workflow.Sha256([]byte("previous commit"))
)

func ptr[T any](v T) *T { return &v }

// samples holds one payload of each event type, with every field set.
func samples() map[events.Type]events.Payload {
	wake := fixedTime.Add(time.Hour)
	return map[events.Type]events.Payload{
		events.SnapshotCreated: &events.SnapshotCreatedData{
			DefinitionHash: def,
			Input:          []byte(`{"order":42}`),
			FirstTask:      workflow.TaskHint{ID: taskA, Priority: ptr[uint8](2), Tags: []string{"gpu", "eu-west"}},
			Policy:         "terminate_existing",
			TraceParent:    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		},
		events.SnapshotDeleted: &events.SnapshotDeletedData{Reason: "terminate_existing", DiscardedEvents: 2},
		events.SignalStored: &events.SignalStoredData{
			Kind: workflow.Pause, Reason: "maintenance window", RequestedBy: "ops@example.com", RequestedAt: fixedTime.Add(-time.Minute),
		},
		events.SignalCleared: &events.SignalClearedData{Kind: workflow.Cancel, Reason: "applied"},
		events.TaskCompleted: &events.TaskCompletedData{TaskID: taskA, Output: []byte(`"charged"`)},
		events.CheckpointSaved: &events.CheckpointSavedData{
			Position:          &workflow.Position{Kind: workflow.AtDelay, NodeID: taskB, EnteredAt: fixedTime, WakeAt: &wake, NextTaskID: ptr(taskB)},
			Completed:         events.TaskOutputs{{Task: taskA, Output: []byte("out")}},
			Removed:           []workflow.TaskID{taskB},
			LastCompletedTask: ptr(taskA),
			Hint:              &events.HintChange{Priority: ptr[uint8](1), Tags: []string{"cpu"}},
			Deadline:          &workflow.TaskDeadline{TaskID: taskB, Deadline: wake, TimeoutMS: 3600000},
			ClearDeadline:     true,
			Retries: map[workflow.TaskID]workflow.TaskRetryState{taskB: {
				Attempts: 2, Policy: workflow.RetryPolicy{MaxRetries: 5, InitialDelay: time.Second, BackoffMultiplier: 2, MaxDelay: time.Minute},
				LastError: "timeout", LastFailedWorker: "worker-7", NextRetryAt: wake,
			}},
			RemovedRetries: []workflow.TaskID{taskA},
			Loops:          map[workflow.TaskID]uint32{taskB: 3},
			RemovedLoops:   []workflow.TaskID{taskA},
			TraceParent:    ptr("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
		},
		events.WorkflowCompleted: &events.WorkflowCompletedData{Output: []byte(`{"ok":true}`)},
		events.WorkflowFailed:    &events.WorkflowFailedData{Error: "payment declined"},
		events.WorkflowCancelled: &events.WorkflowCancelledData{Reason: "customer request", By: "alice", At: fixedTime, InterruptedAtTask: ptr(taskB)},
		events.WorkflowPaused:    &events.WorkflowPausedData{Reason: "maintenance window", By: "ops@example.com", At: fixedTime},
		events.WorkflowUnpaused:  &events.WorkflowUnpausedData{},
		events.EventSent:         &events.EventSentData{Name: "approval", Payload: []byte(`{"approved":true}`)},
		events.EventConsumed:     &events.EventConsumedData{Name: "approval", EventID: uid(700)},
		events.TaskClaimed: &events.TaskClaimedData{TaskID: taskB, Worker: "worker-7", TTLMS: 30000,
			TakenOver: &events.ClaimRef{Claim: uid(701), Worker: "worker-3"}},
		events.TaskClaimReleased: &events.TaskClaimReleasedData{TaskID: taskB, Claim: uid(702), Worker: "worker-7", Reason: "checkpoint"},
		events.DefinitionRegistered: &events.DefinitionRegisteredData{DefinitionHash: def,
			Workflow: &workflow.Definition{Name: "order-workflow", Version: "v1", Tasks: []string{"charge", "ship"}}},
	}
}

// runOf returns the run an event of type t belongs to in the fixtures.
func runOf(t events.Type) ulid.ULID {
	if t == events.SnapshotCreated {
		return run2
	}
	return run1
}

// single returns a commit holding one event of type t (with the sample
// payload): the first commit of its instance when it creates a snapshot,
// a later one otherwise.
func single(typ events.Type) events.Commit {
	c := events.Commit{
		ID:       uid(1),
		Instance: "order-42",
		Time:     fixedTime,
		Command:  "test",
		Actor:    "tester",
		Events:   []events.Event{{ID: uid(2), Type: typ, Run: runOf(typ), Data: samples()[typ]}},
	}
	if typ != events.SnapshotCreated {
		c.Prev = prevHash
	}
	return c
}

// terminateExisting is the multi-event commit of PrepareRun under
// TerminateExisting.
func terminateExisting() events.Commit {
	return events.Commit{
		ID:       uid(10),
		Instance: "order-42",
		Time:     fixedTime,
		Command:  "prepare_run",
		Actor:    "api",
		Prev:     prevHash,
		Events: []events.Event{
			{ID: uid(11), Type: events.SnapshotDeleted, Run: run1, Data: &events.SnapshotDeletedData{Reason: "terminate_existing"}},
			{ID: uid(12), Type: events.SignalCleared, Run: run1, Data: &events.SignalClearedData{Kind: workflow.Cancel, Reason: "terminate_existing"}},
			{ID: uid(13), Type: events.SignalCleared, Run: run1, Data: &events.SignalClearedData{Kind: workflow.Pause, Reason: "terminate_existing"}},
			{ID: uid(14), Type: events.SnapshotCreated, Run: run2, Data: &events.SnapshotCreatedData{
				DefinitionHash: def, Input: []byte("{}"), FirstTask: workflow.TaskHint{ID: taskA}, Policy: "terminate_existing",
			}},
		},
	}
}

// minimal is a first commit with only the required fields.
func minimal() events.Commit {
	return events.Commit{
		ID:       uid(20),
		Instance: "i",
		Time:     time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Events: []events.Event{{ID: uid(21), Type: events.SnapshotCreated, Run: uid(22), Data: &events.SnapshotCreatedData{
			DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA},
		}}},
	}
}

// withEnvelope returns c's events as Decode fills them: with the commit's
// instance, time and the schema version.
func withEnvelope(c events.Commit) events.Commit {
	evs := make([]events.Event, len(c.Events))
	for i, e := range c.Events {
		e.Instance, e.Time, e.Schema = c.Instance, c.Time, events.SchemaVersion
		evs[i] = e
	}
	c.Events = evs
	return c
}
