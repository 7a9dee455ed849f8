package logtest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// lifecycleCases check lifecycle.Store's behaviour on top of the log.
var lifecycleCases = []testCase{
	{"PrepareRunCreatesFresh", testCreateFresh},
	{"PrepareRunFailOnExisting", testFailOnExisting},
	{"PrepareRunUseExisting", testUseExisting},
	{"PrepareRunUseExistingFinished", testUseExistingFinished},
	{"PrepareRunTerminateExisting", testTerminateExisting},
	{"PrepareRunTerminateExistingTwice", testTerminateTwice},
	{"PrepareRunAfterDelete", testCreateAfterDelete},
	{"PrepareRunDefinitionMismatch", testDefinitionMismatch},
	{"PrepareRunInvalidInstanceID", testInvalidID},
	{"PrepareRunOversizedInput", testOversizedInput},
	{"PrepareRunInvalidPolicy", testInvalidPolicy},
	{"PrepareRunSpecialInstanceIDs", testSpecialIDs},
	{"PrepareRunCorruptHistory", testCorruptHistory},
	{"PrepareRunStaleCache", testStaleCache},
	{"ConcurrentPrepareRunFail", testConcurrentFail},
	{"ConcurrentPrepareRunTerminateExisting", testConcurrentTerminate},
}

var (
	defHash   = workflow.DefinitionHashOf("logtest-workflow@1")
	otherHash = workflow.DefinitionHashOf("logtest-workflow@2")
	firstTask = workflow.NewTaskID("first-task")
	policies  = []workflow.ConflictPolicy{workflow.Fail, workflow.UseExisting, workflow.TerminateExisting}
)

func request(id string, p workflow.ConflictPolicy) lifecycle.PrepareRunRequest {
	prio := uint8(4)
	return lifecycle.PrepareRunRequest{
		InstanceID:     id,
		DefinitionHash: defHash,
		Input:          []byte(`{"n":1}`),
		FirstTask:      workflow.TaskHint{ID: firstTask, Priority: &prio, Tags: []string{"gpu", "eu"}},
		Policy:         p,
		Actor:          "logtest",
	}
}

// records returns the instance's decoded history.
func records(t *testing.T, log lifecycle.Log, id string) []events.Record {
	t.Helper()
	var recs []events.Record
	for _, m := range readAll(t, log, id, 0) {
		rec, err := events.Decode(m, id)
		if err != nil {
			t.Fatalf("history of %q: %v", id, err)
		}
		recs = append(recs, rec)
	}
	return recs
}

func typesOf(rec events.Record) string {
	ts := make([]string, len(rec.Commit.Events))
	for i, e := range rec.Commit.Events {
		ts[i] = string(e.Type)
	}
	return strings.Join(ts, ",")
}

// checkChain checks the history's hash chain and headers, and that it
// folds.
func checkChain(t *testing.T, log lifecycle.Log, id string) projection.State {
	t.Helper()
	msgs := readAll(t, log, id, 0)
	var prev workflow.Hash32
	for i, m := range msgs {
		rec, err := events.Decode(m, id)
		if err != nil {
			t.Fatalf("history of %q: %v", id, err)
		}
		if rec.Commit.Prev != prev {
			t.Errorf("commit %d (seq %d) has prev %v, want %v", i, m.Seq, rec.Commit.Prev, prev)
		}
		prev = workflow.Sha256(m.Data)
		if h := m.Header[events.HeaderEvents]; len(h) != 1 || h[0] != typesOf(rec) {
			t.Errorf("commit %d header %s = %q, payload types %q", i, events.HeaderEvents, h, typesOf(rec))
		}
		if m.MsgID != rec.Commit.ID.String() {
			t.Errorf("commit %d MsgID %q, commit id %s", i, m.MsgID, rec.Commit.ID)
		}
	}
	st, err := projection.Fold(id, seqOfMsgs(msgs))
	if err != nil {
		t.Fatalf("history of %q does not fold: %v", id, err)
	}
	return st
}

func seqOfMsgs(msgs []events.Message) func(yield func(events.Message, error) bool) {
	return func(yield func(events.Message, error) bool) {
		for _, m := range msgs {
			if !yield(m, nil) {
				return
			}
		}
	}
}

func prepare(t *testing.T, s *lifecycle.Store, req lifecycle.PrepareRunRequest) lifecycle.Prepared {
	t.Helper()
	out, err := s.PrepareRun(t.Context(), req)
	if err != nil {
		t.Fatalf("PrepareRun(%q, %v): %v", req.InstanceID, req.Policy, err)
	}
	return out
}

func load(t *testing.T, s *lifecycle.Store, id string) projection.State {
	t.Helper()
	st, err := s.Load(t.Context(), id)
	if err != nil {
		t.Fatalf("Load(%q): %v", id, err)
	}
	return st
}

// appendEvents appends a commit of the given payloads to id's history, as
// another writer would, on the state the store loads: Prev is its head
// and the append expects its last sequence. Payloads belong to the
// current run.
func appendEvents(t *testing.T, s *lifecycle.Store, log lifecycle.Log, g *idGen, id string, ps ...events.Payload) uint64 {
	t.Helper()
	st := load(t, s, id)
	c := events.Commit{ID: g.next(), Instance: id, Time: idTime, Command: "logtest", Actor: "logtest", Prev: st.Head}
	for _, p := range ps {
		c.Events = append(c.Events, events.Event{ID: g.next(), Type: p.EventType(), Run: st.Run, Data: p})
	}
	msg, err := c.Encode()
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return mustAppend(t, log, id, msg, st.LastSeq)
}

func storeSignal(t *testing.T, s *lifecycle.Store, log lifecycle.Log, g *idGen, id string, k workflow.SignalKind, reason string) {
	t.Helper()
	appendEvents(t, s, log, g, id, &events.SignalStoredData{Kind: k, Reason: reason, RequestedBy: "logtest", RequestedAt: idTime})
}

// checkFresh checks a Created or Replaced result against its request.
func checkFresh(t *testing.T, out lifecycle.Prepared, req lifecycle.PrepareRunRequest) {
	t.Helper()
	if out.Run.IsZero() {
		t.Error("Prepared.Run is zero")
	}
	if out.Status.Kind != workflow.StatusInProgress || out.Output != nil {
		t.Errorf("Prepared.Status = %+v, Output %q; want in_progress and no output", out.Status, out.Output)
	}
	s := out.Snapshot
	if s == nil {
		t.Fatal("Prepared.Snapshot is nil")
	}
	if s.InstanceID != req.InstanceID || s.DefinitionHash != req.DefinitionHash || !bytes.Equal(s.InitialInput, req.Input) {
		t.Errorf("snapshot id %q hash %v input %q", s.InstanceID, s.DefinitionHash, s.InitialInput)
	}
	if s.State.Kind != workflow.InProgress || !s.State.Position.Equal(workflow.AtTaskPosition(req.FirstTask.ID)) {
		t.Errorf("snapshot %v at %+v, want in progress at the first task", s.State.Kind, s.State.Position)
	}
	if s.CurrentTaskPriority() != *req.FirstTask.Priority || !slices.Equal(s.TaskTags, req.FirstTask.Tags) {
		t.Errorf("snapshot priority %d tags %q, want the hint's %d %q", s.CurrentTaskPriority(), s.TaskTags, *req.FirstTask.Priority, req.FirstTask.Tags)
	}
	if s.CompletedTaskCount() != 0 {
		t.Error("a fresh snapshot has results")
	}
}

// sameSnapshot compares snapshots by their JSON.
func sameSnapshot(t *testing.T, what string, got, want *workflow.Snapshot) {
	t.Helper()
	g, err1 := jsonOf(got)
	w, err2 := jsonOf(want)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if g != w {
		t.Errorf("%s: snapshot\n got %s\nwant %s", what, g, w)
	}
}

func testCreateFresh(t *testing.T, log lifecycle.Log) {
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			s := newStore(t, log, 0, lifecycle.Config{})
			id := "fresh-" + p.String()
			req := request(id, p)
			out := prepare(t, s, req)
			if out.Outcome != lifecycle.Created {
				t.Fatalf("Outcome = %v, want created", out.Outcome)
			}
			checkFresh(t, out, req)
			if !out.PreviousRun.IsZero() {
				t.Errorf("PreviousRun = %v, want zero", out.PreviousRun)
			}
			recs := records(t, log, id)
			if len(recs) != 1 || typesOf(recs[0]) != string(events.SnapshotCreated) {
				t.Fatalf("history = %d commits, want exactly one snapshot.created", len(recs))
			}
			rec := recs[0]
			if out.Revision.Seq != rec.Seq {
				t.Errorf("Prepared.Seq = %d, the commit is at %d", out.Revision.Seq, rec.Seq)
			}
			if rec.Commit.Run() != out.Run || rec.Commit.Actor != "logtest" || !rec.Commit.Prev.IsZero() {
				t.Errorf("commit run %v actor %q prev %v", rec.Commit.Run(), rec.Commit.Actor, rec.Commit.Prev)
			}
			d, ok := rec.Commit.Events[0].Data.(*events.SnapshotCreatedData)
			if !ok || d.DefinitionHash != defHash || !bytes.Equal(d.Input, req.Input) || d.FirstTask.ID != firstTask || d.Policy != p.String() {
				t.Errorf("snapshot.created payload = %+v", rec.Commit.Events[0].Data)
			}
			st := checkChain(t, log, id)
			if !st.Exists || st.Run != out.Run || st.Runs != 1 {
				t.Errorf("folded state: exists %v run %v runs %d", st.Exists, st.Run, st.Runs)
			}
			sameSnapshot(t, "folded vs Prepared", st.Snapshot, out.Snapshot)
			loaded := load(t, s, id)
			sameSnapshot(t, "Load vs Prepared", loaded.Snapshot, out.Snapshot)
			// Another store sees the same.
			other := load(t, newStore(t, log, 1, lifecycle.Config{}), id)
			if other.Run != out.Run {
				t.Errorf("another store loads run %v, want %v", other.Run, out.Run)
			}
		})
	}
}

func testFailOnExisting(t *testing.T, log lifecycle.Log) {
	s := newStore(t, log, 0, lifecycle.Config{})
	created := prepare(t, s, request("inst", workflow.Fail))
	before := lastSeq(t, log, "inst")
	for _, store := range []*lifecycle.Store{s, newStore(t, log, 1, lifecycle.Config{})} {
		req := request("inst", workflow.Fail)
		req.Input = []byte(`{"n":2}`)
		_, err := store.PrepareRun(t.Context(), req)
		if !errors.Is(err, lifecycle.ErrAlreadyExists) {
			t.Fatalf("PrepareRun under Fail on an existing instance = %v, want ErrAlreadyExists", err)
		}
		e, ok := errors.AsType[*lifecycle.AlreadyExistsError](err)
		if !ok {
			t.Fatalf("error %T is not an *AlreadyExistsError", err)
		}
		if e.ID != "inst" || e.Run != created.Run || e.Status.Kind != workflow.StatusInProgress {
			t.Errorf("AlreadyExistsError = %+v", e)
		}
		for _, hint := range []string{"use_existing", "terminate_existing"} {
			if !strings.Contains(err.Error(), hint) {
				t.Errorf("error %q does not tell to use %s", err, hint)
			}
		}
		if errors.Is(err, lifecycle.ErrDefinitionMismatch) || errors.Is(err, lifecycle.ErrConcurrentModification) {
			t.Errorf("error %v matches another sentinel", err)
		}
	}
	if after := lastSeq(t, log, "inst"); after != before {
		t.Errorf("refused PrepareRun appended: last sequence %d, was %d", after, before)
	}
}

func testUseExisting(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	s := newStore(t, log, 0, lifecycle.Config{})
	created := prepare(t, s, request("inst", workflow.Fail))
	for _, step := range []string{"plain", "with pending cancel and pause"} {
		if step != "plain" {
			storeSignal(t, s, log, g, "inst", workflow.Cancel, "c")
			storeSignal(t, s, log, g, "inst", workflow.Pause, "p")
		}
		before := lastSeq(t, log, "inst")
		for _, store := range []*lifecycle.Store{s, newStore(t, log, 1, lifecycle.Config{})} {
			req := request("inst", workflow.UseExisting)
			req.Input = []byte(`{"n":2}`)
			out := prepare(t, store, req)
			if out.Outcome != lifecycle.UsedExisting {
				t.Fatalf("%s: Outcome = %v, want used_existing", step, out.Outcome)
			}
			if out.Status.Kind != workflow.StatusInProgress || out.Output != nil {
				t.Errorf("%s: Status %+v Output %q; want in_progress, nil", step, out.Status, out.Output)
			}
			if out.Run != created.Run || !out.PreviousRun.IsZero() {
				t.Errorf("%s: Run %v PreviousRun %v, want the existing run", step, out.Run, out.PreviousRun)
			}
			if out.Revision.Seq != created.Revision.Seq {
				t.Errorf("%s: Seq = %d, want the snapshot's revision %d (signals do not change it)", step, out.Revision.Seq, created.Revision.Seq)
			}
			sameSnapshot(t, step, out.Snapshot, created.Snapshot)
			if string(out.Snapshot.InitialInput) != `{"n":1}` {
				t.Errorf("%s: the existing input was replaced", step)
			}
		}
		if after := lastSeq(t, log, "inst"); after != before {
			t.Errorf("%s: UseExisting appended: last sequence %d, was %d", step, after, before)
		}
	}
	st := load(t, s, "inst")
	if len(st.Signals) != 2 {
		t.Errorf("UseExisting changed the pending signals: %v", st.Signals)
	}
}

// testUseExistingFinished crafts finished runs with the workflow.* events
// (the store has no API to finish a run in PrepareRun's terms).
func testUseExistingFinished(t *testing.T, log lifecycle.Log) {
	at := idTime.Add(time.Hour)
	tests := []struct {
		name   string
		ps     []events.Payload
		status workflow.Status
		output []byte
	}{
		{"completed", []events.Payload{&events.WorkflowCompletedData{Output: []byte(`"done"`)}},
			workflow.Status{Kind: workflow.StatusCompleted}, []byte(`"done"`)},
		{"completed with empty output", []events.Payload{&events.WorkflowCompletedData{}},
			workflow.Status{Kind: workflow.StatusCompleted}, []byte{}},
		{"failed", []events.Payload{&events.WorkflowFailedData{Error: "boom"}},
			workflow.Status{Kind: workflow.StatusFailed, Error: "boom"}, nil},
		{"cancelled", []events.Payload{&events.WorkflowCancelledData{Reason: "stop", By: "alice", At: at}},
			workflow.Status{Kind: workflow.StatusCancelled, Reason: "stop", By: "alice"}, nil},
		{"paused", []events.Payload{&events.WorkflowPausedData{Reason: "hold", By: "bob", At: at}},
			workflow.Status{Kind: workflow.StatusPaused, Reason: "hold", By: "bob"}, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &idGen{n: uint64(i) * 1000}
			id := "finished-" + tt.name
			s := newStore(t, log, 0, lifecycle.Config{})
			created := prepare(t, s, request(id, workflow.Fail))
			appendEvents(t, s, log, g, id, tt.ps...)
			before := lastSeq(t, log, id)

			out := prepare(t, newStore(t, log, 1, lifecycle.Config{}), request(id, workflow.UseExisting))
			if out.Outcome != lifecycle.UsedExisting || out.Run != created.Run {
				t.Fatalf("Outcome %v run %v", out.Outcome, out.Run)
			}
			if fmt.Sprintf("%+v", out.Status) != fmt.Sprintf("%+v", tt.status) {
				t.Errorf("Status = %+v, want %+v", out.Status, tt.status)
			}
			if (out.Output == nil) != (tt.output == nil) || !bytes.Equal(out.Output, tt.output) {
				t.Errorf("Output = %q (nil %v), want %q (nil %v): the output only of a completed run", out.Output, out.Output == nil, tt.output, tt.output == nil)
			}
			if after := lastSeq(t, log, id); after != before {
				t.Errorf("UseExisting appended")
			}
			// Fail refuses a finished instance too (Sayiir's policies apply
			// to any existing snapshot).
			if _, err := s.PrepareRun(t.Context(), request(id, workflow.Fail)); !errors.Is(err, lifecycle.ErrAlreadyExists) {
				t.Errorf("Fail on a %s instance = %v, want ErrAlreadyExists", tt.name, err)
			}
			// TerminateExisting replaces it.
			rep := prepare(t, s, request(id, workflow.TerminateExisting))
			if rep.Outcome != lifecycle.Replaced || rep.PreviousRun != created.Run {
				t.Errorf("TerminateExisting on a %s instance: %v, previous %v", tt.name, rep.Outcome, rep.PreviousRun)
			}
			checkChain(t, log, id)
		})
	}
}

func testTerminateExisting(t *testing.T, log lifecycle.Log) {
	tests := []struct {
		name    string
		signals []workflow.SignalKind
	}{
		{"no signals", nil},
		{"pending cancel", []workflow.SignalKind{workflow.Cancel}},
		{"pending pause", []workflow.SignalKind{workflow.Pause}},
		{"pending cancel and pause", []workflow.SignalKind{workflow.Pause, workflow.Cancel}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &idGen{n: uint64(i) * 1000}
			id := "terminate " + tt.name
			s := newStore(t, log, 0, lifecycle.Config{})
			created := prepare(t, s, request(id, workflow.Fail))
			for _, k := range tt.signals {
				storeSignal(t, s, log, g, id, k, "pending "+k.String())
			}
			before := readAll(t, log, id, 0)

			req := request(id, workflow.TerminateExisting)
			req.Input = []byte(`{"n":2}`)
			out := prepare(t, newStore(t, log, 1, lifecycle.Config{}), req)
			if out.Outcome != lifecycle.Replaced {
				t.Fatalf("Outcome = %v, want replaced", out.Outcome)
			}
			checkFresh(t, out, req)
			if out.Run == created.Run {
				t.Error("the new run has the old run's id")
			}
			if out.PreviousRun != created.Run {
				t.Errorf("PreviousRun = %v, want %v", out.PreviousRun, created.Run)
			}

			added := records(t, log, id)[len(before):]
			if len(added) != 1 {
				t.Fatalf("TerminateExisting appended %d commits, want one (atomic)", len(added))
			}
			rec := added[0]
			want := []string{string(events.SnapshotDeleted)}
			for _, k := range workflow.SignalKinds() {
				if slices.Contains(tt.signals, k) {
					want = append(want, string(events.SignalCleared)+":"+k.String())
				}
			}
			want = append(want, string(events.SnapshotCreated))
			var got []string
			for _, e := range rec.Commit.Events {
				name := string(e.Type)
				if d, ok := e.Data.(*events.SignalClearedData); ok {
					name += ":" + d.Kind.String()
				}
				got = append(got, name)
				if e.Type == events.SnapshotCreated {
					if e.Run != out.Run {
						t.Errorf("snapshot.created of run %v, want %v", e.Run, out.Run)
					}
				} else if e.Run != created.Run {
					t.Errorf("%s of run %v, want the old run %v", e.Type, e.Run, created.Run)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("commit events = %q, want %q", got, want)
			}
			if rec.Seq != out.Revision.Seq {
				t.Errorf("Prepared.Seq = %d, commit at %d", out.Revision.Seq, rec.Seq)
			}
			if rec.Commit.Prev != workflow.Sha256(before[len(before)-1].Data) {
				t.Error("the commit does not chain to the previous one")
			}

			st := checkChain(t, log, id)
			if !st.Exists || st.Run != out.Run || st.Runs != 2 || len(st.Signals) != 0 {
				t.Errorf("after TerminateExisting: exists %v run %v runs %d signals %v", st.Exists, st.Run, st.Runs, st.Signals)
			}
			sameSnapshot(t, "folded vs Prepared", st.Snapshot, out.Snapshot)
			// The original store, whose cache is stale, sees the new run.
			if got := load(t, s, id); got.Run != out.Run || len(got.Signals) != 0 {
				t.Errorf("the first store loads run %v signals %v", got.Run, got.Signals)
			}
		})
	}
}

func testTerminateTwice(t *testing.T, log lifecycle.Log) {
	s := newStore(t, log, 0, lifecycle.Config{})
	runs := []ulid.ULID{prepare(t, s, request("inst", workflow.TerminateExisting)).Run}
	for range 3 {
		out := prepare(t, s, request("inst", workflow.TerminateExisting))
		if out.Outcome != lifecycle.Replaced || out.PreviousRun != runs[len(runs)-1] {
			t.Fatalf("Outcome %v previous %v, want replaced of %v", out.Outcome, out.PreviousRun, runs[len(runs)-1])
		}
		if slices.Contains(runs, out.Run) {
			t.Fatalf("run id %v reused", out.Run)
		}
		runs = append(runs, out.Run)
	}
	st := checkChain(t, log, "inst")
	if st.Runs != 4 || st.Run != runs[3] || st.Commits != 4 {
		t.Errorf("runs %d run %v commits %d", st.Runs, st.Run, st.Commits)
	}
}

func testCreateAfterDelete(t *testing.T, log lifecycle.Log) {
	for i, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			g := &idGen{n: uint64(i) * 1000}
			id := "deleted-" + p.String()
			s := newStore(t, log, 0, lifecycle.Config{})
			first := prepare(t, s, request(id, workflow.Fail))
			storeSignal(t, s, log, g, id, workflow.Cancel, "c")
			appendEvents(t, s, log, g, id,
				&events.SnapshotDeletedData{Reason: "logtest"},
				&events.SignalClearedData{Kind: workflow.Cancel, Reason: "deleted"})
			if st := load(t, s, id); st.Exists {
				t.Fatal("the instance exists after its delete")
			}
			// A definition hash different from the deleted run's is fine:
			// there is no snapshot to compare with.
			req := request(id, p)
			req.DefinitionHash = otherHash
			out := prepare(t, newStore(t, log, 1, lifecycle.Config{}), req)
			if out.Outcome != lifecycle.Created {
				t.Fatalf("Outcome = %v, want created", out.Outcome)
			}
			checkFresh(t, out, req)
			if out.Run == first.Run || !out.PreviousRun.IsZero() {
				t.Errorf("run %v previous %v", out.Run, out.PreviousRun)
			}
			st := checkChain(t, log, id)
			if !st.Exists || st.Run != out.Run || st.Runs != 2 || len(st.Signals) != 0 {
				t.Errorf("exists %v run %v runs %d signals %v", st.Exists, st.Run, st.Runs, st.Signals)
			}
		})
	}
}

func testDefinitionMismatch(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	s := newStore(t, log, 0, lifecycle.Config{})
	created := prepare(t, s, request("inst", workflow.Fail))
	storeSignal(t, s, log, g, "inst", workflow.Cancel, "c")
	before := lastSeq(t, log, "inst")
	for _, p := range policies {
		for k, store := range []*lifecycle.Store{s, newStore(t, log, 1, lifecycle.Config{})} {
			req := request("inst", p)
			req.DefinitionHash = otherHash
			out, err := store.PrepareRun(t.Context(), req)
			if !errors.Is(err, lifecycle.ErrDefinitionMismatch) {
				t.Fatalf("%v (store %d): PrepareRun with another definition = %v, %+v; want ErrDefinitionMismatch before the policy", p, k, err, out)
			}
			e, ok := errors.AsType[*lifecycle.DefinitionMismatchError](err)
			if !ok {
				t.Fatalf("error %T is not a *DefinitionMismatchError", err)
			}
			if e.ID != "inst" || e.Stored != defHash || e.Requested != otherHash {
				t.Errorf("DefinitionMismatchError = %+v, want stored %v requested %v", e, defHash, otherHash)
			}
			if !strings.Contains(err.Error(), defHash.String()) || !strings.Contains(err.Error(), otherHash.String()) {
				t.Errorf("error %q does not show both hashes", err)
			}
			if errors.Is(err, lifecycle.ErrAlreadyExists) {
				t.Errorf("%v: a definition mismatch also matches ErrAlreadyExists", p)
			}
		}
	}
	if after := lastSeq(t, log, "inst"); after != before {
		t.Errorf("a definition mismatch appended: last sequence %d, was %d", after, before)
	}
	st := load(t, s, "inst")
	if st.Run != created.Run || len(st.Signals) != 1 {
		t.Errorf("state changed: run %v signals %v", st.Run, st.Signals)
	}
}

var invalidIDs = []struct{ name, id string }{
	{"empty", ""},
	{"257 bytes", strings.Repeat("x", 257)},
	{"257 bytes of runes", strings.Repeat("é", 128) + "x"},
	{"invalid UTF-8", "bad\xff\xfeid"},
}

func testInvalidID(t *testing.T, log lifecycle.Log) {
	wrapped, sp := newSpy(log)
	s := newStore(t, wrapped, 0, lifecycle.Config{})
	for _, tt := range invalidIDs {
		for _, p := range policies {
			_, err := s.PrepareRun(t.Context(), request(tt.id, p))
			if !errors.Is(err, lifecycle.ErrInvalidInstanceID) {
				t.Errorf("%s, %v: PrepareRun = %v, want ErrInvalidInstanceID", tt.name, p, err)
			}
			if _, ok := errors.AsType[*workflow.InstanceIDError](err); !ok {
				t.Errorf("%s: error %T is not a *workflow.InstanceIDError", tt.name, err)
			}
		}
		if _, err := s.Load(t.Context(), tt.id); !errors.Is(err, lifecycle.ErrInvalidInstanceID) {
			t.Errorf("%s: Load = %v, want ErrInvalidInstanceID", tt.name, err)
		}
	}
	if n := sp.calls(); n != 0 {
		t.Errorf("invalid ids reached the log: %d reads, %d appends, %d last-message calls", sp.reads.Load(), sp.appends.Load(), sp.lasts.Load())
	}
	// 256 bytes is valid.
	ok := strings.Repeat("é", 128)
	if out := prepare(t, s, request(ok, workflow.Fail)); out.Outcome != lifecycle.Created {
		t.Errorf("a 256-byte id: %v", out.Outcome)
	}
}

func testOversizedInput(t *testing.T, log lifecycle.Log) {
	wrapped, sp := newSpy(log)
	small := newStore(t, wrapped, 0, lifecycle.Config{MaxPayload: 64})
	dflt := newStore(t, wrapped, 1, lifecycle.Config{})
	for _, tt := range []struct {
		name  string
		s     *lifecycle.Store
		input []byte
	}{
		{"65 bytes over a 64-byte limit", small, bytes.Repeat([]byte("x"), 65)},
		{"one byte over the default 512 KiB", dflt, bytes.Repeat([]byte("x"), 512<<10+1)},
	} {
		for _, p := range policies {
			req := request("big", p)
			req.Input = tt.input
			_, err := tt.s.PrepareRun(t.Context(), req)
			if !errors.Is(err, lifecycle.ErrInvalidRequest) {
				t.Errorf("%s, %v: PrepareRun = %v, want ErrInvalidRequest", tt.name, p, err)
			}
		}
	}
	if n := sp.appends.Load(); n != 0 {
		t.Errorf("oversized inputs reached the log: %d appends", n)
	}
	if got := readAll(t, log, "big", 0); len(got) != 0 {
		t.Fatalf("oversized inputs stored %d messages", len(got))
	}
	// Exactly the limit is accepted.
	req := request("big", workflow.Fail)
	req.Input = bytes.Repeat([]byte("x"), 64)
	if out := prepare(t, small, req); out.Outcome != lifecycle.Created || len(out.Snapshot.InitialInput) != 64 {
		t.Errorf("an input of exactly the limit: %v", out.Outcome)
	}
}

func testInvalidPolicy(t *testing.T, log lifecycle.Log) {
	wrapped, sp := newSpy(log)
	s := newStore(t, wrapped, 0, lifecycle.Config{})
	prepare(t, s, request("existing", workflow.Fail))
	for _, p := range []workflow.ConflictPolicy{3, 9, 255} {
		for _, id := range []string{"fresh", "existing"} {
			before := sp.appends.Load()
			_, err := s.PrepareRun(t.Context(), request(id, p))
			if !errors.Is(err, lifecycle.ErrInvalidRequest) {
				t.Errorf("policy %d on %s: PrepareRun = %v, want ErrInvalidRequest", p, id, err)
			}
			if !errors.Is(err, workflow.ErrInvalidPolicy) {
				t.Errorf("policy %d: error %v does not wrap workflow.ErrInvalidPolicy", p, err)
			}
			if sp.appends.Load() != before {
				t.Errorf("policy %d on %s: appended", p, id)
			}
		}
	}
	if got := readAll(t, log, "fresh", 0); len(got) != 0 {
		t.Errorf("an invalid policy stored %d messages", len(got))
	}
}

func testSpecialIDs(t *testing.T, log lifecycle.Log) {
	s := newStore(t, log, 0, lifecycle.Config{})
	runs := map[string]ulid.ULID{}
	for _, id := range collidingIDs {
		out, err := s.PrepareRun(t.Context(), request(id, workflow.Fail))
		if err != nil {
			t.Errorf("PrepareRun(%q) = %v: its id must not collide with another's", id, err)
			continue
		}
		if out.Outcome != lifecycle.Created || out.Snapshot.InstanceID != id {
			t.Errorf("PrepareRun(%q): %v, snapshot of %q", id, out.Outcome, out.Snapshot.InstanceID)
		}
		runs[id] = out.Run
	}
	other := newStore(t, log, 1, lifecycle.Config{})
	for id, run := range runs {
		st := load(t, other, id)
		if st.Run != run || st.Commits != 1 || st.Snapshot.InstanceID != id {
			t.Errorf("Load(%q): run %v commits %d, want its own single commit (run %v)", id, st.Run, st.Commits, run)
		}
	}
}

func testCorruptHistory(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	// A message that does not decode.
	mustAppend(t, log, "garbage", events.Message{MsgID: g.next().String(), Header: map[string][]string{}, Data: []byte("not a commit")}, 0)
	// A commit that decodes but breaks the hash chain (its prev is not the
	// hash of anything).
	bad := events.Commit{ID: g.next(), Instance: "broken", Time: idTime, Prev: workflow.Sha256([]byte("nothing")),
		Events: []events.Event{{ID: g.next(), Type: events.SnapshotCreated, Run: g.next(), Data: &events.SnapshotCreatedData{DefinitionHash: defHash}}}}
	msg, err := bad.Encode()
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, log, "broken", msg, 0)

	for _, tt := range []struct {
		id   string
		want error
	}{{"garbage", events.ErrCorrupt}, {"broken", projection.ErrInvalidHistory}} {
		s := newStore(t, log, 0, lifecycle.Config{})
		before := lastSeq(t, log, tt.id)
		for _, p := range policies {
			_, err := s.PrepareRun(t.Context(), request(tt.id, p))
			if !errors.Is(err, tt.want) {
				t.Errorf("%s, %v: PrepareRun = %v, want %v", tt.id, p, err, tt.want)
			}
		}
		if _, err := s.Load(t.Context(), tt.id); !errors.Is(err, tt.want) {
			t.Errorf("%s: Load = %v, want %v", tt.id, err, tt.want)
		}
		if after := lastSeq(t, log, tt.id); after != before {
			t.Errorf("%s: PrepareRun wrote on a corrupt history", tt.id)
		}
	}
}

// testStaleCache: a store whose view is out of date must not decide on it.
func testStaleCache(t *testing.T, log lifecycle.Log) {
	a := newStore(t, log, 0, lifecycle.Config{})
	b := newStore(t, log, 1, lifecycle.Config{})
	first := prepare(t, a, request("inst", workflow.Fail))
	replaced := prepare(t, b, request("inst", workflow.TerminateExisting))
	// a last saw first.Run.
	out := prepare(t, a, request("inst", workflow.UseExisting))
	if out.Run != replaced.Run {
		t.Errorf("UseExisting from a stale store returned run %v, want the current %v (not %v)", out.Run, replaced.Run, first.Run)
	}
	_, err := a.PrepareRun(t.Context(), request("inst", workflow.Fail))
	if e, ok := errors.AsType[*lifecycle.AlreadyExistsError](err); !ok || e.Run != replaced.Run {
		t.Errorf("Fail from a stale store = %v, want AlreadyExists naming run %v", err, replaced.Run)
	}
	again := prepare(t, a, request("inst", workflow.TerminateExisting))
	if again.PreviousRun != replaced.Run {
		t.Errorf("TerminateExisting from a stale store replaced %v, want %v", again.PreviousRun, replaced.Run)
	}
	st := checkChain(t, log, "inst")
	if st.Runs != 3 || st.Run != again.Run {
		t.Errorf("runs %d run %v", st.Runs, st.Run)
	}
}

// stores returns n stores on log; goroutine i uses stores[i%n].
func stores(t *testing.T, log lifecycle.Log, n int, cfg lifecycle.Config) []*lifecycle.Store {
	ss := make([]*lifecycle.Store, n)
	for i := range ss {
		ss[i] = newStore(t, log, i, cfg)
	}
	return ss
}

var concurrencyLayouts = []struct {
	name   string
	stores int
}{
	{"one store", 1},
	{"store per goroutine", 64},
}

func testConcurrentFail(t *testing.T, log lifecycle.Log) {
	const n = 64
	for _, layout := range concurrencyLayouts {
		t.Run(layout.name, func(t *testing.T) {
			id := "race-fail " + layout.name
			ss := stores(t, log, layout.stores, lifecycle.Config{MaxAttempts: 200})
			outs := make([]lifecycle.Prepared, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					outs[i], errs[i] = ss[i%len(ss)].PrepareRun(t.Context(), request(id, workflow.Fail))
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for i, err := range errs {
				switch {
				case err == nil:
					if winner >= 0 {
						t.Fatalf("goroutines %d and %d both created %q under Fail", winner, i, id)
					}
					if outs[i].Outcome != lifecycle.Created {
						t.Errorf("goroutine %d: Outcome %v", i, outs[i].Outcome)
					}
					winner = i
				case errors.Is(err, lifecycle.ErrAlreadyExists):
				default:
					t.Errorf("goroutine %d: %v, want nil or ErrAlreadyExists", i, err)
				}
			}
			if winner < 0 {
				t.Fatal("nobody created the instance")
			}
			for i, err := range errs {
				if e, ok := errors.AsType[*lifecycle.AlreadyExistsError](err); ok && e.Run != outs[winner].Run {
					t.Errorf("goroutine %d was refused by run %v, the winner created %v", i, e.Run, outs[winner].Run)
				}
			}
			recs := records(t, log, id)
			if len(recs) != 1 || typesOf(recs[0]) != string(events.SnapshotCreated) || recs[0].Commit.Run() != outs[winner].Run {
				t.Fatalf("history holds %d commits, want exactly the winner's snapshot.created", len(recs))
			}
		})
	}
}

func testConcurrentTerminate(t *testing.T, log lifecycle.Log) {
	const n = 64
	for li, layout := range concurrencyLayouts {
		t.Run(layout.name, func(t *testing.T) {
			g := &idGen{n: uint64(li) * 1000}
			id := "race-terminate " + layout.name
			ss := stores(t, log, layout.stores, lifecycle.Config{MaxAttempts: 200})
			initial := prepare(t, ss[0], request(id, workflow.Fail))
			storeSignal(t, ss[0], log, g, id, workflow.Cancel, "c")
			storeSignal(t, ss[0], log, g, id, workflow.Pause, "p")
			base := lastSeq(t, log, id)

			outs := make([]lifecycle.Prepared, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					req := request(id, workflow.TerminateExisting)
					req.Input = fmt.Appendf(nil, `{"goroutine":%d}`, i)
					outs[i], errs[i] = ss[i%len(ss)].PrepareRun(t.Context(), req)
				})
			}
			close(start)
			wg.Wait()

			byRun := map[ulid.ULID]int{} // run → goroutine
			gaveUp := 0
			for i, err := range errs {
				if err != nil {
					if !errors.Is(err, lifecycle.ErrConcurrentModification) {
						t.Errorf("goroutine %d: %v, want nil or ErrConcurrentModification", i, err)
					}
					gaveUp++
					continue
				}
				if outs[i].Outcome != lifecycle.Replaced {
					t.Errorf("goroutine %d: Outcome %v, want replaced", i, outs[i].Outcome)
				}
				if j, dup := byRun[outs[i].Run]; dup || outs[i].Run == initial.Run {
					t.Fatalf("goroutines %d and %d got the same run %v", j, i, outs[i].Run)
				}
				byRun[outs[i].Run] = i
			}
			if len(byRun) == 0 {
				t.Fatalf("no TerminateExisting succeeded (%d gave up)", gaveUp)
			}
			if gaveUp > 0 {
				t.Logf("%d of %d gave up with ErrConcurrentModification", gaveUp, n)
			}

			// Fold the history one commit at a time: after the first
			// creation the instance always has a snapshot, every creation
			// is a goroutine's run, and its PreviousRun is the run its
			// commit deleted.
			st := projection.New(id)
			var lastCreated ulid.ULID
			created := 0
			for _, m := range readAll(t, log, id, 0) {
				rec, err := events.Decode(m, id)
				if err != nil {
					t.Fatal(err)
				}
				prevRun := st.Run
				if err := st.Apply(rec); err != nil {
					t.Fatalf("history does not fold: %v", err)
				}
				if !st.Exists {
					t.Fatalf("after seq %d the instance has no snapshot: a reader saw it deleted but not recreated", m.Seq)
				}
				if rec.Seq <= base {
					continue
				}
				if typesOf(rec) != "snapshot.deleted,snapshot.created" && !strings.HasPrefix(typesOf(rec), "snapshot.deleted,signal.cleared") {
					t.Errorf("commit at seq %d = %s, want a TerminateExisting commit", rec.Seq, typesOf(rec))
				}
				created++
				lastCreated = st.Run
				i, ok := byRun[st.Run]
				if !ok {
					t.Errorf("seq %d created run %v that no successful caller returned", rec.Seq, st.Run)
					continue
				}
				if outs[i].PreviousRun != prevRun {
					t.Errorf("goroutine %d: PreviousRun %v, but its commit replaced %v", i, outs[i].PreviousRun, prevRun)
				}
				if outs[i].Revision.Seq != rec.Seq {
					t.Errorf("goroutine %d: Seq %d, its commit is at %d", i, outs[i].Revision.Seq, rec.Seq)
				}
			}
			if created != len(byRun) {
				t.Errorf("history holds %d replacements, %d callers succeeded", created, len(byRun))
			}
			final := load(t, ss[0], id)
			if final.Run != lastCreated || final.Runs != 1+len(byRun) || len(final.Signals) != 0 {
				t.Errorf("final state: run %v (last created %v) runs %d signals %v", final.Run, lastCreated, final.Runs, final.Signals)
			}
		})
	}
}
