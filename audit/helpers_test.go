package audit

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// clock returns a deterministic clock that advances 1ms per call.
func clock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 11, 26, 6, 20, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

func newStore(t *testing.T, log lifecycle.Log) *lifecycle.Store {
	t.Helper()
	s, err := lifecycle.New(log, lifecycle.Config{Now: clock(), Entropy: rand.NewChaCha8([32]byte{1})})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var (
	taskA = workflow.NewTaskID("reserve-stock")
	taskB = workflow.NewTaskID("await-approval")
	taskC = workflow.NewTaskID("ship")
	def   = workflow.DefinitionHashOf("order-pipeline v1")
)

// buildHistories writes realistic histories of three instances through
// the lifecycle store, interleaved in the log as real traffic would be:
//
//	"a": a run with checkpoints, two external events sent (commits 4 and
//	     5 commute), one consumed with an advance, a cancel applied.
//	"b": a run replaced by TerminateExisting with a pending signal, then
//	     completed and deleted.
//	"c": paused, unpaused, a task result, failed.
func buildHistories(t *testing.T, log lifecycle.Log) {
	t.Helper()
	ctx := t.Context()
	s := newStore(t, log)
	ctx = lifecycle.WithActor(ctx, "worker-1")

	pa, err := s.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "a", DefinitionHash: def, Input: []byte(`{"qty":3}`), FirstTask: workflow.TaskHint{ID: taskA}})
	must(t, err)
	pb, err := s.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "b", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}})
	must(t, err)
	_, err = s.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "c", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}})
	must(t, err)
	_ = pb

	// a: checkpoint after task A, park at a signal.
	snap, rev := pa.Snapshot, pa.Revision
	snap.MarkTaskCompleted(taskA, []byte("reserved"), snap.UpdatedAt)
	snap.UpdatePosition(workflow.AtTaskPosition(taskB), snap.UpdatedAt)
	rev, err = s.SaveSnapshot(ctx, snap, rev)
	must(t, err)
	snap.UpdatePosition(workflow.Position{Kind: workflow.AtSignal, NodeID: taskB, SignalName: "approval", NextTaskID: &taskC}, snap.UpdatedAt)
	rev, err = s.SaveSnapshot(ctx, snap, rev)
	must(t, err)
	must(t, s.SendEvent(ctx, "a", "approval", []byte(`{"approved":true}`)))
	must(t, s.SendEvent(ctx, "a", "note", []byte("hello")))

	// b: a pending cancel, then replaced.
	must(t, s.StoreSignal(ctx, "b", workflow.Cancel, workflow.SignalRequest{Reason: "customer asked", RequestedBy: "support"}))
	pb2, err := s.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "b", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}, Policy: workflow.TerminateExisting})
	must(t, err)

	_, err = s.ConsumeEvent(ctx, lifecycle.ConsumeRequest{InstanceID: "a", Name: "approval", Revision: rev,
		Advance: func(sn *workflow.Snapshot, payload []byte) error {
			sn.MarkTaskCompleted(taskB, payload, sn.UpdatedAt)
			sn.UpdatePosition(workflow.AtTaskPosition(taskC), sn.UpdatedAt)
			return nil
		}})
	must(t, err)

	// c: pause, unpause, a task result, fail.
	must(t, s.StoreSignal(ctx, "c", workflow.Pause, workflow.SignalRequest{Reason: "maintenance", RequestedBy: "ops"}))
	ok, err := s.CheckAndPause(ctx, "c")
	must(t, err)
	if !ok {
		t.Fatal("c not paused")
	}
	_, err = s.Unpause(ctx, "c")
	must(t, err)
	sc, revc, err := s.LoadSnapshot(ctx, "c")
	must(t, err)
	revc, err = s.SaveTaskResult(ctx, "c", revc, taskA, []byte("partial"))
	must(t, err)
	sc, revc, err = s.LoadSnapshot(ctx, "c")
	must(t, err)
	sc.MarkFailed("boom", sc.UpdatedAt)
	_, err = s.SaveSnapshot(ctx, sc, revc)
	must(t, err)

	// b: complete, delete.
	sb := pb2.Snapshot
	sb.MarkCompleted([]byte("done"), sb.UpdatedAt)
	_, err = s.SaveSnapshot(ctx, sb, pb2.Revision)
	must(t, err)
	must(t, s.DeleteSnapshot(ctx, "b", "retention"))

	// a: cancel.
	must(t, s.StoreSignal(ctx, "a", workflow.Cancel, workflow.SignalRequest{Reason: "customer asked", RequestedBy: "support"}))
	cancelled, err := s.CheckAndCancel(ctx, "a", &taskC)
	must(t, err)
	if !cancelled {
		t.Fatal("a not cancelled")
	}
}

// cleanLog returns a memlog with the histories of buildHistories.
func cleanLog(t *testing.T) *memlog.Log {
	t.Helper()
	l := memlog.New(clock())
	buildHistories(t, l)
	return l
}

// read returns an instance's messages.
func read(t *testing.T, src Source, id string) []events.Message {
	t.Helper()
	var out []events.Message
	for m, err := range src.Read(t.Context(), id, 0) {
		must(t, err)
		out = append(out, m)
	}
	return out
}

// all returns every instance's messages.
func all(t *testing.T, src Source) map[string][]events.Message {
	t.Helper()
	ids, err := src.Instances(t.Context(), "", 0)
	must(t, err)
	out := make(map[string][]events.Message)
	for _, id := range ids {
		out[id] = read(t, src, id)
	}
	return out
}

// craft writes messages into a fresh memlog, instance by instance in
// the order given, as raw appends with the right expected sequence.
func craft(t *testing.T, order []string, msgs map[string][]events.Message) *memlog.Log {
	t.Helper()
	l := memlog.New(clock())
	for _, id := range order {
		var last uint64
		for _, m := range msgs[id] {
			seq, err := l.Append(context.Background(), id, events.Message{MsgID: m.MsgID, Header: m.Header, Data: m.Data}, last)
			must(t, err)
			last = seq
		}
	}
	return l
}

// fold folds an instance's history.
func fold(t *testing.T, src Source, id string) projection.State {
	t.Helper()
	st, err := projection.Fold(id, src.Read(t.Context(), id, 0))
	must(t, err)
	return st
}

func decode(t *testing.T, m events.Message) events.Record {
	t.Helper()
	rec, err := events.Decode(m, "")
	must(t, err)
	return rec
}

// encode re-encodes a commit, keeping the message's MsgID.
func encode(t *testing.T, c events.Commit) events.Message {
	t.Helper()
	m, err := c.Encode()
	must(t, err)
	return m
}

// problemsOf returns the problems of one instance.
func problemsOf(r *Report, id string) []Problem {
	var out []Problem
	for _, p := range r.Problems {
		if p.Instance == id {
			out = append(out, p)
		}
	}
	return out
}

func mustULID(t *testing.T, s string) ulid.ULID {
	t.Helper()
	id, err := ulid.Parse(s)
	must(t, err)
	return id
}

// eventIDOf returns the id of the event.sent event of name in msgs.
func eventIDOf(t *testing.T, msgs []events.Message, name string) ulid.ULID {
	t.Helper()
	for _, m := range msgs {
		for _, e := range decode(t, m).Commit.Events {
			if d, ok := e.Data.(*events.EventSentData); ok && d.Name == name {
				return e.ID
			}
		}
	}
	t.Fatalf("no event %q sent", name)
	return ulid.ULID{}
}

func seqString(n uint64) string { return strconv.FormatUint(n, 10) }

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}
