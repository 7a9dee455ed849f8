package lifecycle_test

import (
	"errors"
	"testing"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/faultlog"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

func prepare(id string) lifecycle.PrepareRunRequest {
	return lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: workflow.DefinitionHashOf("d"), FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("t")}}
}

func creations(t *testing.T, l lifecycle.Log, id string) int {
	t.Helper()
	n := 0
	for m, err := range l.Read(t.Context(), id, 0) {
		if err != nil {
			t.Fatal(err)
		}
		rec, err := events.Decode(m, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range rec.Commit.Events {
			if e.Type == events.SnapshotCreated {
				n++
			}
		}
	}
	return n
}

// A conflict reported for an append that landed (a retried publish whose
// first attempt succeeded) is recognised on the catch-up read: the
// operation succeeds once, and does not decide again on its own commit.
func TestFalseConflictIsRecognisedAsLanded(t *testing.T) {
	mem := memlog.New(nil)
	log := faultlog.New(mem, faultlog.FalseConflict)
	s, _ := lifecycle.New(log, lifecycle.Config{})
	p, err := s.PrepareRun(t.Context(), prepare("x"))
	if err != nil || p.Outcome != lifecycle.Created {
		t.Fatalf("PrepareRun = %+v, %v; want Created", p, err)
	}
	if n := creations(t, mem, "x"); n != 1 {
		t.Fatalf("%d creations, want 1", n)
	}
	if log.Appends() != 1 {
		t.Fatalf("%d appends, want 1: the store appended again after its commit landed", log.Appends())
	}
}

// A failed append writes nothing and the error is the log's, wrapped.
func TestAppendFailureIsWrapped(t *testing.T) {
	mem := memlog.New(nil)
	s, _ := lifecycle.New(faultlog.New(mem, faultlog.Fail), lifecycle.Config{})
	_, err := s.PrepareRun(t.Context(), prepare("x"))
	if !errors.Is(err, faultlog.ErrInjected) {
		t.Fatalf("error %v does not wrap the log's error", err)
	}
	for _, sentinel := range []error{lifecycle.ErrAlreadyExists, lifecycle.ErrConcurrentModification, lifecycle.ErrWrongSequence} {
		if errors.Is(err, sentinel) {
			t.Fatalf("a backend failure was translated into %v", sentinel)
		}
	}
	if n := creations(t, mem, "x"); n != 0 {
		t.Fatalf("%d creations after a failed append", n)
	}
	// The store is still usable.
	if _, err := s.PrepareRun(t.Context(), prepare("x")); err != nil {
		t.Fatal(err)
	}
}

// A lost acknowledgement is an error (the outcome is unknown to the
// caller), and the history holds the commit exactly once.
func TestLostAckThenRetry(t *testing.T) {
	mem := memlog.New(nil)
	s, _ := lifecycle.New(faultlog.New(mem, faultlog.LoseAck), lifecycle.Config{})
	_, err := s.PrepareRun(t.Context(), prepare("x"))
	if !errors.Is(err, faultlog.ErrLostAck) {
		t.Fatalf("error %v", err)
	}
	// The caller retries under UseExisting and finds its run.
	req := prepare("x")
	req.Policy = workflow.UseExisting
	p, err := s.PrepareRun(t.Context(), req)
	if err != nil || p.Outcome != lifecycle.UsedExisting {
		t.Fatalf("retry = %+v, %v", p, err)
	}
	if n := creations(t, mem, "x"); n != 1 {
		t.Fatalf("%d creations", n)
	}
}

// Conflicts on every attempt end in ConcurrentModificationError after
// MaxAttempts appends, and nothing is written.
func TestConflictsExhaustAttempts(t *testing.T) {
	mem := memlog.New(nil)
	script := make([]faultlog.Fault, 5)
	for i := range script {
		script[i] = faultlog.Conflict
	}
	log := faultlog.New(mem, script...)
	s, _ := lifecycle.New(log, lifecycle.Config{MaxAttempts: 5})
	_, err := s.PrepareRun(t.Context(), prepare("x"))
	var cm *lifecycle.ConcurrentModificationError
	if !errors.As(err, &cm) || cm.Attempts != 5 || !errors.Is(err, lifecycle.ErrWrongSequence) {
		t.Fatalf("error %v, want ConcurrentModificationError after 5 attempts wrapping the conflict", err)
	}
	if log.Appends() != 5 {
		t.Fatalf("%d appends, want 5", log.Appends())
	}
	if n := creations(t, mem, "x"); n != 0 {
		t.Fatalf("%d creations", n)
	}
}

// A fresh PrepareRun costs one append and no read; an existing instance
// under UseExisting costs no append.
func TestFreshCreateIsOneAppend(t *testing.T) {
	mem := memlog.New(nil)
	log := faultlog.New(mem)
	s, _ := lifecycle.New(log, lifecycle.Config{})
	if _, err := s.PrepareRun(t.Context(), prepare("x")); err != nil {
		t.Fatal(err)
	}
	if log.Appends() != 1 || log.Reads() != 0 {
		t.Fatalf("fresh create: %d appends and %d reads, want 1 and 0", log.Appends(), log.Reads())
	}
	req := prepare("x")
	req.Policy = workflow.UseExisting
	if _, err := s.PrepareRun(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if log.Appends() != 1 || log.Reads() != 1 {
		t.Fatalf("use existing: %d appends and %d reads in all, want 1 and 1", log.Appends(), log.Reads())
	}
}

func TestConfigValidation(t *testing.T) {
	if _, err := lifecycle.New(nil, lifecycle.Config{}); !errors.Is(err, lifecycle.ErrInvalidConfig) {
		t.Fatalf("nil log: %v", err)
	}
	if _, err := lifecycle.New(memlog.New(nil), lifecycle.Config{MaxAttempts: -1}); !errors.Is(err, lifecycle.ErrInvalidConfig) {
		t.Fatalf("negative attempts: %v", err)
	}
}
