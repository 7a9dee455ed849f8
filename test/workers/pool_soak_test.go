package workers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
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

// serverChildEnv makes the test binary run as the soak's server: the
// store directory and the port ("dir:port").
const serverChildEnv = "RUNLOG_POOL_SERVER"

// serverReady is what the server child prints once it accepts clients.
const serverReady = "runlog-pool-server ready"

// runServerChild runs an embedded server (fsync before every
// acknowledgement, the default) on spec's directory and port until its
// stdin ends or it is killed.
func runServerChild(spec string) int {
	i := strings.LastIndexByte(spec, ':')
	dir, port := spec[:i], spec[i+1:]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	emb, err := jetstream.StartEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir, Listen: net.JoinHostPort("127.0.0.1", port),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "pool server child:", err)
		return 1
	}
	fmt.Println(serverReady)
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = emb.Close()
	return 0
}

// serverChild is the soak's server in a process of its own, so that it
// can be SIGKILLed and started again on its directory and port.
type serverChild struct {
	t    *testing.T
	dir  string
	port int
	cmd  *exec.Cmd
}

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startServerChild(t *testing.T) *serverChild {
	t.Helper()
	c := &serverChild{t: t, dir: t.TempDir(), port: freePort(t)}
	c.start()
	t.Cleanup(c.kill)
	return c
}

func (c *serverChild) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", c.port) }

// start starts the server and waits until it accepts clients.
func (c *serverChild) start() {
	c.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), serverChildEnv+"="+c.dir+":"+strconv.Itoa(c.port))
	cmd.Stderr = os.Stderr
	if _, err := cmd.StdinPipe(); err != nil {
		c.t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if !ok && sc.Text() == serverReady {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			c.t.Fatal("the server child exited before it was ready")
		}
	case <-time.After(2 * time.Minute):
		c.t.Fatal("the server child is not ready after 2 minutes")
	}
	c.cmd = cmd
}

// kill SIGKILLs the server (no chance to flush) and waits until it is gone.
func (c *serverChild) kill() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	c.cmd = nil
}

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
	poolSoak(t, workflows, killEvery, maxKills, 0)
}

// TestPoolSoakServerKills: the second phase of the soak. The server runs
// in a process of its own and is SIGKILLed and started again on its
// store while the pool processes work (and are killed too); every
// workflow still completes, each step's result once per run, written by
// its claim's holder. CI size: 60 workflows, 2 server kills and 2 pool
// kills a second apart; RUNLOG_SOAK=1: 300 workflows, a kill every 2 s,
// every other one the server's (at most one every 6 s).
func TestPoolSoakServerKills(t *testing.T) {
	if testing.Short() {
		t.Skip("runs server and worker processes; skipped with -short")
	}
	workflows, killEvery, maxKills, serverEvery := 60, time.Second, 4, time.Second
	if faulttest.Soak() {
		workflows, killEvery, maxKills, serverEvery = 300, 2*time.Second, 1000, 6*time.Second
	}
	poolSoak(t, workflows, killEvery, maxKills, serverEvery)
}

// poolSoak runs the soak: workflows on four pool processes, one killed
// and replaced every killEvery (maxKills in all, every other one the
// server's when serverEvery is set: the server is then a child process,
// killed and started again at most every serverEvery).
func poolSoak(t *testing.T, workflows int, killEvery time.Duration, maxKills int, serverEvery time.Duration) {
	rng := rand.New(rand.NewPCG(faulttest.Seed(t), 0x706f6f6c))
	var url string
	var srv *serverChild
	if serverEvery > 0 {
		srv = startServerChild(t)
		url = srv.url()
	} else {
		url = startServer(t)
	}
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
	kills, serverKills := 0, 0
	lastKill, lastServerKill := time.Now(), time.Now()
	killedAt := map[string]time.Time{} // by process name (the worker names' prefix)
	sent := map[string]bool{}
	deadline := time.Now().Add(3 * time.Minute)
	if faulttest.Soak() {
		deadline = time.Now().Add(20 * time.Minute)
	}
	unavailable := 0               // reads refused while the server was down or recovering
	completed := map[string]bool{} // terminal: never read again
	for {
		done := len(completed)
		for _, id := range ids {
			if completed[id] {
				continue
			}
			snap, _, err := st.LoadSnapshot(ctx, id)
			if err != nil && srv != nil && ctx.Err() == nil {
				unavailable++ // the server is restarting: look again
				done = -len(ids)
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case snap.State.Kind == workflow.Completed:
				completed[id] = true
				done++
			case snap.State.Kind.Terminal():
				t.Fatalf("%s ended %s: %+v", id, snap.State.Kind, snap.State)
			case snap.State.Position.Kind == workflow.AtSignal && !sent[id]:
				if err := st.SendEvent(ctx, id, "approval", []byte("approved-"+id)); err != nil {
					if srv != nil {
						unavailable++ // the server is restarting: sent again next time, it is not yet sent
						continue
					}
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
		if srv != nil && kills < maxKills && kills%2 == 0 && time.Since(lastKill) > killEvery && time.Since(lastServerKill) > serverEvery {
			srv.kill() // SIGKILL
			srv.start()
			serverKills++
			kills++
			lastKill, lastServerKill = time.Now(), time.Now()
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
		time.Sleep(200 * time.Millisecond) // the test's reads must not starve the pool of the machine's cores
	}

	// The histories: each step's result once per run, each written by the
	// holder of the step's claim; how long tasks waited for a worker.
	takeOvers := 0
	var queued []time.Duration // from a task becoming runnable to its first claim
	type takeOver struct {
		id         string
		killed, at time.Time
		from       string
	}
	var overs []takeOver // of claims held by killed processes
	for _, id := range ids {
		results := map[workflow.TaskID]int{}
		holder := map[workflow.TaskID]string{}
		var ready time.Time // the last commit that moved the run: its current task became runnable then
		for m, err := range st.Log().Read(ctx, id, 0) {
			if err != nil {
				t.Fatal(err)
			}
			rec, err := events.Decode(m, id)
			if err != nil {
				t.Fatal(err)
			}
			moved := false
			for _, ev := range rec.Commit.Events {
				switch d := ev.Data.(type) {
				case *events.SnapshotCreatedData, *events.EventConsumedData:
					moved = true
				case *events.TaskClaimReleasedData:
					// A pool's own releases and releasing checkpoints name
					// the worker that made them.
					if rec.Commit.Actor != d.Worker {
						t.Errorf("%s: %s's claim of %q released by the commit %s with actor %q", id, d.TaskID, d.Worker, rec.Commit.Command, rec.Commit.Actor)
					}
				case *events.TaskClaimedData:
					holder[d.TaskID] = d.Worker
					if d.TakenOver == nil {
						queued = append(queued, m.Time.Sub(ready))
						break
					}
					takeOvers++
					proc, _, _ := strings.Cut(d.TakenOver.Worker, "-")
					if k, ok := killedAt[proc]; ok && m.Time.After(k) {
						overs = append(overs, takeOver{id: id, killed: k, at: m.Time, from: d.TakenOver.Worker})
					}
				case *events.CheckpointSavedData:
					moved = true
					for _, o := range d.Completed {
						task := o.Task
						results[task]++
						if h, ok := holder[task]; ok && h != rec.Commit.Actor {
							t.Errorf("%s: %s's result written by %q while %q held its claim", id, task, rec.Commit.Actor, h)
						}
					}
				}
			}
			if moved {
				ready = m.Time
			}
		}
		for _, s := range chain.Steps {
			if n := results[workflow.NewTaskID(s.Name)]; n != 1 {
				t.Errorf("%s: %s's result checkpointed %d times, want once", id, s.Name, n)
			}
		}
	}
	// A claim its worker's death left is taken over once its lease ends
	// (2 s), the index has caught up (an indexer that died with it: 1 s
	// pinned TTL) and a worker is free: under a backlog the task waits its
	// turn as every task does. So each take-over must come within the
	// lease, the indexer's take-over, a second of polling and restarting,
	// and the longest any task of the run waited for a worker; a claim
	// left to wait longer is a stall of the take-over path.
	slices.Sort(queued)
	longestQueue := time.Duration(0)
	if len(queued) > 0 {
		longestQueue = queued[len(queued)-1]
	}
	const leaseTTL, indexerBound, slack = 2 * time.Second, time.Second, 2 * time.Second
	// history is o's instance's history, in seconds from the kill, with
	// each claim's worker and what it took over.
	history := func(o takeOver) string {
		var b strings.Builder
		for m, err := range st.Log().Read(ctx, o.id, 0) {
			if err != nil {
				t.Fatal(err)
			}
			rec, _ := events.Decode(m, o.id)
			var types []string
			for _, ev := range rec.Commit.Events {
				ty := string(ev.Type)
				if d, ok := ev.Data.(*events.TaskClaimedData); ok {
					ty += " (" + d.Worker
					if d.TakenOver != nil {
						ty += ", taking over " + d.TakenOver.Worker
					}
					ty += ")"
				}
				types = append(types, ty)
			}
			fmt.Fprintf(&b, "\n  %+8.3fs seq %d %s by %s: %s", m.Time.Sub(o.killed).Seconds(), m.Seq, rec.Commit.Command, rec.Commit.Actor, strings.Join(types, ", "))
		}
		return b.String()
	}
	var waits []time.Duration
	var slowest *takeOver
	for i, o := range overs {
		w := o.at.Sub(o.killed)
		waits = append(waits, w)
		if slowest == nil || w > slowest.at.Sub(slowest.killed) {
			slowest = &overs[i]
		}
		if bound := leaseTTL + indexerBound + slack + longestQueue; srv == nil && w > bound {
			t.Errorf("%s's claim on %s was taken over %v after its process was killed, beyond %v (lease, indexer, slack and the longest wait of any task for a worker, %v); the history, in seconds from the kill:%s",
				o.from, o.id, w.Round(time.Millisecond), bound, longestQueue.Round(time.Millisecond), history(o))
		}
	}
	if slowest != nil {
		// A take-over later than the lease, the indexer and the slack
		// waited in the queue (a task freed by a take-over ranks by the
		// time its task became runnable, behind older work): its history
		// shows which.
		if w := slowest.at.Sub(slowest.killed); w > leaseTTL+indexerBound+slack {
			t.Logf("FIGURES: the slowest take-over, %v after the kill of %s (the longest wait of any task for a worker: %v); the history, in seconds from the kill:%s",
				w.Round(time.Millisecond), slowest.from, longestQueue.Round(time.Millisecond), history(*slowest))
		}
	}
	if kills-serverKills == 0 {
		t.Error("no worker process was killed: the soak proved nothing about kills")
	}
	if srv != nil && serverKills == 0 {
		t.Error("the server was never killed: the soak proved nothing about server kills")
	}
	if faulttest.Soak() && takeOvers == 0 {
		t.Error("no claim was taken over from a killed worker: the soak proved nothing about lost leases")
	}
	slices.Sort(waits)
	quantile := func(ds []time.Duration, q float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		return ds[int(q*float64(len(ds)-1))].Round(time.Millisecond)
	}
	if srv != nil {
		t.Logf("FIGURES: the server was SIGKILLed and restarted %d times; %d reads of the test refused while it was down", serverKills, unavailable)
	}
	t.Logf("FIGURES: seed %d: %d workflows completed on %d pool processes (%d killed with SIGKILL, restarted), %d claims taken over from dead workers; "+
		"from a kill to the take-over of a claim the killed process held: p50 %v, p90 %v, longest %v over %d (lease TTL 2 s, heartbeats every 0.5 s); "+
		"from a task becoming runnable to its first claim: p50 %v, p90 %v, longest %v over %d",
		faulttest.Seed(t), len(ids), next, kills-serverKills, takeOvers, quantile(waits, 0.5), quantile(waits, 0.9), quantile(waits, 1), len(waits),
		quantile(queued, 0.5), quantile(queued, 0.9), quantile(queued, 1), len(queued))
}
