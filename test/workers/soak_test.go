package workers

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

// TestClaimSoak: workers claim tasks of a few instances with random
// TTLs, sometimes stall past their lease before saving, and save fenced by
// their claim (releasing it or not); others take expired claims over.
// Afterwards the history must show that no fenced save landed from a
// claim that was no longer the task's: each save carries its claim's id
// (as the commit's actor), and must lie between that claim's task.claimed
// and the next claim or release of the task. Every acknowledged save is
// in the history. On the in-memory log with leases of 20–120 ms, and on
// JetStream with leases of 1–2 s (the server's TTLs count whole seconds)
// and fewer rounds; RUNLOG_SOAK=1 runs both longer.
func TestClaimSoak(t *testing.T) {
	soak := os.Getenv("RUNLOG_SOAK") == "1"
	t.Run("memlog", func(t *testing.T) {
		rounds := 300
		if soak {
			rounds = 5000
		}
		l := memlog.New(nil)
		claimSoak(t, l, l.Leases(), rounds, 20*time.Millisecond, 100*time.Millisecond)
	})
	t.Run("jetstream", func(t *testing.T) {
		if testing.Short() {
			t.Skip("leases of whole seconds; skipped with -short")
		}
		rounds := 40
		if soak {
			rounds = 400
		}
		js, err := jetstream.Open(t.Context(), natstest.Connect(t, natstest.Start(t)), jetstream.Config{Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		claimSoak(t, js, js.Leases(), rounds, time.Second, time.Second)
	})
}

// claimSoak runs the soak on log: leases of min to min+spread.
func claimSoak(t *testing.T, log lifecycle.Log, leases lifecycle.Leases, rounds int, min, spread time.Duration) {
	const workers, instances, tasks = 8, 3, 6
	taskIDs := make([]workflow.TaskID, tasks)
	for i := range taskIDs {
		taskIDs[i] = workflow.NewTaskID(fmt.Sprintf("t%d", i))
	}
	ctx := t.Context()
	setup, err := lifecycle.New(log, lifecycle.Config{Leases: leases})
	if err != nil {
		t.Fatal(err)
	}
	for i := range instances {
		if _, err := setup.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: fmt.Sprintf("soak-%d", i), DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskIDs[0]}}); err != nil {
			t.Fatal(err)
		}
	}
	var acked sync.Map // commit actor → true, for every acknowledged fenced save
	var saves, lost, stalls atomic.Int64
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			st, err := lifecycle.New(log, lifecycle.Config{Leases: leases, CacheSize: -1})
			if err != nil {
				t.Error(err)
				return
			}
			name := fmt.Sprintf("w-%d", w)
			claimed := 0
			for next.Add(1) <= int64(rounds) {
				id := fmt.Sprintf("soak-%d", rng.IntN(instances))
				task := taskIDs[rng.IntN(tasks)]
				ttl := min + time.Duration(rng.Int64N(int64(spread)))
				c, err := st.ClaimTask(ctx, id, task, name, ttl)
				if err != nil {
					if !errors.Is(err, lifecycle.ErrAlreadyClaimed) && !errors.Is(err, lifecycle.ErrClaimLost) && !errors.Is(err, lifecycle.ErrInvalidRequest) {
						t.Errorf("%s claim: %v", name, err)
					}
					continue
				}
				claimed++
				if claimed == 1 || rng.IntN(4) == 0 { // every worker stalls on its first claim
					stalls.Add(1)
					// Past the lease (JetStream rounds a TTL up to whole
					// seconds and expires keys on its own schedule: past
					// the next second).
					past := ttl + time.Duration(rng.IntN(40))*time.Millisecond
					if min >= time.Second {
						past = (ttl+time.Second-1)/time.Second*time.Second + 1500*time.Millisecond
					}
					time.Sleep(past)
				}
				snap, rev, err := st.LoadSnapshot(ctx, id)
				if err != nil {
					t.Errorf("load: %v", err)
					continue
				}
				actor := "claim:" + c.ID.String()
				// A change to save: the hint's tags name the claim.
				snap.SetTaskHint(workflow.TaskHint{ID: snap.State.Position.TaskID, Priority: ptr(uint8(rng.IntN(5))), Tags: []string{c.ID.String()}})
				_, err = st.SaveSnapshot(lifecycle.WithActor(ctx, actor), snap, rev, lifecycle.WithClaim(c, rng.IntN(2) == 0))
				switch {
				case err == nil:
					saves.Add(1)
					acked.Store(actor, true)
				case errors.Is(err, lifecycle.ErrClaimLost):
					lost.Add(1)
				case errors.Is(err, lifecycle.ErrStale), errors.Is(err, lifecycle.ErrConcurrentModification):
				default:
					t.Errorf("%s save: %v", name, err)
				}
				if rng.IntN(3) == 0 {
					_ = st.ReleaseTaskClaim(ctx, id, task, name)
				}
			}
		})
	}
	wg.Wait()

	// The history's verdict.
	landed := 0
	for i := range instances {
		id := fmt.Sprintf("soak-%d", i)
		current := map[workflow.TaskID]string{} // task → the claim id that is the task's claim
		owner := map[string]workflow.TaskID{}   // claim id → its task
		for m, err := range log.Read(ctx, id, 0) {
			if err != nil {
				t.Fatal(err)
			}
			rec, err := events.Decode(m, id)
			if err != nil {
				t.Fatal(err)
			}
			if claim, ok := strings.CutPrefix(rec.Commit.Actor, "claim:"); ok {
				task, known := owner[claim]
				if !known || current[task] != claim {
					t.Errorf("%s seq %d: a save fenced by claim %s landed while the task's claim was %q", id, rec.Seq, claim, current[task])
				}
				acked.Delete(rec.Commit.Actor)
				landed++
			}
			for _, e := range rec.Commit.Events {
				switch d := e.Data.(type) {
				case *events.TaskClaimedData:
					current[d.TaskID] = e.ID.String()
					owner[e.ID.String()] = d.TaskID
				case *events.TaskClaimReleasedData:
					if current[d.TaskID] == d.Claim.String() {
						delete(current, d.TaskID)
					}
				}
			}
		}
	}
	acked.Range(func(k, _ any) bool {
		t.Errorf("the save of %s was acknowledged but is not in the history", k)
		return true
	})
	t.Logf("%d rounds: %d fenced saves landed (%d in the history), %d refused with ErrClaimLost, %d stalls past the lease", rounds, saves.Load(), landed, lost.Load(), stalls.Load())
	if lost.Load() == 0 || saves.Load() == 0 {
		t.Errorf("the soak exercised nothing: %d saves, %d lost", saves.Load(), lost.Load())
	}
}

func ptr[T any](v T) *T { return &v }
