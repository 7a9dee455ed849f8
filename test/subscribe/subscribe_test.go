// Package subscribe holds the fault tests of durable subscriptions:
// subscriber processes killed with SIGKILL while commits are written,
// and two processes sharing a subscription.
//
//	go test -v ./test/subscribe/
//	RUNLOG_SOAK=1 go test -v -timeout 30m ./test/subscribe/   # more commits, more kills
package subscribe

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// childEnv tells the test binary to run as a subscriber process: the
// server URL.
const childEnv = "RUNLOG_SUBSCRIBER_CHILD"

const (
	subName    = "fault"
	partitions = 2
)

func TestMain(m *testing.M) {
	if url := os.Getenv(childEnv); url != "" {
		os.Exit(runChild(url))
	}
	os.Exit(m.Run())
}

// runChild subscribes until killed, printing "H partition seq instance"
// when its handler is called and "A partition seq" once the
// acknowledgement is confirmed.
func runChild(url string) int {
	ctx := context.Background()
	js, err := jetstream.Connect(ctx, url, jetstream.ConnectConfig{Name: "subscriber-child"}, jetstream.Config{Partitions: partitions})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	line := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		_ = out.Flush()
	}
	line("subscribing")
	opts := jetstream.SubscribeOptions{PinnedTTL: time.Second, AckWait: 2 * time.Second,
		Acked: func(d jetstream.Delivery) { line("A %d %d", d.Partition, d.Record.Seq) }}
	err = js.Subscribe(ctx, subName, opts, func(_ context.Context, d jetstream.Delivery) error {
		line("H %d %d %s", d.Partition, d.Record.Seq, d.Record.Commit.Instance)
		return nil
	})
	fmt.Fprintln(os.Stderr, err)
	return 2
}

// writerStore starts a server and opens, on a connection of the test's
// own, the partitioned store the subscribers read and a lifecycle store
// that writes to it.
func writerStore(t *testing.T) (url string, js *jetstream.Log, st *lifecycle.Store) {
	t.Helper()
	url = natstest.StartListening(t).ClientURL()
	js, err := jetstream.Connect(t.Context(), url, jetstream.ConnectConfig{Name: "writer"}, jetstream.Config{Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.Close() })
	st, err = lifecycle.New(js, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return url, js, st
}

// commit names a commit by partition and sequence.
type commit struct {
	part int
	seq  uint64
}

// line is one line a child printed.
type line struct {
	acked    bool
	c        commit
	instance string
}

// child is a subscriber process and what it printed.
type child struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []line
	done  chan struct{}
}

func startChild(t *testing.T, url string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: exec.Command(exe), done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), childEnv+"="+url)
	c.cmd.Stderr = os.Stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.kill() })
	r := bufio.NewScanner(out)
	if !r.Scan() || r.Text() != "subscribing" {
		t.Fatalf("the subscriber process said %q", r.Text())
	}
	go func() {
		defer close(c.done)
		for r.Scan() {
			f := strings.Fields(r.Text())
			p, _ := strconv.Atoi(f[1])
			seq, _ := strconv.ParseUint(f[2], 10, 64)
			l := line{acked: f[0] == "A", c: commit{p, seq}}
			if !l.acked {
				l.instance = f[3]
			}
			c.mu.Lock()
			c.lines = append(c.lines, l)
			c.mu.Unlock()
		}
	}()
	return c
}

// kill stops the process with SIGKILL and waits for all it printed.
func (c *child) kill() []line {
	_ = c.cmd.Process.Kill()
	// Read what it wrote to the end before Wait, which closes the pipe:
	// lines still in the pipe would be lost, and a commit it handled
	// would look never handled.
	<-c.done
	_ = c.cmd.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lines)
}

func (c *child) handled() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lines {
		if !l.acked {
			n++
		}
	}
	return n
}

// write makes commits on instances until it has made n: a create, then
// pause requests stored and cleared in turn.
func write(ctx context.Context, st *lifecycle.Store, prefix string, instances, n int) error {
	made := 0
	for round := 0; made < n; round++ {
		for i := 0; i < instances && made < n; i++ {
			id := fmt.Sprintf("%s-%03d", prefix, i)
			var err error
			switch {
			case round == 0:
				_, err = st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: workflow.DefinitionHashOf("d"), FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("t")}})
			case round%2 == 1:
				err = st.StoreSignal(ctx, id, workflow.Pause, workflow.SignalRequest{Reason: "r"})
			default:
				err = st.ClearSignal(ctx, id, workflow.Pause)
			}
			if err != nil {
				return fmt.Errorf("%s round %d: %w", id, round, err)
			}
			made++
		}
	}
	return nil
}

// logCommits lists every commit of the store with its instance.
func logCommits(t *testing.T, s *jetstream.Log) map[commit]string {
	t.Helper()
	out := map[commit]string{}
	for id, err := range s.AllInstances(t.Context(), "") {
		if err != nil {
			t.Fatal(err)
		}
		for m, err := range s.Read(t.Context(), id, 0) {
			if err != nil {
				t.Fatal(err)
			}
			out[commit{jetstream.PartitionOf(id, partitions), m.Seq}] = id
		}
	}
	return out
}

func soak() bool { return os.Getenv("RUNLOG_SOAK") != "" }

// TestKilledSubscribers: subscriber processes are killed with SIGKILL at
// random points while 10,000 commits are written, one after the other,
// each replaced at once. Over the whole run every commit is handled at
// least once; each process handles each instance's commits in log
// order, and so does the run as a whole once repeats are set aside; a
// commit is handled again only if no process had its acknowledgement
// confirmed.
func TestKilledSubscribers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs subscriber processes; skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("RUNLOG_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (RUNLOG_SEED)", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	commits, kills := 10_000, 6
	if soak() {
		commits, kills = 50_000, 25
	}
	url, js, st := writerStore(t)
	ctx := t.Context()
	written := make(chan error, 1)
	go func() { written <- write(ctx, st, "sub", 100, commits) }()

	var runs [][]line // what each process printed, in the order they ran
	cur := startChild(t, url)
	writing := true
	for k := 0; k < kills || writing; k++ {
		// Let it handle something, then kill it at a random point.
		before := cur.handled()
		deadline := time.Now().Add(30 * time.Second)
		for cur.handled() == before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		runs = append(runs, cur.kill())
		cur = startChild(t, url)
		select {
		case err := <-written:
			if err != nil {
				t.Fatal(err)
			}
			writing = false
		default:
		}
		if k > kills+50 {
			t.Fatal("the writer did not finish")
		}
	}
	want := logCommits(t, js)
	if len(want) != commits {
		t.Fatalf("the log holds %d commits, want %d", len(want), commits)
	}
	// The last process finishes the work.
	seen := func(rs [][]line) map[commit]bool {
		m := map[commit]bool{}
		for _, r := range rs {
			for _, l := range r {
				if !l.acked {
					m[l.c] = true
				}
			}
		}
		return m
	}
	// It has all the time it needs while it makes progress (a loaded
	// machine runs it slowly), and 30 s without handling anything is a
	// stall: the check below then names what it never handled.
	stalled := time.Now().Add(30 * time.Second)
	handled := -1
	for {
		cur.mu.Lock()
		last := slices.Clone(cur.lines)
		cur.mu.Unlock()
		n := len(seen(append(slices.Clone(runs), last)))
		if n == len(want) || time.Now().After(stalled) {
			break
		}
		if n > handled {
			handled, stalled = n, time.Now().Add(30*time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // anything more it would handle
	runs = append(runs, cur.kill())

	s := seen(runs)
	var missing []commit
	for c := range want {
		if !s[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		consumerState(t, url, js)
		slices.SortFunc(missing, func(a, b commit) int { return cmp.Or(cmp.Compare(a.part, b.part), cmp.Compare(a.seq, b.seq)) })
		t.Fatalf("%d of %d commits never handled: %v (partition, seq; the last process ran %d lines)", len(missing), len(want), missing[:min(len(missing), 10)], len(runs[len(runs)-1]))
	}
	acked := map[commit]bool{}
	firstSeen := map[commit]bool{}
	lastByInstance := map[string]uint64{}
	dups := 0
	for i, r := range runs {
		perProcess := map[string]uint64{}
		for _, l := range r {
			if l.acked {
				acked[l.c] = true
				continue
			}
			if want[l.c] != l.instance {
				t.Fatalf("process %d handled %v as %q; the log has %q there", i, l.c, l.instance, want[l.c])
			}
			if prev, ok := perProcess[l.instance]; ok && l.c.seq <= prev {
				t.Fatalf("process %d handled %s seq %d after seq %d", i, l.instance, l.c.seq, prev)
			}
			perProcess[l.instance] = l.c.seq
			if firstSeen[l.c] {
				dups++
				if acked[l.c] {
					t.Fatalf("process %d handled %v again after its acknowledgement was confirmed", i, l.c)
				}
				continue
			}
			firstSeen[l.c] = true
			if prev := lastByInstance[l.instance]; l.c.seq <= prev {
				t.Fatalf("%s: seq %d handled for the first time after seq %d", l.instance, l.c.seq, prev)
			}
			lastByInstance[l.instance] = l.c.seq
		}
	}
	t.Logf("%d commits, %d subscriber processes (%d killed), %d handled again (unacknowledged when killed)", len(want), len(runs), len(runs), dups)
}

// TestSharedSubscription: two processes subscribe under one name to a
// store of two partitions while commits are written for a few seconds:
// together they handle every commit exactly once (nobody is killed),
// each instance by one process at a time, in log order, and they split
// the partitions (the one pinned on both gives one up).
func TestSharedSubscription(t *testing.T) {
	if testing.Short() {
		t.Skip("runs subscriber processes; skipped with -short")
	}
	url, js, st := writerStore(t)
	ctx := t.Context()
	a, b := startChild(t, url), startChild(t, url)
	// Twelve rounds of writes, and more (for a minute at most) until both
	// processes have handled some: a partition changes hands at the
	// subscription's next look at its consumers (every PinnedTTL), which
	// on a loaded machine can come after the twelfth round.
	start := time.Now()
	for round := 0; round < 12 || (a.handled() == 0 || b.handled() == 0) && time.Since(start) < time.Minute; round++ {
		if err := write(ctx, st, fmt.Sprint("r", round), 20, 200); err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
	}
	want := logCommits(t, js)
	waitUntil(t, func() bool { return a.handled()+b.handled() >= len(want) }, "every commit handled")
	time.Sleep(300 * time.Millisecond)
	ra, rb := a.kill(), b.kill()
	count := map[commit]int{}
	for who, r := range [][]line{ra, rb} {
		last := map[string]uint64{}
		for _, l := range r {
			if l.acked {
				continue
			}
			count[l.c]++
			if l.c.seq <= last[l.instance] {
				t.Fatalf("process %d: %s seq %d after %d", who, l.instance, l.c.seq, last[l.instance])
			}
			last[l.instance] = l.c.seq
		}
	}
	for c := range want {
		if count[c] != 1 {
			t.Fatalf("commit %v handled %d times, want once", c, count[c])
		}
	}
	t.Logf("process a handled %d commits, process b %d", a.handled(), b.handled())
	if a.handled() == 0 || b.handled() == 0 {
		t.Errorf("one process did all the work: a %d, b %d", a.handled(), b.handled())
	}
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// consumerState logs the subscription's consumer on each partition stream
// (what the server says it delivered, has pending and is waiting on): what
// a stall needs to be understood.
func consumerState(t *testing.T, url string, js *jetstream.Log) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Logf("consumer state: connect: %v", err)
		return
	}
	defer nc.Close()
	jsc, err := natsjs.New(nc)
	if err != nil {
		t.Logf("consumer state: %v", err)
		return
	}
	for _, name := range js.Streams() {
		c, err := jsc.Consumer(t.Context(), name, subName)
		if err != nil {
			t.Logf("consumer state of %s: %v", name, err)
			continue
		}
		ci := c.CachedInfo()
		t.Logf("consumer %s/%s: delivered stream seq %d, ack floor %d, ack pending %d, redelivered %d, pending %d, waiting %d, groups %+v",
			name, subName, ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumAckPending, ci.NumRedelivered, ci.NumPending, ci.NumWaiting, ci.PriorityGroups)
	}
}
