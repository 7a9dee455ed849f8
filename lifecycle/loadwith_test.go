package lifecycle_test

import (
	"context"
	"iter"
	"sync/atomic"
	"testing"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

// readCounter is a log that counts its reads.
type readCounter struct {
	*memlog.Log
	reads atomic.Int64
}

func (l *readCounter) Read(ctx context.Context, id string, after uint64) iter.Seq2[events.Message, error] {
	l.reads.Add(1)
	return l.Log.Read(ctx, id, after)
}

func (l *readCounter) LastMessage(ctx context.Context, id string) (events.Message, bool, error) {
	l.reads.Add(1)
	return l.Log.LastMessage(ctx, id)
}

func (l *readCounter) MessageAt(ctx context.Context, id string, seq uint64) (events.Message, bool, error) {
	l.reads.Add(1)
	return l.Log.MessageAt(ctx, id, seq)
}

// TestLoadWith: a store handed a message it received from the log folds
// it into its cached projection without reading when the cache ends
// where the message begins, answers from the cache when it holds the
// message already, and reads otherwise (a cache miss, a gap, a message
// that does not fold); every answer is what Load answers.
func TestLoadWith(t *testing.T) {
	ctx := t.Context()
	mem := &readCounter{Log: memlog.New(nil)}
	writer, err := lifecycle.New(mem.Log, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := lifecycle.New(mem, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// check calls st and wants reads reads of the log (-1: some), and the
	// projection at the log's last message.
	check := func(what string, wantReads int64, st func() (uint64, error)) {
		t.Helper()
		before := mem.reads.Load()
		seq, err := st()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n := mem.reads.Load() - before; n != wantReads && (wantReads >= 0 || n == 0) {
			t.Errorf("%s: %d reads, want %d", what, n, wantReads)
		}
		last, _, _ := mem.Log.LastMessage(ctx, "lw")
		if seq != last.Seq {
			t.Errorf("%s: projection at seq %d, the log's last is %d", what, seq, last.Seq)
		}
	}
	last := func() events.Message {
		m, ok, err := mem.Log.LastMessage(ctx, "lw")
		if err != nil || !ok {
			t.Fatal("last message", err)
		}
		return m
	}
	loadWith := func(m events.Message) func() (uint64, error) {
		return func() (uint64, error) {
			st, err := reader.LoadWith(ctx, "lw", m)
			return st.LastSeq, err
		}
	}
	if _, err := writer.PrepareRun(ctx, prepare("lw")); err != nil {
		t.Fatal(err)
	}
	check("a cache miss", 1, loadWith(last()))
	check("the message it holds", 0, loadWith(last()))
	if err := writer.StoreSignal(ctx, "lw", workflow.Pause, workflow.SignalRequest{}); err != nil {
		t.Fatal(err)
	}
	check("the next message", 0, loadWith(last()))
	if err := writer.ClearSignal(ctx, "lw", workflow.Pause); err != nil {
		t.Fatal(err)
	}
	if err := writer.StoreSignal(ctx, "lw", workflow.Pause, workflow.SignalRequest{}); err != nil {
		t.Fatal(err)
	}
	check("a message past a gap", 2, loadWith(last()))
	if err := writer.ClearSignal(ctx, "lw", workflow.Pause); err != nil {
		t.Fatal(err)
	}
	bad := last()
	bad.Data = []byte("not a commit")
	check("a message that does not fold (read afresh)", -1, loadWith(bad))
	want, err := writer.Load(ctx, "lw")
	if err != nil {
		t.Fatal(err)
	}
	got, err := reader.LoadWith(ctx, "lw", last())
	if err != nil || got.Head != want.Head || got.Commits != want.Commits || got.Exists != want.Exists || len(got.Signals) != len(want.Signals) {
		t.Fatalf("LoadWith = %d commits head %s (%v), Load = %d commits head %s", got.Commits, got.Head, err, want.Commits, want.Head)
	}
}
