package badinput

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

var (
	discard = slog.New(slog.DiscardHandler)
	defHash = workflow.DefinitionHashOf("badinput workflow v1")
	first   = workflow.TaskHint{ID: workflow.NewTaskID("first")}
)

// env is one embedded server with a JetStream log and a store on it.
type env struct {
	log   *jetstream.Log
	nc    *nats.Conn // the log's connection
	store *lifecycle.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	nc := natstest.Connect(t, natstest.Start(t))
	log, err := jetstream.Open(t.Context(), nc, jetstream.Config{Logger: discard})
	if err != nil {
		t.Fatalf("jetstream.Open: %v", err)
	}
	t.Cleanup(func() { _ = log.Close() })
	return &env{log: log, nc: nc, store: newStore(t, log, 0)}
}

func newStore(t *testing.T, log lifecycle.Log, maxPayload int) *lifecycle.Store {
	t.Helper()
	s, err := lifecycle.New(log, lifecycle.Config{Logger: discard, MaxPayload: maxPayload})
	if err != nil {
		t.Fatalf("lifecycle.New: %v", err)
	}
	return s
}

// start creates a run of id with a checkpoint and a pending pause, so that
// the history has a few commits, and returns the snapshot and revision a
// worker holds.
func (e *env) start(t *testing.T, id string) (*workflow.Snapshot, lifecycle.Revision) {
	t.Helper()
	ctx := t.Context()
	p, err := e.store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defHash, Input: []byte("in"), FirstTask: first})
	if err != nil {
		t.Fatalf("PrepareRun %q: %v", id, err)
	}
	snap := p.Snapshot.Clone()
	snap.MarkTaskCompleted(first.ID, []byte("out"), p.Snapshot.CreatedAt)
	snap.UpdatePosition(workflow.AtTaskPosition(workflow.NewTaskID("second")), p.Snapshot.CreatedAt)
	rev, err := e.store.SaveSnapshot(ctx, snap, p.Revision)
	if err != nil {
		t.Fatalf("SaveSnapshot %q: %v", id, err)
	}
	if err := e.store.StoreSignal(ctx, id, workflow.Pause, workflow.SignalRequest{Reason: "setup"}); err != nil {
		t.Fatalf("StoreSignal %q: %v", id, err)
	}
	return snap, rev
}

// lastSeq returns the sequence of id's last message (0: none).
func (e *env) lastSeq(t *testing.T, id string) uint64 {
	t.Helper()
	m, ok, err := e.log.LastMessage(t.Context(), id)
	if err != nil {
		t.Fatalf("LastMessage %q: %v", id, err)
	}
	if !ok {
		return 0
	}
	return m.Seq
}

// streamMsgs returns the number of messages in the stream.
func (e *env) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	js, err := natsjs.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), e.log.Stream())
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

// inject publishes data with headers on id's subject as another program
// would (no sequence check, no runlog code), and returns its sequence.
func (e *env) inject(t *testing.T, id string, hdr nats.Header, data []byte) uint64 {
	t.Helper()
	js, err := natsjs.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(e.log.SubjectFor(id))
	for k, v := range hdr {
		m.Header[k] = slices.Clone(v)
	}
	m.Data = data
	ack, err := js.PublishMsg(t.Context(), m)
	if err != nil {
		t.Fatalf("inject on %q: %v", id, err)
	}
	if ack.Duplicate {
		t.Fatalf("inject on %q: acknowledged as a duplicate", id)
	}
	return ack.Sequence
}

// commitFor returns a well-formed commit of id: a pause signal of the
// current run, chained to the current head, as runlog would write it.
func (e *env) commitFor(t *testing.T, id string) (events.Commit, projection.State) {
	t.Helper()
	st, err := newStore(t, e.log, 0).Load(t.Context(), id)
	if err != nil {
		t.Fatalf("Load %q: %v", id, err)
	}
	ids := events.NewIDSource(nil, nil)
	cid, at, err := ids.New()
	if err != nil {
		t.Fatal(err)
	}
	eid, err := ids.Next(at)
	if err != nil {
		t.Fatal(err)
	}
	c := events.Commit{ID: cid, Instance: id, Time: at.UTC(), Command: "store_signal", Actor: "intruder", Prev: st.Head,
		Events: []events.Event{{ID: eid, Type: events.SignalStored, Run: st.Run,
			Data: &events.SignalStoredData{Kind: workflow.Cancel, Reason: "injected", RequestedAt: at.UTC()}}}}
	return c, st
}

func encode(t *testing.T, c events.Commit) (nats.Header, []byte) {
	t.Helper()
	m, err := c.Encode()
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return nats.Header(m.Header), m.Data
}

// rewrite changes the JSON payload of an encoded commit.
func rewrite(t *testing.T, data []byte, change func(map[string]any)) []byte {
	t.Helper()
	var w map[string]any
	if err := json.Unmarshal(data, &w); err != nil {
		t.Fatal(err)
	}
	change(w)
	out, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// corruption is one kind of foreign or corrupt message.
type corruption struct {
	name string
	// message returns what to publish on id's subject.
	message func(t *testing.T, e *env, id string) (nats.Header, []byte)
	// history: the fold refuses it (projection.ErrInvalidHistory); else
	// it does not decode (events.ErrCorrupt).
	history bool
	// kinds are the audit problem kinds that may report it.
	kinds []audit.ProblemKind
}

var corruptions = []corruption{
	{
		name: "garbage bytes",
		message: func(t *testing.T, e *env, id string) (nats.Header, []byte) {
			return nil, []byte("\x00\xffnot json at all {{{")
		},
		kinds: []audit.ProblemKind{audit.KindDecode},
	},
	{
		name: "unknown event type",
		message: func(t *testing.T, e *env, id string) (nats.Header, []byte) {
			c, _ := e.commitFor(t, id)
			h, data := encode(t, c)
			h.Set(events.HeaderEvents, "workflow.teleported")
			return h, rewrite(t, data, func(w map[string]any) {
				w["events"].([]any)[0].(map[string]any)["type"] = "workflow.teleported"
			})
		},
		kinds: []audit.ProblemKind{audit.KindDecode},
	},
	{
		name: "newer schema version",
		message: func(t *testing.T, e *env, id string) (nats.Header, []byte) {
			c, _ := e.commitFor(t, id)
			h, data := encode(t, c)
			h.Set(events.HeaderSchema, "2")
			return h, rewrite(t, data, func(w map[string]any) { w["v"] = events.SchemaVersion + 1 })
		},
		kinds: []audit.ProblemKind{audit.KindSchema},
	},
	{
		name: "commit of another instance",
		message: func(t *testing.T, e *env, id string) (nats.Header, []byte) {
			// A real commit of another instance, replayed on this one.
			other := id + "-other"
			e.start(t, other)
			m, ok, err := e.log.LastMessage(t.Context(), other)
			if err != nil || !ok {
				t.Fatalf("LastMessage %q: %v %v", other, ok, err)
			}
			// Keep runlog's headers; drop the stored Nats-* ones (the
			// Msg-Id would be dropped as a duplicate, the expected
			// sequence refused).
			h := nats.Header{}
			for k, v := range m.Header {
				if !strings.HasPrefix(k, "Nats-") {
					h[k] = v
				}
			}
			return h, m.Data
		},
		kinds: []audit.ProblemKind{audit.KindForeign},
	},
	{
		name: "broken chain",
		message: func(t *testing.T, e *env, id string) (nats.Header, []byte) {
			// Well formed, of this instance and run, allowed where it
			// lands, but its prev is not the hash of the commit before.
			c, _ := e.commitFor(t, id)
			c.Prev = workflow.Sha256([]byte("a commit that is not there"))
			return encode(t, c)
		},
		history: true,
		kinds:   []audit.ProblemKind{audit.KindChain, audit.KindReordered},
	},
}

// TestCorruptHistory publishes each kind of foreign or corrupt message on
// an instance's subject, then checks that reads fail naming its sequence,
// that writes refuse to build on it and append nothing, that audit.Verify
// reports it, and that other instances are unaffected.
func TestCorruptHistory(t *testing.T) {
	e := newEnv(t)
	for i, c := range corruptions {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			id := fmt.Sprintf("bad.%d %s", i, c.name) // dots and spaces: encoded subjects
			bystander := fmt.Sprintf("ok.%d", i)
			snap, rev := e.start(t, id)
			e.start(t, bystander)
			hdr, data := c.message(t, e, id)
			seq := e.inject(t, id, hdr, data)
			t.Logf("%s: injected at seq %d on %s", c.name, seq, e.log.SubjectFor(id))

			// Reads fail naming the sequence: from the store that wrote
			// the history (its projection is cached) and from a fresh one.
			fresh := newStore(t, e.log, 0)
			for name, s := range map[string]*lifecycle.Store{"writer's store": e.store, "fresh store": fresh} {
				_, err := s.Load(ctx, id)
				checkCorrupt(t, name+": Load", err, c.history, seq)
				_, _, err = s.LoadSnapshot(ctx, id)
				checkCorrupt(t, name+": LoadSnapshot", err, c.history, seq)
			}

			// Writes refuse to build on it and append nothing.
			before := e.lastSeq(t, id)
			if before != seq {
				t.Fatalf("last sequence of %q is %d, want the injected %d", id, before, seq)
			}
			for _, policy := range []workflow.ConflictPolicy{workflow.Fail, workflow.UseExisting, workflow.TerminateExisting} {
				_, err := e.store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defHash, FirstTask: first, Policy: policy})
				checkCorrupt(t, "PrepareRun "+policy.String(), err, c.history, seq)
			}
			next := snap.Clone()
			next.MarkTaskCompleted(workflow.NewTaskID("second"), []byte("out 2"), snap.UpdatedAt)
			_, err := e.store.SaveSnapshot(ctx, next, rev)
			checkCorrupt(t, "SaveSnapshot", err, c.history, seq)
			err = e.store.StoreSignal(ctx, id, workflow.Cancel, workflow.SignalRequest{Reason: "after"})
			checkCorrupt(t, "StoreSignal", err, c.history, seq)
			_, err = fresh.CheckControlSignals(ctx, id, nil)
			checkCorrupt(t, "CheckControlSignals", err, c.history, seq)
			err = fresh.DeleteSnapshot(ctx, id, "after")
			checkCorrupt(t, "DeleteSnapshot", err, c.history, seq)
			if after := e.lastSeq(t, id); after != before {
				t.Errorf("last sequence of %q moved from %d to %d: a write built on the corrupt history", id, before, after)
			}

			// audit.Verify reports it, at its sequence.
			rep, err := audit.Verify(ctx, e.log, audit.VerifyOptions{IDs: []string{id, bystander}})
			if err != nil {
				t.Fatalf("audit.Verify: %v", err)
			}
			found := false
			for _, p := range rep.Problems {
				t.Logf("audit: %s", p)
				if p.Instance != id {
					t.Errorf("audit reports a problem of the untouched instance %q: %s", p.Instance, p)
					continue
				}
				if p.Seq <= seq && seq <= p.Through && slices.Contains(c.kinds, p.Kind) {
					found = true
				}
			}
			if !found {
				t.Errorf("audit.Verify does not report a %v problem at seq %d of %q", c.kinds, seq, id)
			}

			// Other instances read and write as before.
			checkHealthy(t, e, bystander)
		})
	}
}

// checkCorrupt checks that err says the history is corrupt at seq: it
// matches the sentinel, carries the typed error with the sequence, and
// says the sequence in its text.
func checkCorrupt(t *testing.T, op string, err error, history bool, seq uint64) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error on a corrupt history (seq %d)", op, seq)
		return
	}
	var got uint64
	if history {
		he, ok := errors.AsType[*projection.HistoryError](err)
		if !errors.Is(err, projection.ErrInvalidHistory) || !ok {
			t.Errorf("%s: %v: want an error matching projection.ErrInvalidHistory", op, err)
			return
		}
		got = he.Seq
	} else {
		de, ok := errors.AsType[*events.DecodeError](err)
		if !errors.Is(err, events.ErrCorrupt) || !ok {
			t.Errorf("%s: %v: want an error matching events.ErrCorrupt", op, err)
			return
		}
		got = de.Seq
	}
	if got != seq {
		t.Errorf("%s: %v: names seq %d, want %d", op, err, got, seq)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("seq %d", seq)) {
		t.Errorf("%s: %q does not say seq %d", op, err, seq)
	}
	for _, s := range []error{lifecycle.ErrAlreadyExists, lifecycle.ErrNotFound, lifecycle.ErrConcurrentModification, lifecycle.ErrWrongSequence} {
		if errors.Is(err, s) {
			t.Errorf("%s: %v: also matches %v", op, err, s)
		}
	}
}

// checkHealthy runs reads and writes on an untouched instance.
func checkHealthy(t *testing.T, e *env, id string) {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	for _, s := range []*lifecycle.Store{e.store, newStore(t, e.log, 0)} {
		snap, rev, err := s.LoadSnapshot(ctx, id)
		if err != nil {
			t.Fatalf("LoadSnapshot %q: %v", id, err)
		}
		next := snap.Clone()
		task := workflow.NewTaskID(ulid.Make().String())
		next.MarkTaskCompleted(task, []byte("more"), snap.UpdatedAt)
		if _, err := s.SaveSnapshot(ctx, next, rev); err != nil {
			t.Errorf("SaveSnapshot %q: %v", id, err)
		}
		if err := s.StoreSignal(ctx, id, workflow.Cancel, workflow.SignalRequest{Reason: "healthy"}); err != nil {
			t.Errorf("StoreSignal %q: %v", id, err)
		}
		if _, err := s.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defHash, FirstTask: first, Policy: workflow.TerminateExisting}); err != nil {
			t.Errorf("PrepareRun %q: %v", id, err)
		}
		st, err := s.Load(ctx, id)
		if err != nil || !st.Exists {
			t.Errorf("Load %q: exists %t, %v", id, st.Exists, err)
		}
	}
}
