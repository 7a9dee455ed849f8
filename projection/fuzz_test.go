package projection

import (
	"errors"
	"iter"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/workflow"
)

// FuzzFold folds histories built from arbitrary event sequences, chained
// correctly or not: the fold must never panic, every error must name a
// sequence, and a failed Apply must leave the state unchanged.
func FuzzFold(f *testing.F) {
	f.Add(uint64(1), []byte{0, 1, 2, 3})
	f.Add(uint64(7), []byte{0, 2, 2, 3, 1, 0, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add(uint64(9), []byte{0, 200, 13, 0, 255})
	f.Fuzz(func(t *testing.T, seed uint64, ops []byte) {
		entropy := ulid.Monotonic(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)}), 0)
		at := time.Unix(1_700_000_000, 0).UTC()
		id := func() ulid.ULID { return ulid.MustNew(ulid.Timestamp(at), entropy) }
		run := id()
		var prev workflow.Hash32
		var msgs []events.Message
		seq := uint64(0)
		for i, op := range ops {
			if len(msgs) > 64 {
				break
			}
			var p events.Payload
			switch op % 14 {
			case 0:
				run = id()
				p = &events.SnapshotCreatedData{FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("t")}}
			case 1:
				p = &events.SnapshotDeletedData{}
			case 2:
				p = &events.SignalStoredData{Kind: workflow.SignalKind(1 + op%2), RequestedAt: at}
			case 3:
				p = &events.SignalClearedData{Kind: workflow.SignalKind(1 + op%2)}
			case 4:
				p = &events.TaskCompletedData{TaskID: workflow.NewTaskID(string(rune('a' + i%5))), Output: []byte{op}}
			case 5:
				pos := workflow.AtTaskPosition(workflow.NewTaskID("n"))
				p = &events.CheckpointSavedData{Position: &pos}
			case 6:
				p = &events.WorkflowCompletedData{Output: []byte("o")}
			case 7:
				p = &events.WorkflowFailedData{Error: "e"}
			case 8:
				p = &events.WorkflowCancelledData{At: at}
			case 9:
				p = &events.WorkflowPausedData{At: at}
			case 10:
				p = &events.WorkflowUnpausedData{}
			case 11:
				p = &events.EventSentData{Name: "n", Payload: []byte{op}}
			case 12:
				p = &events.EventConsumedData{Name: "n", EventID: id()}
			case 13:
				prev = workflow.Sha256([]byte{op}) // break the chain on purpose
				continue
			}
			c := events.Commit{ID: id(), Instance: "fz", Time: at, Prev: prev,
				Events: []events.Event{{ID: id(), Type: p.EventType(), Run: run, Data: p}}}
			if op < 250 {
				seq += 1 + uint64(op%3)
			} // else a repeated sequence, which must be refused
			m, err := c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			m.Seq = seq
			prev = workflow.Sha256(m.Data)
			msgs = append(msgs, m)
		}
		st := New("fz")
		for _, m := range msgs {
			rec, err := events.Decode(m, "fz")
			if err != nil {
				t.Fatalf("own encoding does not decode: %v", err)
			}
			before := st.Clone()
			if err := st.Apply(rec); err != nil {
				var he *HistoryError
				if !errors.As(err, &he) || he.Seq != m.Seq || !errors.Is(err, ErrInvalidHistory) {
					t.Fatalf("error %v does not name seq %d", err, m.Seq)
				}
				if st.LastSeq != before.LastSeq || st.Commits != before.Commits || st.Exists != before.Exists ||
					st.RevisionSeq != before.RevisionSeq || len(st.Signals) != len(before.Signals) {
					t.Fatalf("a failed Apply changed the state")
				}
				break
			}
			if !st.Exists && len(st.Signals) > 0 {
				t.Fatalf("signals pending on an instance without a snapshot")
			}
		}
		// Fold over an iterator agrees with step-by-step application.
		var seqs iter.Seq2[events.Message, error] = func(yield func(events.Message, error) bool) {
			for _, m := range msgs {
				if !yield(m, nil) {
					return
				}
			}
		}
		folded, _ := Fold("fz", seqs)
		if folded.LastSeq != st.LastSeq || folded.Head != st.Head {
			t.Fatalf("Fold stopped at %d, Apply at %d", folded.LastSeq, st.LastSeq)
		}
	})
}
