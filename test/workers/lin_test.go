package workers

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

// The claim operations as a sequential specification, checked for
// linearizability with porcupine: per task, the state is its holder (or
// none). Leases here never expire (ttl 0), so the model needs no clock;
// expiry is what TestClaimSoak and the conformance cases check.
//
//	claim(w)   → ok if nobody holds the task, then w holds it; else claimed
//	release(w) → ok if w holds it, then nobody; notfound if nobody; lost if another
//	save(w)    → ok if w holds it (a write fenced by w's last granted claim); else lost
type claimOp uint8

const (
	opClaim claimOp = iota + 1
	opRelease
	opSave
)

type claimIn struct {
	Task   int
	Worker string
	Op     claimOp
}

type claimOut struct {
	Result string // "ok", "claimed", "notfound", "lost", or "unknown" (an error of unknown outcome)
}

var claimModel = porcupine.Model{
	Partition: byTask(func(in any) int { return in.(claimIn).Task }),
	Init:      func() any { return "" },
	Step: func(s, in, out any) (bool, any) {
		holder, i, o := s.(string), in.(claimIn), out.(claimOut)
		switch i.Op {
		case opClaim:
			if holder == "" {
				return o.Result == "ok", i.Worker
			}
			return o.Result == "claimed", holder
		case opRelease:
			switch {
			case holder == "":
				return o.Result == "notfound", holder
			case holder == i.Worker:
				return o.Result == "ok", ""
			default:
				return o.Result == "lost", holder
			}
		default: // save
			if holder == i.Worker {
				return o.Result == "ok", holder
			}
			return o.Result == "lost", holder
		}
	},
	DescribeOperation: func(in, out any) string {
		i := in.(claimIn)
		return fmt.Sprintf("%s %v task %d → %s", i.Worker, [...]string{"", "claim", "release", "save"}[i.Op], i.Task, out.(claimOut).Result)
	},
}

// byTask partitions a history by task (each task's claim is an object of
// its own): task returns an operation input's task.
func byTask(task func(in any) int) func([]porcupine.Operation) [][]porcupine.Operation {
	return func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[int][]porcupine.Operation{}
		for _, op := range h {
			t := task(op.Input)
			by[t] = append(by[t], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	}
}

// TestClaimsLinearizable: 16 workers (4 stores) claim, release and save
// fenced by their claims on 3 tasks of one run, concurrently, on the
// in-memory log and on JetStream; the history of calls and answers must
// be linearizable against claimModel.
func TestClaimsLinearizable(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  func(t *testing.T) (lifecycle.Log, lifecycle.Leases)
	}{
		{"memlog", func(t *testing.T) (lifecycle.Log, lifecycle.Leases) { l := memlog.New(nil); return l, l.Leases() }},
		{"jetstream", func(t *testing.T) (lifecycle.Log, lifecycle.Leases) {
			js, err := jetstream.Open(t.Context(), natstest.Connect(t, natstest.Start(t)), jetstream.Config{Logger: discardLogger()})
			if err != nil {
				t.Fatal(err)
			}
			return js, js.Leases()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, leases := tc.log(t)
			ctx := t.Context()
			workers, stores, tasks, opsPerWorker := 16, 4, 3, 60
			if os.Getenv("RUNLOG_CLAIMS_DUMP") != "" {
				workers, stores, tasks, opsPerWorker = 3, 3, 1, 12
			}
			sts := make([]*lifecycle.Store, stores)
			for i := range sts {
				var err error
				if sts[i], err = lifecycle.New(log, lifecycle.Config{Leases: leases, MaxAttempts: 200}); err != nil {
					t.Fatal(err)
				}
			}
			taskIDs := make([]workflow.TaskID, tasks)
			for i := range taskIDs {
				taskIDs[i] = workflow.NewTaskID(fmt.Sprintf("lin-%d", i))
			}
			const id = "lin-claims"
			p, err := sts[0].PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskIDs[0]}})
			if err != nil {
				t.Fatal(err)
			}
			_ = p
			var clock atomic.Int64
			var mu sync.Mutex
			var history []porcupine.Operation
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 11))
					st := sts[w%stores]
					name := fmt.Sprintf("w-%d", w)
					held := map[int]lifecycle.TaskClaim{} // the last claim granted to this worker, per task
					for range opsPerWorker {
						task := rng.IntN(tasks)
						in := claimIn{Task: task, Worker: name, Op: claimOp(1 + rng.IntN(3))}
						if in.Op == opSave {
							if _, ok := held[task]; !ok {
								in.Op = opClaim // nothing to fence a save with yet
							}
						}
						call := clock.Add(1)
						var res string
						switch in.Op {
						case opClaim:
							c, err := st.ClaimTask(ctx, id, taskIDs[task], name, 0)
							res = verdict(err)
							if err == nil {
								held[task] = c
							}
						case opRelease:
							res = verdict(st.ReleaseTaskClaim(ctx, id, taskIDs[task], name))
						case opSave:
							snap, rev, err := st.LoadSnapshot(ctx, id)
							if err != nil {
								res = "unknown"
								break
							}
							snap.SetTaskHint(workflow.TaskHint{ID: snap.State.Position.TaskID, Tags: []string{fmt.Sprint(call)}})
							_, err = st.SaveSnapshot(ctx, snap, rev, lifecycle.WithClaim(held[task], false))
							if errors.Is(err, lifecycle.ErrStale) || errors.Is(err, lifecycle.ErrConcurrentModification) {
								// Not a claim verdict: another save moved the
								// revision first. Leave the operation out.
								continue
							}
							res = verdict(err)
						}
						ret := clock.Add(1)
						op := porcupine.Operation{ClientId: w, Input: in, Call: call, Output: claimOut{Result: res}, Return: ret}
						if res == "unknown" {
							t.Errorf("%s: an operation of unknown outcome: not expected without faults", name)
							continue
						}
						mu.Lock()
						history = append(history, op)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			res, _ := porcupine.CheckOperationsVerbose(claimModel, history, time.Minute)
			if res != porcupine.Ok {
				byResult := map[string]int{}
				for _, op := range history {
					byResult[fmt.Sprint(op.Input.(claimIn).Op, "/", op.Output.(claimOut).Result)]++
				}
				if os.Getenv("RUNLOG_CLAIMS_DUMP") != "" {
					slices.SortFunc(history, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
					for _, op := range history {
						t.Logf("[%4d,%4d] %s", op.Call, op.Return, claimModel.DescribeOperation(op.Input, op.Output))
					}
				}
				t.Fatalf("claims are not linearizable (%v) over %d operations (op/result counts %v)", res, len(history), byResult)
			}
			counts := map[string]int{}
			for _, op := range history {
				counts[op.Output.(claimOut).Result]++
			}
			t.Logf("%d operations linearizable: %v", len(history), counts)
			if counts["ok"] == 0 || counts["claimed"] == 0 || counts["lost"] == 0 {
				t.Errorf("the workload did not exercise every answer: %v", counts)
			}
		})
	}
}

// verdict maps an operation's error to the model's answer.
func verdict(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, lifecycle.ErrAlreadyClaimed):
		return "claimed"
	case errors.Is(err, lifecycle.ErrClaimLost):
		return "lost"
	case errors.Is(err, lifecycle.ErrNotFound):
		return "notfound"
	}
	return "unknown"
}
