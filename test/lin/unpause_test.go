package lin

import (
	"context"
	"errors"
	"testing"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

// hookLog calls after once, right after the first successful Append made
// with actor, before that Append returns: a deterministic stand-in for
// another process writing in that instant.
type hookLog struct {
	lifecycle.Log
	actor string
	after func()
	done  bool
}

func (l *hookLog) Append(ctx context.Context, instance string, msg events.Message, expect uint64) (uint64, error) {
	seq, err := l.Log.Append(ctx, instance, msg, expect)
	if err == nil && !l.done && lifecycle.ActorFrom(ctx) == l.actor {
		l.done = true
		l.after()
	}
	return seq, err
}

// TestUnpauseAnswersWithItsOwnCommit pins down what the randomized check
// can only meet by chance: the snapshot Unpause returns is the one its own
// commit produced, and an Unpause whose commit landed reports success,
// whatever another store writes right after it.
func TestUnpauseAnswersWithItsOwnCommit(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name  string
		other func(ctx context.Context, s *lifecycle.Store, id string) error
	}{
		{"deleted right after", func(ctx context.Context, s *lifecycle.Store, id string) error {
			return s.DeleteSnapshot(ctx, id, "operator")
		}},
		{"paused again right after", func(ctx context.Context, s *lifecycle.Store, id string) error {
			if err := s.StoreSignal(ctx, id, workflow.Pause, workflow.SignalRequest{Reason: "again"}); err != nil {
				return err
			}
			_, err := s.CheckControlSignals(ctx, id, nil)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := memlog.New(nil)
			id := "unpause"
			other := newStore(t, raw)
			hook := &hookLog{Log: raw, actor: "unpauser"}
			hook.after = func() {
				if err := tc.other(context.WithoutCancel(ctx), other, id); err != nil {
					t.Errorf("the other store: %v", err)
				}
			}
			s := newStore(t, hook)
			if _, err := s.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defs[0], FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("first")}}); err != nil {
				t.Fatal(err)
			}
			if err := s.StoreSignal(ctx, id, workflow.Pause, workflow.SignalRequest{Reason: "ops"}); err != nil {
				t.Fatal(err)
			}
			if c, err := s.CheckControlSignals(ctx, id, nil); err != nil || c != lifecycle.ControlPaused {
				t.Fatalf("CheckControlSignals: %v %v", c, err)
			}
			snap, err := s.Unpause(lifecycle.WithActor(ctx, "unpauser"), id)
			if !hook.done {
				t.Fatal("the unpause wrote nothing")
			}
			switch {
			case errors.Is(err, lifecycle.ErrNotFound):
				t.Errorf("Unpause: %v: its commit landed (the run was unpaused), but it reports failure: it reads the snapshot back after the write, and another store deleted it in between", err)
			case err != nil:
				t.Errorf("Unpause: %v", err)
			case snap.State.Kind != workflow.InProgress:
				t.Errorf("Unpause returned a %s snapshot; its own commit left the run InProgress (it reads the snapshot back after the write and returns a later state)", snap.State.Kind)
			}
		})
	}
}
