// Package workers tests task claims across processes and connections:
// many workers racing for one task, and a worker process killed while it
// holds a claim.
package workers

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/runlog/runlog/dispatch"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

var (
	def  = workflow.DefinitionHashOf("workers v1")
	task = workflow.NewTaskID("work")
)

// childEnv tells the test binary to run as a worker process: the server
// URL and the instance to claim.
const childEnv = "RUNLOG_WORKER_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	if spec := os.Getenv(poolChildEnv); spec != "" {
		os.Exit(runPoolChild(spec))
	}
	if spec := os.Getenv(serverChildEnv); spec != "" {
		os.Exit(runServerChild(spec))
	}
	os.Exit(m.Run())
}

// startServer runs a nats-server with JetStream on a loopback port.
func startServer(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s.ClientURL()
}

// worker opens a store on a connection of its own, as a worker process
// would.
func worker(t testing.TB, ctx context.Context, url, name string) *lifecycle.Store {
	t.Helper()
	js, err := jetstream.Connect(ctx, url, jetstream.ConnectConfig{Name: name}, jetstream.Config{})
	if err != nil {
		t.Fatalf("%s: connect: %v", name, err)
	}
	t.Cleanup(func() { _ = js.Close() })
	st, err := lifecycle.New(js, lifecycle.Config{Leases: js.Leases()})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestClaimContended: 32 workers with their own connections claim the
// same task at once: exactly one gets it, every other is told who holds
// it, and the history holds one claim. Repeated over several tasks.
func TestClaimContended(t *testing.T) {
	url := startServer(t)
	ctx := t.Context()
	const workers = 32
	stores := make([]*lifecycle.Store, workers)
	for i := range stores {
		stores[i] = worker(t, ctx, url, fmt.Sprintf("worker-%d", i))
	}
	for round := range 5 {
		id := fmt.Sprintf("contended-%d", round)
		if _, err := stores[0].PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: def, FirstTask: workflow.TaskHint{ID: task}}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make([]error, workers)
		claims := make([]lifecycle.TaskClaim, workers)
		for i := range workers {
			wg.Go(func() {
				<-start
				claims[i], results[i] = stores[i].ClaimTask(ctx, id, task, fmt.Sprintf("worker-%d", i), time.Minute)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range results {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: workers %d and %d both claimed the task", round, winner, i)
				}
				winner = i
			case !errors.Is(err, lifecycle.ErrAlreadyClaimed):
				t.Fatalf("round %d: worker %d: %v, want ErrAlreadyClaimed", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody claimed the task", round)
		}
		st, err := stores[0].Load(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if c, ok := st.Claims[task]; !ok || c.ID != claims[winner].ID || len(st.Claims) != 1 {
			t.Fatalf("round %d: the history's claims %+v, want worker-%d's only", round, st.Claims, winner)
		}
		if st.Commits != 2 {
			t.Fatalf("round %d: %d commits, want the create and one claim", round, st.Commits)
		}
	}
}

// childClaim is what a worker process prints once it holds its claim.
type childClaim struct {
	Claim    lifecycle.TaskClaim `json:"claim"`
	Snapshot *workflow.Snapshot  `json:"snapshot"`
	Revision lifecycle.Revision  `json:"revision"`
}

// runChild is a worker process: it claims the task with a 1 s lease,
// prints the claim and the snapshot it loaded, then heartbeats until it
// is killed.
func runChild(spec string) int {
	url, id, _ := strings.Cut(spec, " ")
	ctx := context.Background()
	js, err := jetstream.Connect(ctx, url, jetstream.ConnectConfig{Name: "killed-worker"}, jetstream.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	st, err := lifecycle.New(js, lifecycle.Config{Leases: js.Leases()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := st.ClaimTask(ctx, id, task, "killed-worker", time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	snap, rev, err := st.LoadSnapshot(ctx, id)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	b, _ := json.Marshal(childClaim{Claim: c, Snapshot: snap, Revision: rev})
	fmt.Println(string(b))
	for {
		time.Sleep(300 * time.Millisecond)
		_ = st.ExtendTaskClaim(ctx, id, task, "killed-worker", time.Second)
	}
}

// TestKilledWorker: a worker process holding a claim (heartbeating) is
// killed with SIGKILL; another worker takes the claim over once the lease
// has ended, and the killed worker's save, replayed from its last state
// and claim, is refused with ErrClaimLost and writes nothing.
func TestKilledWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a worker process; skipped with -short")
	}
	url := startServer(t)
	ctx := t.Context()
	st := worker(t, ctx, url, "survivor")
	const id = "victim-task"
	if _, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: def, FirstTask: workflow.TaskHint{ID: task}}); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+url+" "+id)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the worker process said nothing: %v", err)
	}
	var held childClaim
	if err := json.Unmarshal([]byte(line), &held); err != nil {
		t.Fatalf("worker process output %q: %v", line, err)
	}
	// While it heartbeats, nobody else gets the task.
	time.Sleep(1500 * time.Millisecond)
	if _, err := st.ClaimTask(ctx, id, task, "survivor", time.Minute); !errors.Is(err, lifecycle.ErrAlreadyClaimed) {
		t.Fatalf("claim while the worker heartbeats: %v, want ErrAlreadyClaimed", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	deadline := time.Now().Add(20 * time.Second)
	var taken lifecycle.TaskClaim
	for {
		taken, err = st.ClaimTask(ctx, id, task, "survivor", time.Minute)
		if err == nil {
			break
		}
		if !errors.Is(err, lifecycle.ErrAlreadyClaimed) || time.Now().After(deadline) {
			t.Fatalf("take-over after the kill: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if taken.TookOver == nil || taken.TookOver.Claim != held.Claim.ID || taken.TookOver.Worker != "killed-worker" {
		t.Fatalf("take-over %+v, want it to name the killed worker's claim %s", taken, held.Claim.ID)
	}
	// The killed worker's save, replayed from what it held.
	replay := worker(t, ctx, url, "replayed")
	before, err := st.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	held.Snapshot.MarkTaskCompleted(task, []byte("from the dead"), held.Snapshot.UpdatedAt)
	if _, err := replay.SaveSnapshot(ctx, held.Snapshot, held.Revision, lifecycle.WithClaim(held.Claim, true)); !errors.Is(err, lifecycle.ErrClaimLost) {
		t.Fatalf("the killed worker's replayed save: %v, want ErrClaimLost", err)
	}
	after, err := st.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if after.LastSeq != before.LastSeq {
		t.Fatalf("the refused save wrote: last seq %d → %d", before.LastSeq, after.LastSeq)
	}
	t.Logf("killed worker's claim %s taken over by %s; its replayed save refused", held.Claim.ID, taken.ID)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// indexerEnv tells the test binary to run as an indexer process: the
// server URL.
const indexerEnv = "RUNLOG_INDEXER_CHILD"

func init() {
	if url := os.Getenv(indexerEnv); url != "" {
		os.Exit(runIndexerChild(url))
	}
}

// runIndexerChild keeps the runnable index until it is killed.
func runIndexerChild(url string) int {
	ctx := context.Background()
	js, err := jetstream.Connect(ctx, url, jetstream.ConnectConfig{Name: "indexer-child"}, jetstream.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	st, err := lifecycle.New(js, lifecycle.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("indexing")
	if err := js.RunnableIndex().Run(ctx, st, jetstream.IndexerOptions{PinnedTTL: time.Second}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

// TestKilledIndexer: an indexer process is the one the consumer pins;
// it is killed with SIGKILL while commits keep coming; an indexer in
// this process takes over once the pinned TTL passes, and the index ends
// equal to one rebuilt from the log: nothing the killed one had not
// acknowledged is lost.
func TestKilledIndexer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an indexer process; skipped with -short")
	}
	url := startServer(t)
	ctx := t.Context()
	js, err := jetstream.Connect(ctx, url, jetstream.ConnectConfig{Name: "writer"}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.Close() })
	st, err := lifecycle.New(js, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), indexerEnv+"="+url)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || strings.TrimSpace(line) != "indexing" {
		t.Fatalf("the indexer process said %q, %v", line, err)
	}
	create := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: fmt.Sprintf("k-%d", i), DefinitionHash: def, FirstTask: workflow.TaskHint{ID: task}}); err != nil {
				t.Fatal(err)
			}
			if i%3 == 0 {
				if err := st.StoreSignal(ctx, fmt.Sprintf("k-%d", i), workflow.Pause, workflow.SignalRequest{}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	x := js.RunnableIndex()
	count := func() int {
		n := 0
		for _, err := range x.Entries(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		return n
	}
	create(0, 30)
	waitFor(t, func() bool { return count() == 20 }, "the child indexed the first 30 instances")
	// Kill it while more commits come; they wait for another indexer.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	create(30, 60)
	ictx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- x.Run(ictx, st, jetstream.IndexerOptions{PinnedTTL: time.Second}) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return count() == 40 }, "the survivor indexed the commits made after the kill")
	rebuilt := dispatch.NewMemIndex()
	if err := rebuilt.Rebuild(ctx, st); err != nil {
		t.Fatal(err)
	}
	if rebuilt.Len() != count() {
		t.Fatalf("maintained %d entries, rebuilt %d", count(), rebuilt.Len())
	}
}

// waitFor polls cond up to 30 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30 s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
