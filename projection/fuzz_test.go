package projection

import (
	"errors"
	"iter"
	"math/rand/v2"
	"reflect"
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

// TestApplyOrDiscardAgrees folds random histories of commits of one to
// four events (claims, releases, checkpoints, results, signals, creates,
// deletes, completions; many of them refused) with Apply and with
// ApplyOrDiscard side by side: every commit is accepted or refused alike,
// with the same error, and every accepted one leaves equal states. After
// a refusal the discarding state is started again from the other, as its
// callers read the instance afresh.
func TestApplyOrDiscardAgrees(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	entropy := ulid.Monotonic(rand.NewChaCha8([32]byte{7}), 0)
	at := time.Unix(1_700_000_000, 0).UTC()
	id := func() ulid.ULID { return ulid.MustNew(ulid.Timestamp(at), entropy) }
	tasks := []workflow.TaskID{workflow.NewTaskID("a"), workflow.NewTaskID("b"), workflow.NewTaskID("c")}
	workers := []string{"w1", "w2"}
	accepted, acceptedMulti, refused := 0, 0, 0
	for range 300 {
		atomic, discard := New("ad"), New("ad")
		for seq := uint64(1); seq <= 40; seq++ {
			// Events of the state's run and claims on its tasks, mostly.
			run := atomic.Run
			claims := map[workflow.TaskID]events.ClaimRef{}
			for task, c := range atomic.Claims {
				claims[task] = events.ClaimRef{Claim: c.ID, Worker: c.Worker}
			}
			var evs []events.Event
			ev := func(p events.Payload) events.Event {
				return events.Event{ID: id(), Type: p.EventType(), Run: run, Data: p}
			}
			task := tasks[rng.IntN(len(tasks))]
			// The commits runlog writes, most of the time (some still
			// refused: a claim on a claimed task, a release of another's).
			ref := claims[task]
			kind := rng.IntN(10)
			switch {
			case kind >= 8: // random events only
			case !atomic.Exists:
				run = id()
				evs = append(evs, ev(&events.SnapshotCreatedData{FirstTask: workflow.TaskHint{ID: task}}))
			case atomic.Snapshot.State.Kind.Terminal() || kind == 0: // a new run (TerminateExisting)
				evs = append(evs, ev(&events.SnapshotDeletedData{}))
				for k := range atomic.Signals {
					evs = append(evs, ev(&events.SignalClearedData{Kind: k}))
				}
				run = id()
				evs = append(evs, ev(&events.SnapshotCreatedData{FirstTask: workflow.TaskHint{ID: task}}))
			case kind < 4: // a checkpoint that releases a claim, and perhaps completes
				for t, r := range claims {
					task, ref = t, r
					break
				}
				pos := workflow.AtTaskPosition(tasks[rng.IntN(len(tasks))])
				evs = append(evs, ev(&events.TaskClaimReleasedData{TaskID: task, Claim: ref.Claim, Worker: ref.Worker, Reason: "checkpoint"}),
					ev(&events.CheckpointSavedData{Position: &pos, Completed: events.TaskOutputs{{Task: task, Output: []byte{byte(seq)}}}}))
				if rng.IntN(3) == 0 {
					evs = append(evs, ev(&events.WorkflowCompletedData{Output: []byte("o")}))
				}
			default: // a claim
				w := workers[rng.IntN(len(workers))]
				e := ev(&events.TaskClaimedData{TaskID: task, Worker: w})
				evs = append(evs, e)
			}
			random := 1 + rng.IntN(4) // or random events
			if len(evs) > 0 {
				random = rng.IntN(4) / 3 // and now and then one more
			}
			for range random {
				task := tasks[rng.IntN(len(tasks))]
				var p events.Payload
				switch rng.IntN(10) {
				case 0:
					run = id()
					p = &events.SnapshotCreatedData{FirstTask: workflow.TaskHint{ID: task}}
				case 1:
					p = &events.SnapshotDeletedData{}
				case 2:
					p = &events.SignalStoredData{Kind: workflow.SignalKind(1 + rng.IntN(2)), RequestedAt: at}
				case 3:
					p = &events.SignalClearedData{Kind: workflow.SignalKind(1 + rng.IntN(2))}
				case 4, 5:
					w := workers[rng.IntN(len(workers))]
					d := &events.TaskClaimedData{TaskID: task, Worker: w}
					if c, ok := claims[task]; ok && rng.IntN(2) == 0 {
						d.TakenOver = &c
					}
					p = d
					eid := id()
					claims[task] = events.ClaimRef{Claim: eid, Worker: w}
					evs = append(evs, events.Event{ID: eid, Type: p.EventType(), Run: run, Data: p})
					continue
				case 6:
					c := claims[task]
					p = &events.TaskClaimReleasedData{TaskID: task, Claim: c.Claim, Worker: c.Worker, Reason: "checkpoint"}
				case 7:
					pos := workflow.AtTaskPosition(tasks[rng.IntN(len(tasks))])
					p = &events.CheckpointSavedData{Position: &pos, Completed: events.TaskOutputs{{Task: task, Output: []byte{byte(seq)}}}}
				case 8:
					p = &events.TaskCompletedData{TaskID: task, Output: []byte{byte(seq)}}
				case 9:
					p = &events.WorkflowCompletedData{Output: []byte("o")}
				}
				evs = append(evs, events.Event{ID: id(), Type: p.EventType(), Run: run, Data: p})
			}
			c := events.Commit{ID: id(), Instance: "ad", Time: at, Prev: atomic.Head, Events: evs}
			m, err := c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			m.Seq = seq
			rec, err := events.Decode(m, "ad")
			if err != nil {
				t.Fatalf("own encoding does not decode: %v", err)
			}
			before := atomic.Clone()
			errA, errD := atomic.Apply(rec), discard.ApplyOrDiscard(rec)
			if (errA == nil) != (errD == nil) || errA != nil && errA.Error() != errD.Error() {
				t.Fatalf("seq %d (%d events): Apply says %v, ApplyOrDiscard %v", seq, len(evs), errA, errD)
			}
			if errA != nil {
				refused++

				if !reflect.DeepEqual(atomic, before) {
					t.Fatalf("seq %d: a refused Apply changed the state", seq)
				}
				discard = atomic.Clone()
				continue
			}
			accepted++
			if len(evs) > 1 {
				acceptedMulti++
			}
			if !reflect.DeepEqual(atomic, discard) {
				t.Fatalf("seq %d (%d events): the states differ:\nApply          %+v\nApplyOrDiscard %+v", seq, len(evs), atomic, discard)
			}
		}
	}
	if acceptedMulti < 1000 || refused < 1000 {
		t.Fatalf("the histories proved little: %d commits accepted (%d of several events), %d refused", accepted, acceptedMulti, refused)
	}
	t.Logf("%d commits accepted (%d of several events), %d refused", accepted, acceptedMulti, refused)
}
