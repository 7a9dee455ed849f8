package projection_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

func fold(t *testing.T, h *history) projection.State {
	t.Helper()
	st, err := projection.Fold(h.instance, seqOf(h.msgs))
	if err != nil {
		t.Fatalf("Fold: %v", err)
	}
	return st
}

func TestFoldEmpty(t *testing.T) {
	t.Parallel()
	st, err := projection.Fold(inst, seqOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, projection.New(inst)) {
		t.Errorf("Fold of nothing = %+v", st)
	}
	if st.Exists || st.Snapshot != nil || st.LastSeq != 0 || !st.Head.IsZero() {
		t.Errorf("empty state: %+v", st)
	}
	if _, ok := st.Status(); ok {
		t.Error("Status of an empty state is ok")
	}
}

func TestFoldCreate(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	msg := h.add(created(run1, "input-1"))
	st := fold(t, h)

	if !st.Exists || st.Run != run1 || st.Runs != 1 || st.Instance != inst {
		t.Fatalf("state: exists %v run %v runs %d instance %q", st.Exists, st.Run, st.Runs, st.Instance)
	}
	if st.LastSeq != 10 || st.Head != workflow.Sha256(msg.Data) || !st.LastTime.Equal(t0) {
		t.Errorf("position: seq %d head %v time %v", st.LastSeq, st.Head, st.LastTime)
	}
	if st.Commits != 1 || st.Events != 1 || st.Bytes != len(msg.Data) {
		t.Errorf("counters: commits %d events %d bytes %d", st.Commits, st.Events, st.Bytes)
	}
	s := st.Snapshot
	if s == nil {
		t.Fatal("no snapshot")
	}
	if s.InstanceID != inst || s.DefinitionHash != def || string(s.InitialInput) != "input-1" || s.TraceParent != "00-trace" {
		t.Errorf("snapshot identity: %+v", s)
	}
	if s.State.Kind != workflow.InProgress || !s.State.Position.Equal(workflow.AtTaskPosition(taskA)) {
		t.Errorf("snapshot state %v at %+v, want InProgress at the first task", s.State.Kind, s.State.Position)
	}
	if s.CurrentTaskPriority() != 2 || !reflect.DeepEqual(s.TaskTags, []string{"gpu"}) {
		t.Errorf("hint not applied: priority %d tags %v", s.CurrentTaskPriority(), s.TaskTags)
	}
	if !s.CreatedAt.Equal(t0) || !s.UpdatedAt.Equal(t0) {
		t.Errorf("times %v %v, want the commit time", s.CreatedAt, s.UpdatedAt)
	}
	if status, ok := st.Status(); !ok || status.Kind != workflow.StatusInProgress {
		t.Errorf("Status() = %+v, %v", status, ok)
	}
	if len(st.Signals) != 0 {
		t.Errorf("signals: %v", st.Signals)
	}
}

func TestFoldCreateDeleteCreate(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, "first"))
	h.add(deleted(run1))
	afterDelete := fold(t, h)
	if afterDelete.Exists || afterDelete.Snapshot != nil {
		t.Errorf("after delete: exists %v snapshot %v", afterDelete.Exists, afterDelete.Snapshot)
	}
	if afterDelete.Run != run1 || afterDelete.Runs != 1 {
		t.Errorf("after delete: run %v runs %d; want the last run kept", afterDelete.Run, afterDelete.Runs)
	}
	if _, ok := afterDelete.Status(); ok {
		t.Error("Status() ok after delete")
	}

	h.add(created(run2, "second"))
	st := fold(t, h)
	if !st.Exists || st.Run != run2 || st.Runs != 2 || string(st.Snapshot.InitialInput) != "second" {
		t.Errorf("after re-create: exists %v run %v runs %d input %q", st.Exists, st.Run, st.Runs, st.Snapshot.InitialInput)
	}
	if st.Commits != 3 || st.Events != 3 || st.LastSeq != 30 {
		t.Errorf("counters: %d commits %d events seq %d", st.Commits, st.Events, st.LastSeq)
	}
}

func TestFoldSignals(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, ""))
	h.add(stored(run1, workflow.Cancel, "first"))
	st := fold(t, h)
	if r, ok := st.Signal(workflow.Cancel); !ok || r.Reason != "first" || r.RequestedBy != "ops" || !r.RequestedAt.Equal(t0) {
		t.Errorf("Signal(cancel) = %+v, %v", r, ok)
	}
	if _, ok := st.Signal(workflow.Pause); ok {
		t.Error("pause pending")
	}

	h.add(stored(run1, workflow.Cancel, "second")) // latest wins
	h.add(stored(run1, workflow.Pause, "hold"))
	st = fold(t, h)
	if r, _ := st.Signal(workflow.Cancel); r.Reason != "second" {
		t.Errorf("cancel reason %q, want the latest", r.Reason)
	}
	if r, ok := st.Signal(workflow.Pause); !ok || r.Reason != "hold" {
		t.Errorf("Signal(pause) = %+v, %v", r, ok)
	}

	h.add(cleared(run1, workflow.Cancel))
	st = fold(t, h)
	if _, ok := st.Signal(workflow.Cancel); ok {
		t.Error("cancel still pending after clear")
	}
	if _, ok := st.Signal(workflow.Pause); !ok {
		t.Error("clearing cancel cleared pause")
	}
	if st.Snapshot.State.Kind != workflow.InProgress {
		t.Error("a signal changed the snapshot state")
	}
}

func TestFoldTerminateExistingCommit(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, "old"))
	h.add(stored(run1, workflow.Cancel, "c"))
	h.add(stored(run1, workflow.Pause, "p"))
	before := fold(t, h)
	msg := h.add(deleted(run1), cleared(run1, workflow.Cancel), cleared(run1, workflow.Pause), created(run2, "new"))
	st := fold(t, h)
	if !st.Exists || st.Run != run2 || st.Runs != 2 || string(st.Snapshot.InitialInput) != "new" {
		t.Errorf("exists %v run %v runs %d", st.Exists, st.Run, st.Runs)
	}
	if len(st.Signals) != 0 {
		t.Errorf("signals %v survived", st.Signals)
	}
	if st.Commits != before.Commits+1 || st.Events != before.Events+4 || st.LastSeq != msg.Seq {
		t.Errorf("one commit of four events: commits %d events %d", st.Commits, st.Events)
	}
	// Applied one commit at a time, the instance is never seen deleted.
	s := projection.New(inst)
	for _, m := range h.msgs {
		if err := s.Apply(decode(t, m)); err != nil {
			t.Fatal(err)
		}
		if !s.Exists {
			t.Fatalf("after seq %d the instance has no snapshot", m.Seq)
		}
	}
}

func TestApplyErrors(t *testing.T) {
	t.Parallel()
	type tc struct {
		name  string
		setup func(h *history)               // the valid history before
		rec   func(h *history) events.Record // the offending commit
		event int                            // index the error names; -1 for the commit
		typ   events.Type                    // type the error names
		says  string                         // fragment of the reason
	}
	base := func(h *history) { h.add(created(run1, "x")) }
	terminated := func(h *history) {
		base(h)
		h.add(deleted(run1), created(run2, "y"))
	}
	tests := []tc{
		{
			name: "broken prev chain", setup: base, event: -1, says: "hash chain broken",
			rec: func(h *history) events.Record {
				return decode(h.t, h.message(h.seq+10, workflow.Sha256([]byte("other")), h.at, stored(run1, workflow.Cancel, "")))
			},
		},
		{
			name: "prev chained to an older commit", event: -1, says: "hash chain broken",
			setup: func(h *history) { base(h); h.add(stored(run1, workflow.Cancel, "")) },
			rec: func(h *history) events.Record {
				return decode(h.t, h.message(h.seq+10, workflow.Sha256(h.msgs[0].Data), h.at, stored(run1, workflow.Pause, "")))
			},
		},
		{
			name: "second commit with zero prev", setup: base, event: -1, says: "hash chain broken",
			rec: func(h *history) events.Record {
				return decode(h.t, h.message(h.seq+10, workflow.Hash32{}, h.at, stored(run1, workflow.Cancel, "")))
			},
		},
		{
			name: "first commit with non-zero prev", setup: func(*history) {}, event: -1, says: "first commit",
			rec: func(h *history) events.Record {
				return decode(h.t, h.message(10, workflow.Sha256([]byte("truncated")), h.at, created(run1, "")))
			},
		},
		{
			name: "commit for another instance", setup: base, event: -1, says: `"order-43"`,
			rec: func(h *history) events.Record {
				h.instance = "order-43"
				defer func() { h.instance = inst }()
				return h.next(stored(run1, workflow.Cancel, ""))
			},
		},
		{
			name: "same sequence again", setup: base, event: -1, says: "sequence does not increase",
			rec: func(h *history) events.Record {
				return decode(h.t, h.message(h.seq, h.head, h.at, stored(run1, workflow.Cancel, "")))
			},
		},
		{
			name: "lower sequence", setup: base, event: -1, says: "sequence does not increase",
			rec: func(h *history) events.Record {
				return decode(h.t, h.message(h.seq-1, h.head, h.at, stored(run1, workflow.Cancel, "")))
			},
		},
		{
			name: "create while exists", setup: base, event: 0, typ: events.SnapshotCreated, says: "exists",
			rec: func(h *history) events.Record { return h.next(created(run2, "")) },
		},
		{
			name: "create with the current run id", setup: func(h *history) { base(h); h.add(deleted(run1)) }, event: 0, typ: events.SnapshotCreated, says: "new run",
			rec: func(h *history) events.Record { return h.next(created(run1, "")) },
		},
		{
			name: "delete while absent", setup: func(*history) {}, event: 0, typ: events.SnapshotDeleted, says: "none exists",
			rec: func(h *history) events.Record { return h.next(deleted(ulid.ULID{})) },
		},
		{
			name: "delete twice", setup: func(h *history) { base(h); h.add(deleted(run1)) }, event: 0, typ: events.SnapshotDeleted, says: "none exists",
			rec: func(h *history) events.Record { return h.next(deleted(run1)) },
		},
		{
			name: "signal while absent", setup: func(*history) {}, event: 0, typ: events.SignalStored, says: "no snapshot",
			rec: func(h *history) events.Record { return h.next(stored(ulid.ULID{}, workflow.Cancel, "")) },
		},
		{
			name: "event of a run before the first", setup: func(*history) {}, event: 0, typ: events.SignalStored, says: "run",
			rec: func(h *history) events.Record { return h.next(stored(run1, workflow.Cancel, "")) },
		},
		{
			name: "delete leaving a signal pending", setup: func(h *history) { base(h); h.add(stored(run1, workflow.Cancel, "c")) },
			event: -1, says: "pending",
			rec: func(h *history) events.Record { return h.next(deleted(run1)) },
		},
		{
			name: "signal after delete", setup: func(h *history) { base(h); h.add(deleted(run1)) }, event: 0, typ: events.SignalStored, says: "no snapshot",
			rec: func(h *history) events.Record { return h.next(stored(run1, workflow.Cancel, "")) },
		},
		{
			name: "clear of a signal not pending", setup: base, event: 0, typ: events.SignalCleared, says: "none is pending",
			rec: func(h *history) events.Record { return h.next(cleared(run1, workflow.Pause)) },
		},
		{
			name: "signal of an old run", setup: terminated, event: 0, typ: events.SignalStored, says: "run",
			rec: func(h *history) events.Record { return h.next(stored(run1, workflow.Cancel, "")) },
		},
		{
			name: "delete of an old run", setup: terminated, event: 0, typ: events.SnapshotDeleted, says: "run",
			rec: func(h *history) events.Record { return h.next(deleted(run1)) },
		},
		{
			name: "multi-event commit failing half-way", setup: func(h *history) { base(h); h.add(stored(run1, workflow.Pause, "p")) },
			event: 2, typ: events.SnapshotCreated, says: "exists",
			rec: func(h *history) events.Record {
				return h.next(stored(run1, workflow.Cancel, "c"), cleared(run1, workflow.Pause), created(run2, ""))
			},
		},
		{
			name: "multi-event commit failing after a delete", setup: func(h *history) { base(h); h.add(stored(run1, workflow.Pause, "p")) },
			event: 1, typ: events.SignalStored, says: "no snapshot",
			rec: func(h *history) events.Record {
				return h.next(deleted(run1), stored(run1, workflow.Cancel, "c"), created(run2, ""))
			},
		},
		{
			name: "commit with no events", setup: base, event: -1, says: "no events",
			rec: func(h *history) events.Record {
				r := h.next(stored(run1, workflow.Cancel, ""))
				r.Commit.Events = nil
				return r
			},
		},
		{
			name: "signal of an invalid kind", setup: base, event: 0, typ: events.SignalStored, says: "invalid signal kind",
			rec: func(h *history) events.Record {
				r := h.next(stored(run1, workflow.Cancel, ""))
				r.Commit.Events[0].Data = &events.SignalStoredData{Kind: 0}
				return r
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHistory(t)
			tt.setup(h)
			st := fold(t, h)
			before := st.Clone()
			rec := tt.rec(h)
			err := st.Apply(rec)
			if err == nil {
				t.Fatalf("Apply = nil, want a *HistoryError")
			}
			if !errors.Is(err, projection.ErrInvalidHistory) {
				t.Errorf("errors.Is(%v, ErrInvalidHistory) = false", err)
			}
			he, ok := errors.AsType[*projection.HistoryError](err)
			if !ok {
				t.Fatalf("error %T is not a *HistoryError", err)
			}
			if he.Seq != rec.Seq || !strings.Contains(err.Error(), "seq "+strconv.FormatUint(rec.Seq, 10)) {
				t.Errorf("error names seq %d (%q), want %d", he.Seq, err, rec.Seq)
			}
			if he.Instance != inst {
				t.Errorf("error names instance %q", he.Instance)
			}
			if he.Event != tt.event || he.Type != tt.typ {
				t.Errorf("error names event %d (%q), want %d (%q): %v", he.Event, he.Type, tt.event, tt.typ, err)
			}
			if !strings.Contains(he.Reason, tt.says) {
				t.Errorf("reason %q does not say %q", he.Reason, tt.says)
			}
			if !reflect.DeepEqual(st, before) {
				t.Errorf("a refused commit changed the state:\n got %+v\nwant %+v", st, before)
			}
		})
	}
}

// TestApplyRefusedFirstCommitLeavesStateUnchanged: a state made with an
// empty instance adopts the instance of its first commit, but only if that
// commit is applied. "On error s is left unchanged."
func TestApplyRefusedFirstCommitLeavesStateUnchanged(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	bad := decode(t, h.message(10, workflow.Sha256([]byte("truncated")), t0, created(run1, "")))
	st := projection.New("")
	if err := st.Apply(bad); !errors.Is(err, projection.ErrInvalidHistory) {
		t.Fatalf("Apply = %v, want ErrInvalidHistory", err)
	}
	if !reflect.DeepEqual(st, projection.New("")) {
		t.Errorf("refused first commit changed the state: instance %q", st.Instance)
	}
	// And a valid first commit is adopted.
	good := decode(t, h.message(10, workflow.Hash32{}, t0, created(run1, "")))
	if err := st.Apply(good); err != nil || st.Instance != inst {
		t.Errorf("Apply = %v, instance %q", err, st.Instance)
	}
}

func TestFoldErrors(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, "x"))
	h.add(stored(run1, workflow.Cancel, ""))

	t.Run("decode error names the sequence", func(t *testing.T) {
		t.Parallel()
		msgs := append(append([]events.Message{}, h.msgs...), events.Message{Seq: 99, Data: []byte("garbage")})
		st, err := projection.Fold(inst, seqOf(msgs))
		de, ok := errors.AsType[*events.DecodeError](err)
		if !ok || de.Seq != 99 || !errors.Is(err, events.ErrCorrupt) {
			t.Fatalf("Fold = %v, want a *DecodeError at seq 99", err)
		}
		if st.LastSeq != 20 {
			t.Errorf("state after the error is at seq %d, want 20 (before the failing message)", st.LastSeq)
		}
	})
	t.Run("history error names the sequence", func(t *testing.T) {
		t.Parallel()
		bad := h.message(30, workflow.Hash32{}, t0, deleted(run1))
		_, err := projection.Fold(inst, seqOf(append(append([]events.Message{}, h.msgs...), bad)))
		he, ok := errors.AsType[*projection.HistoryError](err)
		if !ok || he.Seq != 30 {
			t.Fatalf("Fold = %v, want a *HistoryError at seq 30", err)
		}
	})
	t.Run("message of another instance", func(t *testing.T) {
		t.Parallel()
		_, err := projection.Fold("order-43", seqOf(h.msgs))
		if de, ok := errors.AsType[*events.DecodeError](err); !ok || de.Seq != 10 {
			t.Fatalf("Fold = %v, want a *DecodeError at seq 10", err)
		}
	})
	t.Run("read error returned as is", func(t *testing.T) {
		t.Parallel()
		readErr := errors.New("log unavailable")
		st, err := projection.Fold(inst, withError(h.msgs[:1], readErr))
		if err != readErr {
			t.Fatalf("Fold = %v, want the read error itself", err)
		}
		if st.LastSeq != 10 {
			t.Errorf("state at seq %d, want 10", st.LastSeq)
		}
	})
}

func TestCatchUp(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, "x"))
	h.add(stored(run1, workflow.Cancel, ""))
	h.add(stored(run1, workflow.Pause, ""))
	h.add(deleted(run1), cleared(run1, workflow.Cancel), cleared(run1, workflow.Pause), created(run2, "y"))
	want := fold(t, h)

	st := projection.New(inst)
	if err := st.CatchUp(seqOf(h.msgs[:2]), projection.Until{}); err != nil {
		t.Fatal(err)
	}
	if err := st.CatchUp(seqOf(h.msgs[2:]), projection.Until{}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("incremental fold differs:\n got %+v\nwant %+v", st, want)
	}
	// Catching up with messages already folded is refused.
	if err := st.CatchUp(seqOf(h.msgs[3:]), projection.Until{}); !errors.Is(err, projection.ErrInvalidHistory) {
		t.Errorf("CatchUp of an old message = %v", err)
	}
}

func TestFoldUntil(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, "x"))                            // seq 10, t0
	h.add(stored(run1, workflow.Cancel, ""))             // seq 20, t0+1m
	h.add(deleted(run1), cleared(run1, workflow.Cancel)) // seq 30, t0+2m
	h.add(created(run2, "y"))                            // seq 40, t0+3m
	tests := []struct {
		name    string
		until   projection.Until
		lastSeq uint64
		exists  bool
	}{
		{"zero bound folds all", projection.Until{}, 40, true},
		{"seq before the first", projection.Until{Seq: 5}, 0, false},
		{"seq of the first", projection.Until{Seq: 10}, 10, true},
		{"seq between commits", projection.Until{Seq: 25}, 20, true},
		{"seq of a delete", projection.Until{Seq: 30}, 30, false},
		{"seq past the end", projection.Until{Seq: 1000}, 40, true},
		{"time before the first", projection.Until{Time: t0.Add(-time.Nanosecond)}, 0, false},
		{"time of the first is included", projection.Until{Time: t0}, 10, true},
		{"time between commits", projection.Until{Time: t0.Add(90 * time.Second)}, 20, true},
		{"time of the delete", projection.Until{Time: t0.Add(2 * time.Minute)}, 30, false},
		{"time in another zone", projection.Until{Time: t0.Add(2 * time.Minute).In(time.FixedZone("x", -7200))}, 30, false},
		{"time past the end", projection.Until{Time: t0.Add(time.Hour)}, 40, true},
		{"both: seq is stricter", projection.Until{Seq: 20, Time: t0.Add(time.Hour)}, 20, true},
		{"both: time is stricter", projection.Until{Seq: 40, Time: t0}, 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, err := projection.FoldUntil(inst, seqOf(h.msgs), tt.until)
			if err != nil {
				t.Fatal(err)
			}
			if st.LastSeq != tt.lastSeq || st.Exists != tt.exists {
				t.Errorf("FoldUntil(%+v): seq %d exists %v; want seq %d exists %v", tt.until, st.LastSeq, st.Exists, tt.lastSeq, tt.exists)
			}
			// It equals the fold of the prefix.
			var prefix []events.Message
			for _, m := range h.msgs {
				if m.Seq <= tt.lastSeq {
					prefix = append(prefix, m)
				}
			}
			want, err := projection.Fold(inst, seqOf(prefix))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(st, want) {
				t.Errorf("FoldUntil differs from the fold of the prefix")
			}
		})
	}
}

// TestFoldUntilSeqIgnoresLaterMessages: "[Until] stops before the first
// commit whose sequence is greater than Seq", so the state as of a
// sequence does not depend on what was written after it, not even on a
// later message that does not decode.
func TestFoldUntilSeqIgnoresLaterMessages(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, "x"))
	msgs := append(append([]events.Message{}, h.msgs...), events.Message{Seq: 20, Data: []byte("garbage")})
	st, err := projection.FoldUntil(inst, seqOf(msgs), projection.Until{Seq: 10})
	if err != nil {
		t.Fatalf("FoldUntil(seq 10) = %v; a message after the bound must not be decoded", err)
	}
	if st.LastSeq != 10 || !st.Exists {
		t.Errorf("state at seq %d exists %v", st.LastSeq, st.Exists)
	}
}

func TestFoldUntilStopsReading(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, "x"))
	h.add(stored(run1, workflow.Cancel, ""))
	h.add(stored(run1, workflow.Pause, ""))
	read := 0
	msgs := func(yield func(events.Message, error) bool) {
		for _, m := range h.msgs {
			read++
			if !yield(m, nil) {
				return
			}
		}
	}
	if _, err := projection.FoldUntil(inst, msgs, projection.Until{Seq: 10}); err != nil {
		t.Fatal(err)
	}
	if read > 2 {
		t.Errorf("FoldUntil read %d messages past the bound", read-1)
	}
}

func TestStateCloneIsDeep(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, "x"))
	h.add(stored(run1, workflow.Cancel, "c"))
	st := fold(t, h)
	want := fold(t, h)
	c := st.Clone()
	c.Signals[workflow.Pause] = workflow.SignalRequest{}
	delete(c.Signals, workflow.Cancel)
	c.Snapshot.InitialInput[0] = 'Z'
	c.Snapshot.State.Kind = workflow.Failed
	if !reflect.DeepEqual(st, want) {
		t.Error("mutating a clone changed the original")
	}
	// Folding more into the clone leaves the original alone.
	c = st.Clone()
	if err := c.Apply(h.next(stored(run1, workflow.Pause, "p"))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, want) {
		t.Error("applying to a clone changed the original")
	}
}

// TestSteps walks a history with a message that does not decode and a
// commit the projection refuses: every message is yielded, each with its
// own verdict, the state after the walk is the fold of the good ones,
// and a read error ends the walk.
func TestSteps(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, "x"))
	good := fold(t, h)
	msgs := append([]events.Message{}, h.msgs...)
	msgs = append(msgs, events.Message{Seq: 20, Data: []byte("garbage")}, h.message(30, workflow.Hash32{}, t0, deleted(run1)))
	st := projection.New(inst)
	var seqs []uint64
	var verdicts []string
	for step, err := range st.Steps(seqOf(msgs)) {
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, step.Message.Seq)
		_, isDecode := errors.AsType[*events.DecodeError](step.Err)
		_, isHistory := errors.AsType[*projection.HistoryError](step.Err)
		verdicts = append(verdicts, fmt.Sprintf("decoded=%v decode-error=%v refused=%v", step.Decoded(), isDecode, isHistory))
	}
	want := []string{"decoded=true decode-error=false refused=false", "decoded=false decode-error=true refused=false", "decoded=true decode-error=false refused=true"}
	if !slices.Equal(seqs, []uint64{10, 20, 30}) || !slices.Equal(verdicts, want) {
		t.Errorf("steps %v %q, want [10 20 30] %q", seqs, verdicts, want)
	}
	if !reflect.DeepEqual(st, good) {
		t.Errorf("state after the walk:\n got %+v\nwant %+v", st, good)
	}
	readErr := errors.New("log unavailable")
	n, other := 0, projection.New(inst)
	for step, err := range other.Steps(withError(h.msgs, readErr)) {
		if err != nil {
			if err != readErr {
				t.Errorf("read error %v, want it as is", err)
			}
			break
		}
		n++
		_ = step
	}
	if n != 1 {
		t.Errorf("%d steps before the read error, want 1", n)
	}
}

// TestApplyUnlinked: a commit whose prev does not link is refused by
// Apply and folded by ApplyUnlinked; a commit ApplyUnlinked refuses for
// another reason leaves the state, head included, as it was.
func TestApplyUnlinked(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, "x"))
	st := fold(t, h)
	unlinked := h.message(20, workflow.Sha256([]byte("elsewhere")), t0, stored(run1, workflow.Cancel, ""))
	rec, err := events.Decode(unlinked, inst)
	if err != nil {
		t.Fatal(err)
	}
	c := st.Clone()
	if err := c.Apply(rec); !errors.Is(err, projection.ErrInvalidHistory) {
		t.Fatalf("Apply of an unlinked commit: %v", err)
	}
	if err := c.ApplyUnlinked(rec); err != nil || c.LastSeq != 20 || len(c.Signals) != 1 {
		t.Fatalf("ApplyUnlinked: %v, state %+v", err, c)
	}
	bad := h.message(30, workflow.Sha256([]byte("elsewhere too")), t0, created(run2, "again")) // a second create while one exists
	rec, err = events.Decode(bad, inst)
	if err != nil {
		t.Fatal(err)
	}
	before := c.Clone()
	if err := c.ApplyUnlinked(rec); !errors.Is(err, projection.ErrInvalidHistory) {
		t.Fatalf("ApplyUnlinked of an impossible commit: %v", err)
	}
	if !reflect.DeepEqual(c, before) {
		t.Errorf("a refused ApplyUnlinked changed the state:\n got %+v\nwant %+v", c, before)
	}
}

// TestStepOptions: Step takes the caller's hash as the record's (no
// second SHA-256) and, with Unlinked, folds a commit whose prev does not
// link; a foreign commit is a decode error wrapping ErrForeignCommit and
// leaves the state as it was.
func TestStepOptions(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.add(created(run1, "x"))
	st := fold(t, h)
	unlinked := h.message(20, workflow.Sha256([]byte("elsewhere")), t0, stored(run1, workflow.Cancel, ""))

	linked := st.Clone()
	if step := linked.Step(unlinked, projection.StepOptions{}); !errors.Is(step.Err, projection.ErrInvalidHistory) || !step.Decoded() {
		t.Fatalf("Step of an unlinked commit without Unlinked: %v", step.Err)
	}
	given := workflow.Sha256([]byte("the caller's hash"))
	step := st.Step(unlinked, projection.StepOptions{Hash: given, Unlinked: true})
	if step.Err != nil || st.LastSeq != 20 || len(st.Signals) != 1 {
		t.Fatalf("Step with Unlinked: %v, state %+v", step.Err, st)
	}
	if step.Record.Hash != given || st.Head != given {
		t.Errorf("record hash %s, head %s: want the caller's %s", step.Record.Hash, st.Head, given)
	}
	computed := linked.Step(h.msgs[0], projection.StepOptions{})
	if computed.Record.Hash != workflow.Sha256(h.msgs[0].Data) {
		t.Errorf("without a hash: record hash %s, want the SHA-256 of the data", computed.Record.Hash)
	}

	other := projection.New("someone-else")
	before := other.Clone()
	step = other.Step(h.msgs[0], projection.StepOptions{Unlinked: true})
	if _, ok := errors.AsType[*events.DecodeError](step.Err); !ok || !errors.Is(step.Err, events.ErrForeignCommit) || step.Decoded() {
		t.Errorf("foreign commit: %v, want a *DecodeError wrapping ErrForeignCommit", step.Err)
	}
	if !reflect.DeepEqual(other, before) {
		t.Errorf("a foreign commit changed the state: %+v", other)
	}
}
