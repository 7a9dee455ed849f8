package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/golden"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// fakeNow is the fixed clock of the deterministic tests.
const fakeNow = "2026-03-01T09:00:00Z"

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"replay": main, "natsserve": natsServe})
}

// TestScripts runs the real binary on the scripts in testdata/script.
func TestScripts(t *testing.T) {
	t.Parallel()
	testscript.Run(t, testscript.Params{
		Dir:           "testdata/script",
		UpdateScripts: golden.Updating(),
		Setup: func(env *testscript.Env) error {
			env.Setenv("RUNLOG_DIR", filepath.Join(env.WorkDir, "store"))
			env.Setenv("RUNLOG_FAKE_NOW", fakeNow)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode": cmdExitCode,
		},
	})
}

// cmdExitCode runs the replay binary and checks its exit code:
//
//	exitcode 2 replay show
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode CODE replay [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: bad code %q", args[0])
	}
	// The binary testscript installed is in the script's PATH, not the
	// test's.
	path := ""
	for dir := range strings.SplitSeq(ts.Getenv("PATH"), string(os.PathListSeparator)) {
		if p := filepath.Join(dir, args[1]); fileExists(p) {
			path = p
			break
		}
	}
	if path == "" {
		ts.Fatalf("exitcode: %s not found in the script's PATH", args[1])
	}
	cmd := exec.Command(path, args[2:]...)
	cmd.Dir = ts.MkAbs(".")
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "RUNLOG_DIR", "RUNLOG_FAKE_NOW", "XDG_DATA_HOME", "NATS_URL", "WORK"} {
		if v := ts.Getenv(k); v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Stdout, cmd.Stderr = ts.Stdout(), ts.Stderr()
	err = cmd.Run()
	got := 0
	if ee, ok := err.(*exec.ExitError); ok {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("exitcode: %v", err)
	}
	if got != want {
		ts.Fatalf("replay %s: exit code %d, want %d", strings.Join(args[2:], " "), got, want)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// result is one in-process run of the command.
type result struct {
	code           int
	stdout, stderr string
}

// replay runs the command in process.
func replay(t *testing.T, args ...string) result {
	t.Helper()
	return replayCtx(t, t.Context(), args...)
}

func replayCtx(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// mustRun runs the command and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := replay(t, args...)
	if r.code != exitOK {
		t.Fatalf("replay %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// seeded returns a store directory holding the demo data of seed 1, made
// with the fixed clock.
func seeded(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	mustRun(t, "demo", "--dir", dir, "--seed", "1", "--now", fakeNow)
	return dir
}

// masked replaces what changes from run to run: the store directory and
// the times the server stamps.
func masked(s, dir string) string {
	s = strings.ReplaceAll(s, dir, "$DIR")
	s = regexp.MustCompile(`"stored": "[^"]*"`).ReplaceAllString(s, `"stored": "<masked>"`)
	s = regexp.MustCompile(`"stored":"[^"]*"`).ReplaceAllString(s, `"stored":"<masked>"`)
	s = regexp.MustCompile(`\(stored [^)]*\)`).ReplaceAllString(s, `(stored <masked>)`)
	return s
}

// TestGolden pins the output of every read subcommand on the demo data,
// in text and JSON.
func TestGolden(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "store")
	demo := mustRun(t, "demo", "--dir", dir, "--seed", "1", "--now", fakeNow)
	golden.Check(t, "testdata/golden/demo.txt", []byte(masked(demo.stdout, dir)))
	demoJSON := mustRun(t, "demo", "--dir", filepath.Join(t.TempDir(), "store"), "--seed", "1", "--now", fakeNow, "-o", "json")
	golden.Check(t, "testdata/golden/demo.json", []byte(demoJSON.stdout))

	for _, c := range []struct {
		name string
		args []string
	}{
		{"list.txt", []string{"list"}},
		{"list.json", []string{"list", "-o", "json"}},
		{"list.ndjson", []string{"list", "-o", "ndjson"}},
		{"list-completed.txt", []string{"list", "--status", "completed,failed", "--sort", "events"}},
		{"show-order-4.txt", []string{"show", "order-s1-4"}},
		{"show-order-4.json", []string{"show", "order-s1-4", "-o", "json"}},
		{"show-payment.ndjson", []string{"show", "payment-s1", "-o", "ndjson"}},
		{"show-po-detailed.txt", []string{"show", "po-s1", "--detailed"}},
		{"show-etl-signals.txt", []string{"show", "etl-s1", "--type", "signal,workflow", "--reverse"}},
		{"state-etl.txt", []string{"state", "etl-s1"}},
		{"state-etl.json", []string{"state", "etl-s1", "-o", "json"}},
		{"state-order-4-at-19.txt", []string{"state", "order-s1-4", "--at-seq", "19"}},
		{"state-cart.txt", []string{"state", "cart-s1"}},
		{"diff-order-4.txt", []string{"diff", "order-s1-4", "--from", "19", "--to", "20"}},
		{"diff-order-4.json", []string{"diff", "order-s1-4", "--from", "19", "--to", "20", "-o", "json"}},
		{"verify.txt", []string{"verify"}},
		{"verify.json", []string{"verify", "-o", "json"}},
		{"stats.txt", []string{"stats"}},
		{"stats.json", []string{"stats", "-o", "json"}},
	} {
		args := append(slices.Clone(c.args), "--dir", dir, "--now", fakeNow)
		r := mustRun(t, args...)
		golden.Check(t, "testdata/golden/"+c.name, []byte(masked(r.stdout, dir)))
	}
}

// TestStateAtSeqAgreesWithFold checks state --at-seq N against
// projection.FoldUntil for every sequence of the stream around a demo
// instance.
func TestStateAtSeqAgreesWithFold(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	const id = "order-s1-4"

	// Fold directly, with the store closed again before the command runs.
	ctx := t.Context()
	st, err := jetstream.OpenEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for m, err := range st.Read(ctx, id, 0) {
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, m.Seq)
	}
	if len(seqs) < 5 {
		t.Fatalf("%s has %d messages, want a real history", id, len(seqs))
	}
	from, to := seqs[0]-1, seqs[len(seqs)-1]+1
	want := map[uint64]string{}
	for n := from; n <= to; n++ {
		s, err := projection.FoldUntil(id, st.Read(ctx, id, 0), projection.Until{Seq: n})
		if err != nil {
			t.Fatalf("FoldUntil seq %d: %v", n, err)
		}
		b, err := json.MarshalIndent(viewOf(&s, point{seq: n}), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		want[n] = string(b) + "\n"
	}
	st.Close()

	for n := from; n <= to; n++ {
		r := mustRun(t, "state", id, "--at-seq", strconv.FormatUint(n, 10), "-o", "json", "--dir", dir)
		if r.stdout != want[n] {
			t.Errorf("state --at-seq %d:\n%s\nwant (projection.FoldUntil):\n%s", n, r.stdout, want[n])
		}
		var v stateView
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("seq %d: output is not JSON: %v", n, err)
		}
		if v.AtSeq != n || v.LastSeq > n {
			t.Errorf("seq %d: at_seq %d, last_seq %d", n, v.AtSeq, v.LastSeq)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls until cond holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShowFollow runs show --follow against a server, appends through
// lifecycle on the same store, and sees the new events printed.
func TestShowFollow(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	emb, err := jetstream.StartEmbedded(ctx, jetstream.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	nc, err := emb.Conn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	st, err := jetstream.Open(ctx, nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := lifecycle.New(st, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const id = "followed order"
	p, err := ls.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("a")}})
	if err != nil {
		t.Fatal(err)
	}

	for _, format := range []string{"text", "ndjson"} {
		t.Run(format, func(t *testing.T) {
			fctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var out, errb syncBuffer
			done := make(chan int, 1)
			go func() {
				done <- run(fctx, []string{"show", id, "--follow", "--server", emb.ClientURL(), "-o", format}, &out, &errb)
			}()
			waitFor(t, "the history", func() bool { return strings.Contains(out.String(), "snapshot.created") })

			actor := "follower-test-" + format
			if err := ls.StoreSignal(lifecycle.WithActor(ctx, actor), id, workflow.Pause, workflow.SignalRequest{Reason: "look", RequestedBy: actor}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the appended signal", func() bool { return strings.Contains(out.String(), actor) })
			if !strings.Contains(out.String(), "signal.stored") {
				t.Errorf("the new event is not shown as signal.stored:\n%s", out.String())
			}
			if err := ls.ClearSignal(ctx, id, workflow.Pause); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the cleared signal", func() bool { return strings.Contains(out.String(), "signal.cleared") })
			cancel()
			select {
			case code := <-done:
				if code != exitOK {
					t.Errorf("interrupted show --follow exited %d, want 0; stderr:\n%s", code, errb.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatal("show --follow did not stop when its context was cancelled")
			}
		})
	}
	_ = p
}

// behindRunlog starts the embedded server on dir for a test that writes
// to the stream behind runlog's back, with plain nats.go; stop closes
// both before replay opens the directory.
func behindRunlog(t *testing.T, dir string) (js natsjs.JetStream, stop func()) {
	t.Helper()
	emb, err := jetstream.StartEmbedded(t.Context(), jetstream.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := emb.Conn()
	if err != nil {
		t.Fatal(err)
	}
	if js, err = natsjs.New(nc); err != nil {
		t.Fatal(err)
	}
	return js, func() { nc.Close(); _ = emb.Close() }
}

// TestVerifyForeignMessage publishes a message behind runlog's back on an
// instance's subject: verify exits 1 and names its sequence.
func TestVerifyForeignMessage(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	ctx := t.Context()
	js, stop := behindRunlog(t, dir)
	ack, err := js.Publish(ctx, jetstream.DefaultSubject+"."+jetstream.EncodeID("order-s1-2"), []byte(`{"v":1,"note":"written behind runlog's back"}`))
	if err != nil {
		t.Fatal(err)
	}
	// And one on a subject under the stream's prefix that is no
	// instance's: part of no history, skipped and counted.
	if _, err := js.Publish(ctx, "runlog.wf.not.an-instance", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	stop()

	r := replay(t, "verify", "--dir", dir)
	if r.code != exitProblems {
		t.Fatalf("verify exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, exitProblems, r.stdout, r.stderr)
	}
	want := fmt.Sprintf(`instance "order-s1-2" seq %d`, ack.Sequence)
	if !strings.Contains(r.stdout, want) {
		t.Errorf("verify output does not name %s:\n%s", want, r.stdout)
	}
	if !strings.Contains(r.stderr, "problem") {
		t.Errorf("stderr does not say problems were found:\n%s", r.stderr)
	}
	if !strings.Contains(r.stdout, "1 message skipped") || !strings.Contains(r.stdout, ": 1 problem in 1 instance") {
		t.Errorf("the summary does not count the skipped message and the one problem:\n%s", r.stdout)
	}
	// stats counts the commits that decode and calls the instance corrupt.
	var sv statsView
	r = mustRun(t, "stats", "--dir", dir, "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &sv); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sv.Corrupt, []string{"order-s1-2"}) || sv.Commits != sv.Messages-1 {
		t.Errorf("stats: corrupt %v, %d commits of %d messages; want order-s1-2 and one message that is not a commit", sv.Corrupt, sv.Commits, sv.Messages)
	}
	// JSON says the same.
	r = replay(t, "verify", "order-s1-2", "--dir", dir, "-o", "json")
	if r.code != exitProblems {
		t.Fatalf("verify -o json exit %d", r.code)
	}
	var v struct {
		OK       bool `json:"ok"`
		Problems []struct {
			Instance string `json:"instance"`
			Seq      uint64 `json:"seq"`
			Kind     string `json:"kind"`
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("verify -o json: %v\n%s", err, r.stdout)
	}
	if v.OK || len(v.Problems) == 0 || v.Problems[0].Seq != ack.Sequence || v.Problems[0].Instance != "order-s1-2" {
		t.Errorf("verify -o json = %+v, want a problem at seq %d", v, ack.Sequence)
	}
	// --max-problems 1 stops the one pass over the stream at the problem
	// and says how far it read.
	r = replay(t, "verify", "--dir", dir, "--max-problems", "1")
	if r.code != exitProblems || !strings.Contains(r.stdout, fmt.Sprintf("read through seq %d only", ack.Sequence)) {
		t.Errorf("verify --max-problems 1: exit %d, want %d and where it stopped:\n%s", r.code, exitProblems, r.stdout)
	}
	// The other instances are clean.
	mustRun(t, "verify", "order-s1-1", "etl-s1", "--dir", dir)
	// show marks the message and exits 1.
	r = replay(t, "show", "order-s1-2", "--dir", dir)
	if r.code != exitFailed || !strings.Contains(r.stdout, "(undecodable)") {
		t.Errorf("show of a damaged history: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestExportImport exports the demo, imports it into a fresh store, and
// finds the same histories there.
func TestExportImport(t *testing.T) {
	t.Parallel()
	src := seeded(t)
	file := filepath.Join(t.TempDir(), "export.ndjson")
	mustRun(t, "export", "--dir", src, "--file", file)
	ids := listIDs(t, src)
	if len(ids) != 10 {
		t.Fatalf("demo made %d instances, want 10", len(ids))
	}
	// Into a one-stream store, and into a store of 4 partitions: the
	// documented way to re-partition; and back from the partitioned
	// copy into a one-stream store.
	dst := filepath.Join(t.TempDir(), "copy")
	mustRun(t, "import", "--dir", dst, "--file", file)
	parted := filepath.Join(t.TempDir(), "parted")
	mustRun(t, "import", "--dir", parted, "--partitions", "4", "--file", file)
	if r := mustRun(t, "stats", "--dir", parted); !strings.Contains(r.stdout, "4 partitions") {
		t.Errorf("stats of the partitioned copy does not name its partitions:\n%s", r.stdout)
	}
	file2 := filepath.Join(t.TempDir(), "export2.ndjson")
	mustRun(t, "export", "--dir", parted, "--file", file2)
	back := filepath.Join(t.TempDir(), "back")
	mustRun(t, "import", "--dir", back, "--file", file2)

	for _, dst := range []string{dst, parted, back} {
		mustRun(t, "verify", "--dir", dst)
		// The copy holds the same commits, byte for byte; only the stream
		// sequences and stored times are the destination's own (the import
		// appends instance after instance).
		if got := listIDs(t, dst); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(ids))) {
			t.Errorf("the copy %s lists %v, want %v", filepath.Base(dst), got, ids)
		}
		for _, id := range ids {
			a, b := timelineOf(t, src, id), timelineOf(t, dst, id)
			if a != b {
				t.Errorf("show %s differs after export and import into %s:\n%s\nwant:\n%s", id, filepath.Base(dst), b, a)
			}
			sa := mustRun(t, "state", id, "--dir", src, "-o", "json")
			sb := mustRun(t, "state", id, "--dir", dst, "-o", "json")
			if noSeqs(sa.stdout) != noSeqs(sb.stdout) {
				t.Errorf("state %s differs after export and import into %s:\n%s\nwant:\n%s", id, filepath.Base(dst), sb.stdout, sa.stdout)
			}
		}
	}
	// A store of 4 partitions is refused to a client asking for another
	// number, and nothing is written.
	r := replay(t, "import", "--dir", parted, "--partitions", "2", "--file", file)
	if r.code == 0 || !strings.Contains(r.stderr, "has 4 partitions") {
		t.Errorf("import --partitions 2 into a store of 4: exit %d, %s", r.code, r.stderr)
	}

	// Export from stdout reads back the same.
	whole := mustRun(t, "export", "--dir", src)
	one := mustRun(t, "export", "order-s1-1", "--dir", src)
	if !strings.Contains(whole.stdout, `"instance":"order-s1-1"`) || strings.Contains(one.stdout, `"instance":"etl-s1"`) {
		t.Errorf("export of one instance:\n%s", one.stdout)
	}
}

// timelineOf returns show's text output without the SEQ column, and its
// JSON output without the seq and stored fields.
func timelineOf(t *testing.T, dir, id string) string {
	t.Helper()
	var b strings.Builder
	for line := range strings.Lines(mustRun(t, "show", id, "--dir", dir).stdout) {
		_, rest, _ := strings.Cut(line, " ")
		b.WriteString(strings.TrimLeft(rest, " "))
	}
	var evs []showEvent
	if err := json.Unmarshal([]byte(mustRun(t, "show", id, "--dir", dir, "-o", "json").stdout), &evs); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		ev.Seq, ev.Stored = 0, time.Time{}
		j, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// noSeqs masks the stream sequences in state's JSON.
func noSeqs(s string) string {
	return regexp.MustCompile(`"(revision|last_seq)": \d+`).ReplaceAllString(s, `"$1": 0`)
}

func listIDs(t *testing.T, dir string) []string {
	t.Helper()
	r := mustRun(t, "list", "--dir", dir, "-o", "ndjson")
	var ids []string
	for line := range strings.Lines(r.stdout) {
		var row listRow
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("list -o ndjson line %q: %v", line, err)
		}
		ids = append(ids, row.Instance)
	}
	return ids
}

// TestImportTampered alters one exported commit: import refuses the file
// with exit 1 and writes nothing.
func TestImportTampered(t *testing.T) {
	t.Parallel()
	src := seeded(t)
	file := filepath.Join(t.TempDir(), "export.ndjson")
	mustRun(t, "export", "--dir", src, "--file", file)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(data, []byte(`"actor":"worker-2"`), []byte(`"actor":"worker-9"`), 1)
	if bytes.Equal(tampered, data) {
		t.Fatal("the export has no commit by worker-2 to tamper with")
	}
	bad := filepath.Join(t.TempDir(), "tampered.ndjson")
	if err := os.WriteFile(bad, tampered, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	r := replay(t, "import", "--dir", dst, "--file", bad)
	if r.code != exitFailed {
		t.Fatalf("import of a tampered file: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, exitFailed, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout+r.stderr, "order-s1-2") {
		t.Errorf("import does not name the damaged instance:\n%s\n%s", r.stdout, r.stderr)
	}
	// The new store it had to create is removed again: nothing is left.
	if r := replay(t, "list", "--dir", dst); r.code != exitUsage || !strings.Contains(r.stderr, "no runlog store") {
		t.Errorf("the destination after a refused import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestDemoAgain runs the demo twice on one store: both succeed. Running
// it twice with one seed is refused with a clear message.
func TestDemoAgain(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "store")
	mustRun(t, "demo", "--dir", dir)
	mustRun(t, "demo", "--dir", dir)
	if ids := listIDs(t, dir); len(ids) != 20 {
		t.Errorf("two demo runs made %d instances, want 20: %v", len(ids), ids)
	}
	mustRun(t, "verify", "--dir", dir)

	mustRun(t, "demo", "--dir", dir, "--seed", "7")
	r := replay(t, "demo", "--dir", dir, "--seed", "7")
	if r.code != exitFailed || !strings.Contains(r.stderr, "already ran") {
		t.Errorf("demo with a used seed: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// TestListPaging pages through the list with --limit and --after.
func TestListPaging(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	all := listIDs(t, dir)
	var paged []string
	after := ""
	for range 10 {
		args := []string{"list", "--dir", dir, "--limit", "3", "-o", "ndjson"}
		if after != "" {
			args = append(args, "--after", after)
		}
		r := mustRun(t, args...)
		var page []string
		for line := range strings.Lines(r.stdout) {
			var row listRow
			if err := json.Unmarshal([]byte(line), &row); err != nil {
				t.Fatal(err)
			}
			page = append(page, row.Instance)
		}
		paged = append(paged, page...)
		if len(page) < 3 {
			break
		}
		if !strings.Contains(r.stderr, "--after") {
			t.Errorf("a full page does not print the next cursor on stderr: %q", r.stderr)
		}
		after = page[len(page)-1]
	}
	if !slices.Equal(paged, all) {
		t.Errorf("paged list = %v, want %v", paged, all)
	}

	r := mustRun(t, "list", "--dir", dir, "--status", "deleted", "-o", "ndjson")
	if !strings.Contains(r.stdout, `"instance":"cart-s1"`) || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("list --status deleted:\n%s", r.stdout)
	}
	r = mustRun(t, "list", "--dir", dir, "--since", "2026-03-01T09:01:00Z", "--until", "2026-03-01T09:01:12Z", "-o", "ndjson")
	if got := strings.Count(r.stdout, "\n"); got != 2 { // etl-s1 (09:01:01), po-s1 (09:01:11)
		t.Errorf("list --since --until: %d rows:\n%s", got, r.stdout)
	}
	r = mustRun(t, "list", "--dir", dir, "--sort", "updated", "--limit", "1", "-o", "ndjson", "--now", fakeNow)
	if !strings.Contains(r.stdout, "cart-s1") {
		t.Errorf("list --sort updated --limit 1 = %s, want the last changed instance", r.stdout)
	}
}

// TestUsageErrors checks that mistakes exit 2 with a hint.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "usage: replay COMMAND"},
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"--dir", dir}, "flags go after the command"},
		{[]string{"show"}, "missing the instance ID"},
		{[]string{"show", "a", "b"}, "one instance ID expected"},
		{[]string{"show", "x", "--type", "bogus"}, `unknown event type "bogus"`},
		{[]string{"show", "x", "--follow", "--reverse"}, "do not go together"},
		{[]string{"show", "x", "--follow", "-o", "json"}, "use -o ndjson"},
		{[]string{"show", "x", "--since", "yesterday"}, "not a time"},
		{[]string{"state", "x", "--at-seq", "3", "--at", "1h"}, "exclusive"},
		{[]string{"state", "x", "--at-seq", "-1"}, "invalid value"},
		{[]string{"diff", "x"}, "--from is required"},
		{[]string{"diff", "x", "--from", "soon"}, "neither a sequence"},
		{[]string{"list", "--sort", "size"}, "unknown --sort"},
		{[]string{"list", "--status", "running"}, `unknown status "running"`},
		{[]string{"list", "--sort", "id", "--after", "x"}, "--after pages the unsorted list"},
		{[]string{"list", "--after", strings.Repeat("x", 257)}, "--after: "},
		{[]string{"list", "-o", "yaml"}, `unknown output format "yaml"`},
		{[]string{"list", "--bogus"}, "flag provided but not defined"},
		{[]string{"list", "--dir", dir, "--server", "nats://127.0.0.1:1"}, "exclusive"},
		{[]string{"list", "--creds", "x.creds", "--dir", dir}, "applies to --server"},
		{[]string{"import"}, "--file is required"},
		{[]string{"export", "-o", "json", "--dir", dir}, "always writes NDJSON"},
		{[]string{"verify", "--max-problems", "-3", "--dir", dir}, "must not be negative"},
		{[]string{"demo", "extra"}, "no arguments"},
		{[]string{"demo", "--seed", "x"}, "invalid value"},
	} {
		r := replay(t, c.args...)
		if r.code != exitUsage {
			t.Errorf("replay %q: exit %d, want %d\nstderr: %s", c.args, r.code, exitUsage, r.stderr)
			continue
		}
		if !strings.Contains(r.stderr, c.want) {
			t.Errorf("replay %q: stderr does not say %q:\n%s", c.args, c.want, r.stderr)
		}
		if len(c.args) > 1 && !strings.Contains(r.stderr, "--help") {
			t.Errorf("replay %q: no hint to --help:\n%s", c.args, r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("replay %q: a usage error wrote to stdout: %q", c.args, r.stdout)
		}
	}
}

// TestHelp checks that every subcommand has a help with a usage line and
// an example, printed to stdout with exit 0.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			r := replay(t, args...)
			if r.code != exitOK {
				t.Errorf("replay %q: exit %d", args, r.code)
			}
			output := "--output, -o"
			if c.ownOutput {
				output = "--out, -o file"
			}
			for _, want := range []string{"usage: replay " + c.name, "Examples:\n  replay " + c.name, "--dir", "--server", output, "RUNLOG_DIR", "Exit codes"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("replay %q does not say %q:\n%s", args, want, r.stdout)
				}
			}
			if strings.Contains(r.stdout, "--now") {
				t.Errorf("replay %q lists the hidden --now flag", args)
			}
		}
	}
	r := replay(t, "help")
	if r.code != exitOK || !strings.Contains(r.stdout, "verify") {
		t.Errorf("replay help: exit %d\n%s", r.code, r.stdout)
	}
}

// TestNotFound checks the errors for an unknown instance and a missing
// store.
func TestNotFound(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	for _, args := range [][]string{{"show", "nope"}, {"state", "nope"}, {"diff", "nope", "--from", "1"}} {
		r := replay(t, append(args, "--dir", dir)...)
		if r.code != exitFailed || !strings.Contains(r.stderr, `instance "nope" not found`) || !strings.Contains(r.stderr, "replay list") {
			t.Errorf("replay %q: exit %d, stderr:\n%s", args, r.code, r.stderr)
		}
	}
	r := replay(t, "verify", "nope", "--dir", dir)
	if r.code != exitProblems {
		t.Errorf("verify of an unknown id: exit %d\n%s", r.code, r.stdout)
	}
	missing := filepath.Join(t.TempDir(), "nothing-here")
	r = replay(t, "list", "--dir", missing)
	if r.code != exitUsage || !strings.Contains(r.stderr, "no runlog store") || !strings.Contains(r.stderr, "replay demo") {
		t.Errorf("list on a missing store: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if fileExists(missing) {
		t.Errorf("a read created the store directory %s", missing)
	}
	r = replay(t, "list", "--dir", dir, "--stream", "OTHER")
	if r.code != exitUsage || !strings.Contains(r.stderr, "has no stream OTHER") {
		t.Errorf("list of a missing stream: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// TestDefaultDir checks where the store is when --dir is not given.
func TestDefaultDir(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"RUNLOG_DIR": "/r", "XDG_DATA_HOME": "/x", "HOME": "/h"}, "/r"},
		{map[string]string{"XDG_DATA_HOME": "/x", "HOME": "/h"}, "/x/runlog"},
		{map[string]string{"HOME": "/h"}, "/h/.local/share/runlog"},
	} {
		e := &env{getenv: func(k string) string { return c.env[k] }}
		got, err := e.defaultDir()
		if err != nil || got != c.want {
			t.Errorf("defaultDir with %v = %q, %v; want %q", c.env, got, err, c.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-02-01T10:00:00Z":      time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC),
		"2026-02-01T10:00:00+01:00": time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC),
		"2026-02-01":                time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
		"15m":                       now.Add(-15 * time.Minute),
		"2h30m":                     now.Add(-150 * time.Minute),
		"3d":                        now.Add(-72 * time.Hour),
		"1d12h":                     now.Add(-36 * time.Hour),
	} {
		got, err := parseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "-5m", "3x", "d", "2026-13-01"} {
		if _, err := parseTime(in, now); err == nil {
			t.Errorf("parseTime(%q) = nil error", in)
		}
	}
	for in, want := range map[string]point{"": {}, "now": {}, "12": {seq: 12}, "1h": {time: now.Add(-time.Hour)}} {
		got, err := parsePoint(in, now)
		if err != nil || got != want {
			t.Errorf("parsePoint(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parsePoint("0", now); err == nil {
		t.Error("parsePoint(0) = nil error")
	}
}

// TestServer runs the subcommands against a NATS server by URL: reads
// never create the stream, demo and import do.
func TestServer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	emb, err := jetstream.StartEmbedded(ctx, jetstream.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	url := emb.ClientURL()

	for _, args := range [][]string{{"list"}, {"show", "x"}, {"verify"}, {"stats"}, {"export"}} {
		r := replay(t, append(args, "--server", url)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "reads never create the stream") {
			t.Errorf("replay %q on a server without the stream: exit %d, stderr:\n%s", args, r.code, r.stderr)
		}
	}
	nc, err := emb.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := jetstream.Open(ctx, nc, jetstream.Config{NoCreate: true}); err == nil {
		t.Fatal("a read created the stream")
	}

	mustRun(t, "demo", "--server", url, "--seed", "5")
	r := mustRun(t, "list", "--server", url, "--status", "cancelled")
	if !strings.Contains(r.stdout, "payment-s5") {
		t.Errorf("list on the server:\n%s", r.stdout)
	}
	mustRun(t, "verify", "--server", url)
	mustRun(t, "show", "etl-s5", "--server", url, "--type", "workflow.paused")

	r = replay(t, "list", "--server", "nats://127.0.0.1:1")
	if r.code != exitUsage || !strings.Contains(r.stderr, "check --server") {
		t.Errorf("list on an unreachable server: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// TestEmbeddedLock checks that a second process (here: a second run) on
// an embedded store directory in use is refused, not let in to corrupt it.
func TestEmbeddedLock(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"show", "etl-s1", "--follow", "--dir", dir}, &out, &errb) }()
	waitFor(t, "show --follow to start", func() bool { return strings.Contains(out.String(), "workflow.unpaused") })

	r := replay(t, "list", "--dir", dir)
	if r.code != exitUsage || !strings.Contains(r.stderr, "in use by another process") || !strings.Contains(r.stderr, "--server") {
		t.Errorf("list on a store in use: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("show --follow exited %d: %s", code, errb.String())
	}
	mustRun(t, "list", "--dir", dir)
}

// TestTimePoints checks that a time selects the commits made up to it,
// like the sequence of the last of them.
func TestTimePoints(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	// order-s1-4's commit at seq 19 was made at 09:00:36, the next at 09:00:37.
	for _, at := range []string{"2026-03-01T09:00:36Z", "2026-03-01T09:00:36.5Z", "23m23.5s"} {
		r := mustRun(t, "state", "order-s1-4", "--at", at, "-o", "json", "--dir", dir, "--now", "2026-03-01T09:24:00Z")
		var v stateView
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatal(err)
		}
		if v.LastSeq != 19 || v.At == nil {
			t.Errorf("state --at %s: last_seq %d, at %v; want 19", at, v.LastSeq, v.At)
		}
	}
	bySeq := mustRun(t, "diff", "order-s1-4", "--from", "19", "--to", "20", "--dir", dir)
	byTime := mustRun(t, "diff", "order-s1-4", "--from", "2026-03-01T09:00:36Z", "--to", "2026-03-01T09:00:37Z", "--dir", dir)
	_, a, _ := strings.Cut(bySeq.stdout, "\n")
	_, b, _ := strings.Cut(byTime.stdout, "\n")
	if a != b || !strings.Contains(a, "signal.cancel") {
		t.Errorf("diff by time:\n%s\nwant (by sequence):\n%s", byTime.stdout, bySeq.stdout)
	}
	r := mustRun(t, "state", "order-s1-4", "--at", "2026-02-01", "--dir", dir)
	if !strings.Contains(r.stdout, "no commit at or before") {
		t.Errorf("state before the first commit:\n%s", r.stdout)
	}
	r = mustRun(t, "show", "order-s1-4", "--since", "2026-03-01T09:00:37Z", "--until", "2026-03-01T09:00:40Z", "-o", "ndjson", "--dir", dir)
	if n := strings.Count(r.stdout, "\n"); n != 5 { // the 4 events of seq 20 and the checkpoint of seq 21
		t.Errorf("show --since --until: %d events:\n%s", n, r.stdout)
	}
}

// TestProgress checks that the progress line is drawn only on a terminal
// and erased before anything else is printed.
func TestProgress(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	p := newProgress(&b, "verifying")
	p.update(audit.Progress{Instances: 3, Messages: 10})
	p.done()
	if b.Len() != 0 {
		t.Errorf("progress drawn on a non-terminal: %q", b.String())
	}
	p = &progress{w: &b, on: true, what: "verifying", start: time.Now()}
	p.update(audit.Progress{Instances: 3, Total: 5, Messages: 10, Bytes: 2048, Problems: 1, Instance: "order 42"})
	p.done()
	if got := b.String(); !strings.HasPrefix(got, "\r\033[Kverifying: 3/5 instances, 10 messages, 2.0 KiB, 1 problems") ||
		!strings.Contains(got, `"order 42"`) || !strings.HasSuffix(got, "\r\033[K") {
		t.Errorf("progress line = %q", got)
	}
}

// TestShowMarksRefusedCommit publishes, behind runlog's back, a commit
// that decodes but does not link to the instance's chain: show reads
// through the fold, so it marks that commit as not folded (text and
// JSON) and exits 1, and stats calls the instance corrupt.
func TestShowMarksRefusedCommit(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	ctx := t.Context()
	js, stop := behindRunlog(t, dir)
	c := events.Commit{ID: ulid.Make(), Instance: "order-s1-1", Time: time.Now().UTC(), Command: "forged",
		Events: []events.Event{{ID: ulid.Make(), Type: events.WorkflowUnpaused, Data: &events.WorkflowUnpausedData{}}}}
	m, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, jetstream.DefaultSubject+"."+jetstream.EncodeID("order-s1-1"), m.Data)
	if err != nil {
		t.Fatal(err)
	}
	stop()

	r := replay(t, "show", "order-s1-1", "--dir", dir)
	if r.code != exitFailed || !strings.Contains(r.stdout, "[not folded: ") || !strings.Contains(r.stderr, "do not decode or fold") {
		t.Errorf("show of a history with a refused commit: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = replay(t, "show", "order-s1-1", "--dir", dir, "-o", "ndjson")
	var refused []uint64
	for line := range strings.Lines(r.stdout) {
		var row showEvent
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if row.Refused != "" {
			refused = append(refused, row.Seq)
		}
	}
	if !slices.Equal(refused, []uint64{ack.Sequence}) {
		t.Errorf("rows marked refused: seqs %v, want [%d]\n%s", refused, ack.Sequence, r.stdout)
	}
	var sv statsView
	r = mustRun(t, "stats", "--dir", dir, "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &sv); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sv.Corrupt, []string{"order-s1-1"}) || sv.Commits != sv.Messages {
		t.Errorf("stats: corrupt %v, %d commits of %d messages; want order-s1-1, every message a commit", sv.Corrupt, sv.Commits, sv.Messages)
	}
	// The visibility index says what the fold says of such a history.
	corrupt := mustRun(t, "list", "--dir", dir, "--status", "corrupt", "-o", "ndjson").stdout
	if folded := mustRun(t, "list", "--dir", dir, "--status", "corrupt", "-o", "ndjson", "--no-index").stdout; corrupt != folded || !strings.Contains(corrupt, `"order-s1-1"`) {
		t.Errorf("list --status corrupt: index\n%s\nfold\n%s", corrupt, folded)
	}
	// serve's API shows the timeline with the refused commit marked.
	sv2 := startServe(t, dir)
	if code, body := sv2.get(t, "/api/show?id=order-s1-1"); code != 200 || !strings.Contains(body, `"refused"`) {
		t.Errorf("/api/show of a history with a refused commit: %d\n%.500s", code, body)
	}
}
