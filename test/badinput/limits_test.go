package badinput

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// sent reports what an operation sent: the stream's message count and the
// connection's outgoing messages, before and after.
type sent struct {
	e         *env
	msgs, out uint64
}

func (e *env) watch(t *testing.T) sent {
	t.Helper()
	return sent{e: e, msgs: e.streamMsgs(t), out: e.nc.Stats().OutMsgs}
}

// nothing checks that nothing was stored and, if wire is set, that not
// even a request left the connection since the watch began.
func (s sent) nothing(t *testing.T, op string, wire bool) {
	t.Helper()
	out := s.e.nc.Stats().OutMsgs
	if n := s.e.streamMsgs(t); n != s.msgs {
		t.Errorf("%s: the stream went from %d to %d messages", op, s.msgs, n)
	}
	if wire && out != s.out {
		t.Errorf("%s: %d messages left the connection; want none", op, out-s.out)
	}
}

// TestOversizedPayloads: an input, a task output, a final output or an
// event payload over lifecycle.Config.MaxPayload is refused with
// ErrInvalidRequest before anything is sent.
func TestOversizedPayloads(t *testing.T) {
	const limit = 1 << 10
	e := newEnv(t)
	ctx := t.Context()
	s := newStore(t, e.log, limit)
	big := bytes.Repeat([]byte("x"), limit+1)
	id := "big"
	p, err := s.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defHash, Input: []byte("small"), FirstTask: first})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		do   func() error
	}{
		{"input", func() error {
			_, err := s.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "big-input", DefinitionHash: defHash, Input: big, FirstTask: first})
			return err
		}},
		{"input, TerminateExisting", func() error {
			_, err := s.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defHash, Input: big, FirstTask: first, Policy: workflow.TerminateExisting})
			return err
		}},
		{"task output in a checkpoint", func() error {
			snap := p.Snapshot.Clone()
			snap.MarkTaskCompleted(first.ID, big, snap.CreatedAt)
			_, err := s.SaveSnapshot(ctx, snap, p.Revision)
			return err
		}},
		{"final output", func() error {
			snap := p.Snapshot.Clone()
			snap.MarkCompleted(big, snap.CreatedAt)
			_, err := s.SaveSnapshot(ctx, snap, p.Revision)
			return err
		}},
		{"task result", func() error {
			_, err := s.SaveTaskResult(ctx, id, p.Revision, first.ID, big)
			return err
		}},
		{"event payload", func() error { return s.SendEvent(ctx, id, "approval", big) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := e.watch(t)
			err := c.do()
			if !errors.Is(err, lifecycle.ErrInvalidRequest) {
				t.Fatalf("err = %v, want ErrInvalidRequest", err)
			}
			if !strings.Contains(err.Error(), "MaxPayload") {
				t.Errorf("%q does not name the limit (Config.MaxPayload)", err)
			}
			w.nothing(t, c.name, true)
		})
	}
	st, err := s.Load(ctx, id)
	if err != nil || st.Commits != 1 {
		t.Errorf("Load %q: %d commits, %v; want the one PrepareRun wrote", id, st.Commits, err)
	}
}

// TestCommitOverServerMaxPayload: a commit larger than the server's max
// payload (64 KiB here, with lifecycle's limit larger) is refused with
// jetstream.ErrTooLarge before it is sent, and the store keeps working.
func TestCommitOverServerMaxPayload(t *testing.T) {
	ctx := t.Context()
	emb, err := jetstream.StartEmbedded(ctx, jetstream.EmbeddedConfig{Dir: t.TempDir(), MaxPayload: 64 << 10, SyncInterval: 0})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() { _ = emb.Close() })
	nc, err := emb.Conn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	log, err := jetstream.Open(ctx, nc, jetstream.Config{Logger: discard})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	e := &env{log: log, nc: nc}
	s := newStore(t, log, 1<<20)
	big := bytes.Repeat([]byte("y"), 100<<10)

	w := e.watch(t)
	_, err = s.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "huge", DefinitionHash: defHash, Input: big, FirstTask: first})
	if !errors.Is(err, jetstream.ErrTooLarge) {
		t.Fatalf("PrepareRun with a 100 KiB input: %v, want jetstream.ErrTooLarge", err)
	}
	t.Logf("PrepareRun: %v", err)
	w.nothing(t, "PrepareRun", true)

	// A checkpoint too large for the server, on a live run.
	p, err := s.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "live", DefinitionHash: defHash, Input: []byte("in"), FirstTask: first})
	if err != nil {
		t.Fatal(err)
	}
	snap := p.Snapshot.Clone()
	snap.MarkTaskCompleted(first.ID, big, snap.CreatedAt)
	w = e.watch(t)
	_, err = s.SaveSnapshot(ctx, snap, p.Revision)
	if !errors.Is(err, jetstream.ErrTooLarge) {
		t.Fatalf("SaveSnapshot with a 100 KiB output: %v, want jetstream.ErrTooLarge", err)
	}
	w.nothing(t, "SaveSnapshot", true)
	w = e.watch(t)
	err = s.SendEvent(ctx, "live", "blob", big)
	if !errors.Is(err, jetstream.ErrTooLarge) {
		t.Fatalf("SendEvent with a 100 KiB payload: %v, want jetstream.ErrTooLarge", err)
	}
	w.nothing(t, "SendEvent", true)

	// The log itself refuses the same, whatever calls it.
	w = e.watch(t)
	msg := events.Message{MsgID: "01JDZ8Q5N3C7K2W4X6Y8Z0A1B2", Data: big}
	if _, err := log.Append(ctx, "raw", msg, 0); !errors.Is(err, jetstream.ErrTooLarge) {
		t.Fatalf("Append of 100 KiB: %v, want jetstream.ErrTooLarge", err)
	}
	w.nothing(t, "Append", true)

	// The run goes on with a checkpoint that fits.
	snap = p.Snapshot.Clone()
	snap.MarkTaskCompleted(first.ID, []byte("fits"), snap.CreatedAt)
	if _, err := s.SaveSnapshot(ctx, snap, p.Revision); err != nil {
		t.Fatalf("SaveSnapshot that fits: %v", err)
	}
}

// TestInvalidIDs: an empty id, one of 257 bytes and one that is not UTF-8
// are refused by every operation with ErrInvalidInstanceID, and nothing is
// sent.
func TestInvalidIDs(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	ids := map[string]string{
		"empty":     "",
		"257 bytes": strings.Repeat("a", 257),
		"not UTF-8": "bad\xff\xfeid",
	}
	for name, id := range ids {
		t.Run(name, func(t *testing.T) {
			w := e.watch(t)
			ops := map[string]error{}
			_, ops["PrepareRun"] = e.store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defHash, FirstTask: first})
			_, ops["Load"] = e.store.Load(ctx, id)
			_, _, ops["LoadSnapshot"] = e.store.LoadSnapshot(ctx, id)
			_, ops["SaveSnapshot"] = e.store.SaveSnapshot(ctx, workflow.NewSnapshot(id, defHash, nil, time.Now()), lifecycle.Revision{})
			ops["StoreSignal"] = e.store.StoreSignal(ctx, id, workflow.Cancel, workflow.SignalRequest{})
			_, ops["CheckControlSignals"] = e.store.CheckControlSignals(ctx, id, nil)
			_, ops["Unpause"] = e.store.Unpause(ctx, id)
			ops["DeleteSnapshot"] = e.store.DeleteSnapshot(ctx, id, "")
			ops["SendEvent"] = e.store.SendEvent(ctx, id, "n", nil)
			_, ops["Append"] = e.log.Append(ctx, id, events.Message{MsgID: "01JDZ8Q5N3C7K2W4X6Y8Z0A1B2", Data: []byte("{}")}, 0)
			for _, err := range e.log.Read(ctx, id, 0) {
				ops["Read"] = err
			}
			for op, err := range ops {
				if !errors.Is(err, lifecycle.ErrInvalidInstanceID) {
					t.Errorf("%s(%q): %v, want ErrInvalidInstanceID", op, id, err)
				}
			}
			w.nothing(t, name, true)
		})
	}
}

// TestClosedConnection: once the connection is closed, reads and writes
// fail with an error that matches nats.ErrConnectionClosed and names the
// operation and instance, and no domain sentinel.
func TestClosedConnection(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.start(t, "closing")
	e.nc.Close()
	ops := map[string]error{}
	_, ops["PrepareRun"] = e.store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "closing-new", DefinitionHash: defHash, FirstTask: first})
	_, ops["Load"] = newStore(t, e.log, 0).Load(ctx, "closing")
	_, _, ops["LoadSnapshot"] = newStore(t, e.log, 0).LoadSnapshot(ctx, "closing")
	ops["StoreSignal"] = e.store.StoreSignal(ctx, "closing", workflow.Cancel, workflow.SignalRequest{})
	_, ops["CheckControlSignals"] = e.store.CheckControlSignals(ctx, "closing", nil)
	for op, err := range ops {
		if !errors.Is(err, nats.ErrConnectionClosed) {
			t.Errorf("%s: %v, want an error matching nats.ErrConnectionClosed", op, err)
			continue
		}
		if !strings.Contains(err.Error(), "closing") || !strings.Contains(err.Error(), "connection closed") {
			t.Errorf("%s: %q does not name the instance and the cause", op, err)
		}
		for _, s := range []error{lifecycle.ErrNotFound, lifecycle.ErrAlreadyExists, lifecycle.ErrConcurrentModification, lifecycle.ErrWrongSequence} {
			if errors.Is(err, s) {
				t.Errorf("%s: %v: also matches %v", op, err, s)
			}
		}
		t.Logf("%s: %v", op, err)
	}
}
