package audit

import (
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

var (
	id1 = ulid.MustParse("01JDZ8Q5N3C7K2W4X6Y8Z0A1B2")
	id2 = ulid.MustParse("01JDZ8Q5N3C7K2W4X6Y8Z0A1B3")
	t0  = time.Date(2026, 11, 26, 6, 20, 0, 0, time.UTC)
)

func changesText(cs []Change) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.String())
		b.WriteString("\n")
	}
	return b.String()
}

func TestDiffAlongAHistory(t *testing.T) {
	l := cleanLog(t)
	a := read(t, l, "a")
	at := func(k int) projection.State {
		st, err := projection.FoldUntil("a", l.Read(t.Context(), "a", 0), projection.Until{Seq: a[k].Seq})
		must(t, err)
		return st
	}
	s0, s1, s2, s3, s5, s6, s7 := at(0), at(1), at(2), at(3), at(5), at(6), at(7)
	seq := func(k int) string { return seqString(a[k].Seq) }
	ev := eventIDOf(t, a, "approval")
	cases := []struct {
		name string
		a, b projection.State
		want string
	}{
		{"same", s2, s2, ""},
		{"empty to created", projection.New("a"), s0, "" +
			"exists: false -> true\n" +
			"run: - -> " + s0.Run.String() + "\n" +
			"runs: 0 -> 1\n" +
			"definition_hash: - -> " + short(def) + "\n" +
			"input: - -> {\"qty\":3}\n" +
			"created_at: - -> 2026-11-26T06:20:00.001Z\n" +
			"state: - -> InProgress\n" +
			"position: - -> AtTask(" + short(taskA) + ")\n" +
			"revision: 0 -> " + seq(0) + "\n" +
			"last_seq: 0 -> " + seq(0) + "\n"},
		{"checkpoint", s0, s1, "" +
			"position: AtTask(" + short(taskA) + ") -> AtTask(" + short(taskB) + ")\n" +
			"last_completed_task: - -> " + short(taskA) + "\n" +
			"completed[" + short(taskA) + "]: - -> reserved\n" +
			"revision: " + seq(0) + " -> " + seq(1) + "\n" +
			"last_seq: " + seq(0) + " -> " + seq(1) + "\n"},
		{"park at a signal", s1, s2, "" +
			"position: AtTask(" + short(taskB) + ") -> AtSignal(node " + short(taskB) + ", \"approval\", next " + short(taskC) + ")\n" +
			"revision: " + seq(1) + " -> " + seq(2) + "\n" +
			"last_seq: " + seq(1) + " -> " + seq(2) + "\n"},
		{"event sent: the revision stays", s2, s3, "" +
			"buffered[approval]: - -> 1 event, oldest " + ev.String() + " {\"approved\":true}\n" +
			"last_seq: " + seq(2) + " -> " + seq(3) + "\n"},
		{"signal stored", s5, s6, "" +
			"signal.cancel: - -> requested by support: \"customer asked\" (at " + timeText(s6.Signals[workflow.Cancel].RequestedAt) + ")\n" +
			"last_seq: " + seq(5) + " -> " + seq(6) + "\n"},
		{"cancelled", s6, s7, "" +
			"state: InProgress -> Cancelled\n" +
			"position: AtTask(" + short(taskC) + ") -> -\n" +
			"last_completed_task: " + short(taskB) + " -> -\n" +
			"reason: - -> \"customer asked\"\n" +
			"by: - -> support\n" +
			"at: - -> " + timeText(s6.Signals[workflow.Cancel].RequestedAt) + "\n" +
			"interrupted_at_task: - -> " + short(taskC) + "\n" +
			"signal.cancel: requested by support: \"customer asked\" (at " + timeText(s6.Signals[workflow.Cancel].RequestedAt) + ") -> -\n" +
			"revision: " + seq(5) + " -> " + seq(7) + "\n" +
			"last_seq: " + seq(6) + " -> " + seq(7) + "\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := changesText(Diff(c.a, c.b)); got != c.want {
				t.Errorf("Diff\n got:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

func TestDiffFields(t *testing.T) {
	long := []byte(strings.Repeat("x", 81))
	bin := []byte{0, 1, 2}
	base := func() projection.State {
		snap := workflow.NewSnapshot("x", def, nil, t0)
		snap.UpdatePosition(workflow.AtTaskPosition(taskA), t0)
		return projection.State{Instance: "x", Exists: true, Snapshot: snap, Run: id1, Runs: 1, LastSeq: 5, RevisionSeq: 5}
	}
	with := func(f func(s *projection.State)) projection.State {
		s := base()
		f(&s)
		return s
	}
	p2 := uint8(2)
	cases := []struct {
		name string
		b    projection.State
		want string
	}{
		{"long payload", with(func(s *projection.State) {
			s.Snapshot.State.CompletedTasks = map[workflow.TaskID][]byte{taskA: long}
			s.Results = map[workflow.TaskID][]byte{taskA: long}
		}), "completed[" + short(taskA) + "]: - -> <81 bytes sha256:" + short(workflow.Sha256(long)) + "…>\n"},
		{"binary and empty payloads", with(func(s *projection.State) {
			s.Snapshot.State.CompletedTasks = map[workflow.TaskID][]byte{taskA: bin, taskB: {}}
		}), "" +
			"completed[" + short(taskA) + "]: - -> <3 bytes sha256:" + short(workflow.Sha256(bin)) + "…>\n" +
			"completed[" + short(taskB) + "]: - -> <empty>\n" +
			// The run's result store did not follow: shown separately.
			""},
		{"result kept after completion", with(func(s *projection.State) {
			s.Snapshot.MarkCompleted([]byte("out"), t0)
			s.Results = map[workflow.TaskID][]byte{taskA: []byte("r")}
		}), "" +
			"state: InProgress -> Completed\n" +
			"position: AtTask(" + short(taskA) + ") -> -\n" +
			"results[" + short(taskA) + "]: - -> r\n" +
			"final_output: - -> out\n"},
		{"deleted", with(func(s *projection.State) { s.Exists, s.Snapshot = false, nil }), "" +
			"exists: true -> false\n" +
			"definition_hash: " + short(def) + " -> -\n" +
			"input: <empty> -> -\n" +
			"created_at: 2026-11-26T06:20:00Z -> -\n" +
			"state: InProgress -> -\n" +
			"position: AtTask(" + short(taskA) + ") -> -\n"},
		{"pause signal and buffered events", with(func(s *projection.State) {
			s.Signals = map[workflow.SignalKind]workflow.SignalRequest{workflow.Pause: {Reason: "maintenance\nwindow"}}
			s.Buffered = map[string][]projection.Buffered{"go": {{ID: id1, Payload: []byte("1")}, {ID: id2}}}
		}), "" +
			"signal.pause: - -> requested: \"maintenance\\nwindow\"\n" +
			"buffered[go]: - -> 2 events, oldest " + id1.String() + " 1, newest " + id2.String() + "\n"},
		{"hint, deadline, retries, loops, trace", with(func(s *projection.State) {
			s.Snapshot.TaskPriority = &p2
			s.Snapshot.TaskTags = []string{"gpu", "eu"}
			s.Snapshot.TaskDeadline = &workflow.TaskDeadline{TaskID: taskA, Deadline: t0.Add(time.Minute), TimeoutMS: 60000}
			s.Snapshot.TaskRetries = map[workflow.TaskID]workflow.TaskRetryState{taskA: {Attempts: 1, Policy: workflow.RetryPolicy{MaxRetries: 3, InitialDelay: time.Second, BackoffMultiplier: 2}, LastError: "timeout"}}
			s.Snapshot.LoopIterations = map[workflow.TaskID]uint32{taskB: 4}
			s.Snapshot.TraceParent = "00-abc-def-01"
		}), "" +
			"priority: - -> 2\n" +
			"tags: - -> gpu,eu\n" +
			"deadline: - -> task " + short(taskA) + " at 2026-11-26T06:21:00Z (60000ms)\n" +
			"retries[" + short(taskA) + "]: - -> attempt 1/3, backoff 1s x2, last error \"timeout\"\n" +
			"loops[" + short(taskB) + "]: - -> 4\n" +
			"trace_parent: - -> 00-abc-def-01\n"},
		{"new run", with(func(s *projection.State) { s.Run, s.Runs = id2, 2 }), "" +
			"run: " + id1.String() + " -> " + id2.String() + "\n" +
			"runs: 1 -> 2\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := changesText(Diff(base(), c.b)); got != c.want {
				t.Errorf("Diff\n got:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	p1 := uint8(1)
	wake := t0.Add(time.Hour)
	rec := events.Record{Seq: 7, Commit: events.Commit{ID: id1, Instance: "x", Time: t0}}
	cases := []struct {
		data events.Payload
		want string
	}{
		{&events.SnapshotCreatedData{DefinitionHash: def, Input: []byte(`{"qty":3}`), FirstTask: workflow.TaskHint{ID: taskA, Priority: &p1, Tags: []string{"eu"}}, Policy: "fail"},
			"created run " + id2.String() + " at task " + short(taskA) + `, input {"qty":3}, priority 1, tags eu, policy fail, definition ` + short(def)},
		{&events.SnapshotCreatedData{DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}},
			"created run " + id2.String() + " at task " + short(taskA) + ", no input, definition " + short(def)},
		{&events.SnapshotDeletedData{Reason: "retention", DiscardedEvents: 2}, `snapshot deleted: "retention", discarding 2 buffered external events`},
		{&events.SnapshotDeletedData{}, "snapshot deleted"},
		{&events.SignalStoredData{Kind: workflow.Cancel, Reason: "customer asked", RequestedBy: "support", RequestedAt: t0}, `cancel requested by support: "customer asked"`},
		{&events.SignalStoredData{Kind: workflow.Pause, RequestedAt: t0.Add(-time.Minute)}, "pause requested (at 2026-11-26T06:19:00Z)"},
		{&events.SignalClearedData{Kind: workflow.Cancel, Reason: "terminate_existing"}, "signal cancel cleared (terminate_existing)"},
		{&events.TaskCompletedData{TaskID: taskB, Output: []byte("ok")}, "task " + short(taskB) + " completed, output ok"},
		{&events.CheckpointSavedData{Completed: events.TaskOutputs{{Task: taskA}, {Task: taskB}}, Position: &workflow.Position{Kind: workflow.AtTask, TaskID: taskC}},
			"checkpoint: +2 results, position AtTask(" + short(taskC) + ")"},
		{&events.CheckpointSavedData{Removed: []workflow.TaskID{taskA}, LastCompletedTask: &taskB, Hint: &events.HintChange{Priority: &p1},
			ClearDeadline: true, RemovedRetries: []workflow.TaskID{taskA}, Loops: map[workflow.TaskID]uint32{taskA: 2}, TraceParent: new("")},
			"checkpoint: -1 result, last completed " + short(taskB) + ", hint priority 1, deadline cleared, retries of 1 task removed, loop counters of 1 loop set, trace parent cleared"},
		{&events.CheckpointSavedData{Position: &workflow.Position{Kind: workflow.AtDelay, NodeID: taskA, WakeAt: &wake, NextTaskID: &taskB}},
			"checkpoint: position AtDelay(node " + short(taskA) + ", wake 2026-11-26T07:20:00Z, next " + short(taskB) + ")"},
		{&events.CheckpointSavedData{}, "checkpoint: no change"},
		{&events.WorkflowCompletedData{Output: []byte("done")}, "completed, output done"},
		{&events.WorkflowCompletedData{}, "completed, no output"},
		{&events.WorkflowFailedData{Error: "boom"}, `failed: "boom"`},
		{&events.WorkflowCancelledData{Reason: "customer asked", By: "support", At: t0, InterruptedAtTask: &taskC},
			`cancelled by support: "customer asked", interrupted at task ` + short(taskC)},
		{&events.WorkflowPausedData{Reason: "maintenance", By: "ops", At: t0}, `paused by ops: "maintenance"`},
		{&events.WorkflowUnpausedData{}, "unpaused"},
		{&events.EventSentData{Name: "approval", Payload: []byte(`{"approved":true}`)}, `external event "approval" sent (` + id2.String() + `), payload {"approved":true}`},
		{&events.EventSentData{Name: "big", Payload: make([]byte, 100)}, `external event "big" sent (` + id2.String() + `), payload <100 bytes sha256:` + short(workflow.Sha256(make([]byte, 100))) + "…>"},
		{&events.EventConsumedData{Name: "approval", EventID: id1}, `external event "approval" consumed (` + id1.String() + ")"},
		{&events.TaskClaimedData{TaskID: taskA, Worker: "worker-3", TTLMS: 15000},
			"task " + short(taskA) + ` claimed by "worker-3" until 06:20:15 (lease 15s, renewed by heartbeats outside the history)`},
		{&events.TaskClaimedData{TaskID: taskA, Worker: "worker-7", TakenOver: &events.ClaimRef{Claim: id1, Worker: "worker-3"}},
			"task " + short(taskA) + ` claimed by "worker-7" (no expiry); the lease of "worker-3" (claim ` + id1.String() + ") had ended: taken over"},
		{&events.TaskClaimReleasedData{TaskID: taskA, Claim: id1, Worker: "worker-3", Reason: "checkpoint"},
			`claim of "worker-3" on task ` + short(taskA) + " released with the checkpoint"},
		{&events.DefinitionRegisteredData{DefinitionHash: workflow.DefinitionHashOf("d"), Workflow: &workflow.Definition{Name: "checkout", Version: "v1", Tasks: []string{"reserve-stock", "charge-card"}}},
			`definition ` + short(workflow.DefinitionHashOf("d")) + ` registered: workflow checkout v1, tasks reserve-stock, charge-card`},
	}
	covered := make(map[events.Type]bool)
	for _, c := range cases {
		ev := events.Event{ID: id2, Type: c.data.EventType(), Run: id2, Data: c.data, Instance: "x", Time: t0}
		covered[ev.Type] = true
		if got := Summarize(rec, ev); got != c.want {
			t.Errorf("Summarize(%s)\n got %s\nwant %s", ev.Type, got, c.want)
		}
		if strings.ContainsAny(Summarize(rec, ev), "\n\r") {
			t.Errorf("Summarize(%s) is not one line", ev.Type)
		}
	}
	for _, ty := range events.Types() {
		if !covered[ty] {
			t.Errorf("no Summarize case for %s: add one", ty)
		}
	}
	// Free text is quoted and cut, so it stays on one line.
	ev := events.Event{ID: id2, Type: events.WorkflowFailed, Data: &events.WorkflowFailedData{Error: strings.Repeat("é", 100) + "\nmore"}}
	if got := Summarize(rec, ev); !strings.HasSuffix(got, `"…`) || strings.Contains(got, "\n") || len([]rune(got)) > 100 {
		t.Errorf("long error: %s", got)
	}
}

// Every event of a real history gets a summary that is not the bare type.
func TestSummarizeHistory(t *testing.T) {
	l := cleanLog(t)
	for _, id := range order {
		for _, m := range read(t, l, id) {
			rec := decode(t, m)
			for _, ev := range rec.Commit.Events {
				s := Summarize(rec, ev)
				if s == string(ev.Type) || s == "" {
					t.Errorf("%s: no summary for %s", id, ev.Type)
				}
				t.Logf("%s seq %d %-18s %s", id, m.Seq, ev.Type, s)
			}
		}
	}
}
