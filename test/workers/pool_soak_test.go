package workers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/faulttest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	pool "github.com/runlog/runlog/worker"
	"github.com/runlog/runlog/workflow"
)

// poolChildEnv makes the test binary run as a worker-pool process: the
// server URL and the worker name prefix.
const poolChildEnv = "RUNLOG_POOL_CHILD"

// soakChain is the soak's workflow: a step that fails a fifth of its
// attempts (retried), a delay, a step, a signal wait the test answers,
// and a last step fed the event's payload.
func soakChain() *pool.Chain {
	flaky := func(name string) pool.Func {
		return func(ctx context.Context, in []byte) ([]byte, error) {
			// Some work, so that kills find claims held.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(20+rand.IntN(100)) * time.Millisecond):
			}
			if rand.IntN(5) == 0 {
				return nil, errors.New(name + ": transient failure")
			}
			return append([]byte(name+":"), in...), nil
		}
	}
	retry := &workflow.RetryPolicy{MaxRetries: 20, InitialDelay: 50 * time.Millisecond, BackoffMultiplier: 1.5, MaxDelay: 500 * time.Millisecond}
	return &pool.Chain{Definition: workflow.DefinitionHashOf("soak v1"), Steps: []pool.Step{
		{Name: "charge", Run: flaky("charge"), Retry: retry, Delay: 200 * time.Millisecond},
		{Name: "pack", Run: flaky("pack"), Retry: retry, Signal: "approval"},
		{Name: "ship", Run: flaky("ship"), Retry: retry},
	}}
}

// runPoolChild runs a worker pool of two workers, an indexer and the
// timers against the server at url until it is killed.
func runPoolChild(spec string) int {
	url, name, _ := strings.Cut(spec, " ")
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	js, err := jetstream.Connect(ctx, url, jetstream.ConnectConfig{Name: name}, jetstream.Config{Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	st, err := lifecycle.New(js, lifecycle.Config{Leases: js.Leases(), Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	x := js.RunnableIndex()
	go func() { _ = x.Run(ctx, st, jetstream.IndexerOptions{PinnedTTL: time.Second}) }()
	go func() {
		_ = x.RunTimers(lifecycle.WithActor(ctx, name+"-timers"), st, jetstream.TimerOptions{Poll: 100 * time.Millisecond})
	}()
	wake, err := x.Wakeups(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	p := &pool.Pool{Store: st, Leases: js.Leases(), Index: x, Name: name, Workers: 2, TTL: 2 * time.Second, Chains: []*pool.Chain{soakChain()},
		Logger: quiet, Wait: func(ctx context.Context, d time.Duration) { _, _, _ = wake.Wait(ctx, d) }}
	fmt.Println("ready")
	_ = p.Run(ctx)
	return 0
}

// TestPoolSoak: worker-pool processes (4) run workflows of a retried,
// failing step, a delay, a signal wait and a last step, while the test
// SIGKILLs a random one at seeded intervals and starts a new one in its
// place. Every workflow completes; every step's result is checkpointed
// exactly once per run; every checkpoint that completes a step was
// written by the worker that held the step's claim (never by one whose
// lease was lost and taken over). CI size: 60 workflows and 4 kills;
// RUNLOG_SOAK=1: 500 workflows and a kill every second.
func TestPoolSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("runs worker processes; skipped with -short")
	}
	workflows, killEvery := 60, 1500*time.Millisecond
	maxKills := 4
	if faulttest.Soak() {
		workflows, killEvery, maxKills = 500, time.Second, 1000
	}
	rng := rand.New(rand.NewPCG(faulttest.Seed(t), 0x706f6f6c))
	url := startServer(t)
	ctx := t.Context()
	st := worker(t, ctx, url, "soak-test")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	procs := map[int]*exec.Cmd{}
	next := 0
	start := func() {
		t.Helper()
		name := "p" + strconv.Itoa(next)
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), poolChildEnv+"="+url+" "+name)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		procs[next] = cmd
		next++
		mu.Unlock()
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range procs {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	for range 4 {
		start()
	}
	chain := soakChain()
	ids := make([]string, workflows)
	for i := range ids {
		ids[i] = fmt.Sprintf("soak-%03d", i)
		if _, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: ids[i], DefinitionHash: chain.Definition,
			Input: []byte(ids[i]), FirstTask: chain.FirstTask()}); err != nil {
			t.Fatal(err)
		}
	}
	kills := 0
	lastKill := time.Now()
	killedAt := map[string]time.Time{} // by process name (the worker names' prefix)
	sent := map[string]bool{}
	deadline := time.Now().Add(3 * time.Minute)
	if faulttest.Soak() {
		deadline = time.Now().Add(20 * time.Minute)
	}
	for {
		done := 0
		for _, id := range ids {
			snap, _, err := st.LoadSnapshot(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case snap.State.Kind == workflow.Completed:
				done++
			case snap.State.Kind.Terminal():
				t.Fatalf("%s ended %s: %+v", id, snap.State.Kind, snap.State)
			case snap.State.Position.Kind == workflow.AtSignal && !sent[id]:
				if err := st.SendEvent(ctx, id, "approval", []byte("approved-"+id)); err != nil {
					t.Fatal(err)
				}
				sent[id] = true
			}
		}
		if done == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d workflows completed before the deadline", done, len(ids))
		}
		if kills < maxKills && time.Since(lastKill) > killEvery {
			mu.Lock()
			var alive []int
			for k := range procs {
				alive = append(alive, k)
			}
			victim := alive[rng.IntN(len(alive))]
			c := procs[victim]
			delete(procs, victim)
			mu.Unlock()
			_ = c.Process.Kill() // SIGKILL
			killedAt["p"+strconv.Itoa(victim)] = time.Now()
			_ = c.Wait()
			kills++
			lastKill = time.Now()
			start()
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The histories: each step's result once per run, each written by the
	// holder of the step's claim.
	takeOvers := 0
	var longestWait time.Duration // from a kill to the take-over of a claim the killed process held
	for _, id := range ids {
		results := map[workflow.TaskID]int{}
		holder := map[workflow.TaskID]string{}
		for m, err := range st.Log().Read(ctx, id, 0) {
			if err != nil {
				t.Fatal(err)
			}
			rec, err := events.Decode(m, id)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range rec.Commit.Events {
				switch d := ev.Data.(type) {
				case *events.TaskClaimedData:
					holder[d.TaskID] = d.Worker
					if d.TakenOver != nil {
						takeOvers++
						proc, _, _ := strings.Cut(d.TakenOver.Worker, "-")
						if k, ok := killedAt[proc]; ok && m.Time.After(k) {
							longestWait = max(longestWait, m.Time.Sub(k))
						}
					}
				case *events.CheckpointSavedData:
					for task := range d.Completed {
						results[task]++
						if h, ok := holder[task]; ok && h != rec.Commit.Actor {
							t.Errorf("%s: %s's result written by %q while %q held its claim", id, task, rec.Commit.Actor, h)
						}
					}
				}
			}
		}
		for _, s := range chain.Steps {
			if n := results[workflow.NewTaskID(s.Name)]; n != 1 {
				t.Errorf("%s: %s's result checkpointed %d times, want once", id, s.Name, n)
			}
		}
	}
	if kills == 0 {
		t.Error("no worker process was killed: the soak proved nothing about kills")
	}
	if faulttest.Soak() && takeOvers == 0 {
		t.Error("no claim was taken over from a killed worker: the soak proved nothing about lost leases")
	}
	t.Logf("FIGURES: seed %d: %d workflows completed on %d pool processes (%d killed with SIGKILL, restarted), %d claims taken over from dead workers; "+
		"longest from a kill to the take-over of a claim the killed process held: %v (lease TTL 2 s, heartbeats every 0.5 s)",
		faulttest.Seed(t), len(ids), next, kills, takeOvers, longestWait.Round(time.Millisecond))
}
