package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/workflow"
)

// TestVersion: 'replay version', '--version' and '-o json' name the
// versions replay is built with.
func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := mustRun(t, args...)
		if !strings.HasPrefix(r.stdout, "replay ") || !strings.Contains(r.stdout, "nats-server v2.") || !strings.Contains(r.stdout, "go1.") {
			t.Errorf("%v: %q", args, r.stdout)
		}
	}
	var v versionView
	if err := json.Unmarshal([]byte(mustRun(t, "version", "-ojson").stdout), &v); err != nil || v.NATSServer == "" || v.Go == "" {
		t.Errorf("version -ojson: %+v %v", v, err)
	}
}

// TestJoinedShortFlags: -ojson is -o json; a flag of its own that starts
// with o (--out) is not split; an unknown format is refused.
func TestJoinedShortFlags(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	a, b := mustRun(t, "list", "--dir", dir, "-ondjson"), mustRun(t, "list", "--dir", dir, "-o", "ndjson")
	if a.stdout != b.stdout || !strings.HasPrefix(a.stdout, "{") {
		t.Errorf("-ondjson printed\n%s\n-o ndjson printed\n%s", a.stdout, b.stdout)
	}
	if r := replay(t, "list", "--dir", dir, "-oyaml"); r.code != exitUsage || !strings.Contains(r.stderr, `unknown output format "yaml"`) {
		t.Errorf("-oyaml: exit %d\n%s", r.code, r.stderr)
	}
	out := filepath.Join(t.TempDir(), "d.json")
	mustRun(t, "digest", "--dir", dir, "--unsigned", "-out", out)
	if _, err := os.Stat(out); err != nil {
		t.Errorf("digest -out: %v", err)
	}
}

// TestVerifyNoSuchInstance: verify of ids with no history says so, not
// that a history is damaged.
func TestVerifyNoSuchInstance(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	r := replay(t, "verify", "no-such-order", "--dir", dir)
	if r.code != exitProblems || !strings.Contains(r.stderr, `no such instance`) || !strings.Contains(r.stderr, `"no-such-order"`) || strings.Contains(r.stderr, "damaged") {
		t.Errorf("verify of an unknown id: exit %d\n%s", r.code, r.stderr)
	}
	// An unknown id beside a real one that verifies: still only missing.
	r = replay(t, "verify", "no-such-order", "order-s1-1", "--dir", dir)
	if !strings.Contains(r.stderr, "no such instance") {
		t.Errorf("verify of an unknown and a known id:\n%s", r.stderr)
	}
}

// TestCredentialsFromEnvironment: against a server that wants a user and
// a password, replay reads them from NATS_USER and NATS_PASSWORD (the
// server from NATS_URL), or from the natscli context NATS_CONTEXT names
// (server and credentials); a flag wins over the environment; wrong
// credentials fail; --timeout bounds the connection.
func TestCredentialsFromEnvironment(t *testing.T) {
	t.Parallel()
	srv := natstest.StartOptions(t, server.Options{Users: []*server.User{{Username: "ops", Password: "s3cret"}}})
	url := srv.ClientURL()
	cfg := t.TempDir()
	ctxDir := filepath.Join(cfg, "nats", "context")
	if err := os.MkdirAll(ctxDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctxJSON, _ := json.Marshal(map[string]string{"url": url, "user": "ops", "password": "s3cret", "description": "test"})
	if err := os.WriteFile(filepath.Join(ctxDir, "prod.json"), ctxJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	runEnv := func(env map[string]string, args ...string) result {
		var out, errb bytes.Buffer
		code := runWith(t.Context(), args, &out, &errb, func(k string) string { return env[k] })
		return result{code: code, stdout: out.String(), stderr: errb.String()}
	}
	// The demo writes through the environment's credentials.
	if r := runEnv(map[string]string{"NATS_URL": url, "NATS_USER": "ops", "NATS_PASSWORD": "s3cret"}, "demo"); r.code != exitOK {
		t.Fatalf("demo with NATS_USER/NATS_PASSWORD: exit %d\n%s", r.code, r.stderr)
	}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		ok   bool
	}{
		{"environment", map[string]string{"NATS_URL": url, "NATS_USER": "ops", "NATS_PASSWORD": "s3cret"}, nil, true},
		{"wrong password", map[string]string{"NATS_URL": url, "NATS_USER": "ops", "NATS_PASSWORD": "nope"}, []string{"--timeout", "3s"}, false},
		{"flag wins", map[string]string{"NATS_URL": url, "NATS_USER": "ops", "NATS_PASSWORD": "nope"}, []string{"--password", "s3cret"}, true},
		{"context", map[string]string{"NATS_CONTEXT": "prod", "XDG_CONFIG_HOME": cfg}, nil, true},
		{"context flag", map[string]string{"XDG_CONFIG_HOME": cfg}, []string{"--context", "prod"}, true},
		{"missing context", map[string]string{"XDG_CONFIG_HOME": cfg}, []string{"--context", "staging"}, false},
	}
	for _, c := range cases {
		r := runEnv(c.env, append([]string{"list", "-o", "ndjson"}, c.args...)...)
		if ok := r.code == exitOK && strings.Contains(r.stdout, `"instance"`); ok != c.ok {
			t.Errorf("%s: exit %d, want success %v\n%s", c.name, r.code, c.ok, r.stderr)
		}
	}
	if r := runEnv(nil, "list", "--server", url, "--timeout", "0s"); r.code != exitUsage {
		t.Errorf("--timeout 0s: exit %d", r.code)
	}
}

// TestImportWithoutPublishPermission: an import by a user who may use
// JetStream's API but not publish on the stream's subjects says it is a
// permission error, not "run it again".
func TestImportWithoutPublishPermission(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	file := filepath.Join(t.TempDir(), "export.ndjson")
	mustRun(t, "export", "--dir", dir, "--file", file)
	srv := natstest.StartOptions(t, server.Options{Users: []*server.User{
		{Username: "admin", Password: "a"},
		{Username: "ro", Password: "r", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{"$JS.API.>"}}, Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}}}},
	}})
	// The admin makes the stream (an import of nothing would not: write one instance).
	env := map[string]string{"NATS_URL": srv.ClientURL()}
	var out, errb bytes.Buffer
	if code := runWith(t.Context(), []string{"demo", "--user", "admin", "--password", "a"}, &out, &errb, func(k string) string { return env[k] }); code != exitOK {
		t.Fatalf("demo as admin: %d\n%s", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	code := runWith(t.Context(), []string{"import", "--file", file, "--user", "ro", "--password", "r"}, &out, &errb, func(k string) string { return env[k] })
	if code == exitOK || !strings.Contains(errb.String(), "permissions violation") || strings.Contains(errb.String(), "running the same import again") {
		t.Errorf("import without publish permission: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

// TestProgressNote: list's and stats' progress shows only once the work
// has taken over a second, on a terminal, and done clears it.
func TestProgressNote(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	p := &progress{w: &b, on: true, what: "listing", start: time.Now()}
	p.note("3 instances read")
	if b.Len() != 0 {
		t.Fatalf("progress drawn before a second: %q", b.String())
	}
	p.start = time.Now().Add(-2 * time.Second)
	p.note("4 instances read, 1 listed")
	if !strings.Contains(b.String(), "listing: 4 instances read, 1 listed") {
		t.Fatalf("progress %q", b.String())
	}
	p.done()
	if !strings.HasSuffix(b.String(), "\r\033[K") {
		t.Errorf("done did not clear the line: %q", b.String())
	}
	off := &progress{w: &b, on: false, start: time.Now().Add(-time.Hour)}
	before := b.Len()
	off.note("x")
	if b.Len() != before {
		t.Error("progress drawn on a writer that is not a terminal")
	}
}

// TestRefusedImportLeavesNoStore: an import into a new store of a file
// that does not verify removes the stream it had to create, so the
// directory holds no store afterwards; into an existing store it changes
// nothing.
func TestRefusedImportLeavesNoStore(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.ndjson")
	if err := os.WriteFile(bad, []byte("{\"bad\":1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(t.TempDir(), "new")
	r := replay(t, "import", "--file", bad, "--dir", fresh)
	if r.code != exitProblems || !strings.Contains(r.stderr, "the new, empty stream it had created was removed") {
		t.Fatalf("import of a bad file into a new store: exit %d\n%s", r.code, r.stderr)
	}
	if r := replay(t, "list", "--dir", fresh); r.code != exitUsage || !strings.Contains(r.stderr, "no runlog store") {
		t.Errorf("after the refused import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	dir := seeded(t)
	before := mustRun(t, "list", "--dir", dir).stdout
	if r := replay(t, "import", "--file", bad, "--dir", dir); r.code != exitProblems || strings.Contains(r.stderr, "removed") {
		t.Fatalf("import of a bad file into an existing store: exit %d\n%s", r.code, r.stderr)
	}
	if after := mustRun(t, "list", "--dir", dir).stdout; after != before {
		t.Errorf("the existing store changed:\n%s\n%s", before, after)
	}
}

// TestListSearch: list's filters over the demo's histories select exactly
// the instances they name, through the visibility index and by a fold of
// every history (--no-index) alike; count groups the same selection by
// status and workflow; bad filter values are usage errors.
func TestListSearch(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	ids := func(args ...string) string {
		t.Helper()
		r := mustRun(t, append([]string{"list", "--dir", dir, "-o", "ndjson"}, args...)...)
		if folded := mustRun(t, append([]string{"list", "--dir", dir, "-o", "ndjson", "--no-index"}, args...)...); folded.stdout != r.stdout {
			t.Errorf("list %v: the index says\n%s\nthe fold of every history says\n%s", args, r.stdout, folded.stdout)
		}
		var out []string
		for line := range strings.Lines(r.stdout) {
			var row listRow
			if err := json.Unmarshal([]byte(line), &row); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			out = append(out, row.Instance)
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--actor", "bob@support"}, "payment-s1"},
		{[]string{"--actor", "worker-2"}, "order-s1-2"},
		{[]string{"--workflow", "nightly-etl"}, "etl-s1"},
		{[]string{"--workflow", "purchase-order v2"}, "po-s1 quote-s1"},
		{[]string{"--workflow", "purchase-order v1"}, ""},
		{[]string{"--event-type", "event.sent"}, "cart-s1 po-s1"},
		{[]string{"--event-type", "workflow.failed"}, "refund-s1"},
		{[]string{"--waiting", "signal"}, "quote-s1"},
		{[]string{"--definition", workflow.DefinitionHashOf("payment v3").String()[:10]}, "payment-s1"},
		{[]string{"--status", "completed", "--workflow", "order-pipeline"}, "order-s1-1 order-s1-2 order-s1-3 order-s1-4"},
		{[]string{"--created-since", "2026-03-01T09:01:10Z"}, "quote-s1 refund-s1"},
	} {
		if got := ids(c.args...); got != c.want {
			t.Errorf("list %v: %q, want %q", c.args, got, c.want)
		}
	}
	var cv struct {
		Total  int        `json:"total"`
		Groups []countRow `json:"groups"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "count", "--dir", dir, "--workflow", "order-pipeline", "-o", "json").stdout), &cv); err != nil {
		t.Fatal(err)
	}
	if cv.Total != 4 || len(cv.Groups) != 1 || cv.Groups[0] != (countRow{Status: "completed", Workflow: "order-pipeline v1", Count: 4}) {
		t.Errorf("count --workflow order-pipeline: %+v", cv)
	}
	counted := mustRun(t, "count", "--dir", dir, "-o", "json").stdout
	if folded := mustRun(t, "count", "--dir", dir, "-o", "json", "--no-index").stdout; folded != counted {
		t.Errorf("count: the index says\n%s\nthe fold says\n%s", counted, folded)
	}
	if err := json.Unmarshal([]byte(counted), &cv); err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, g := range cv.Groups {
		sum += g.Count
	}
	if cv.Total != 10 || sum != 10 {
		t.Errorf("count: total %d, groups sum %d, want 10", cv.Total, sum)
	}
	for _, bad := range [][]string{{"--signal", "stop"}, {"--waiting", "forever"}, {"--event-type", "nope"}, {"--definition", "xyz"}, {"--created-since", "soon"}} {
		if r := replay(t, append([]string{"list", "--dir", dir}, bad...)...); r.code != exitUsage {
			t.Errorf("list %v: exit %d, want a usage error", bad, r.code)
		}
	}
}

// TestDemoWorkers: demo --workers runs its fulfilment workflows on a
// reference worker pool to completion, and each history names the worker
// that claimed and completed each task, the retry and the timer.
func TestDemoWorkers(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "store")
	r := mustRun(t, "demo", "--dir", dir, "--workers", "2", "--seed", "7")
	if n := strings.Count(r.stdout, "pool: pick, pack (retried), delay, ship"); n != 4 {
		t.Fatalf("demo --workers 2 reported %d pool workflows, want 4:\n%s", n, r.stdout)
	}
	var rows []listRow
	for line := range strings.Lines(mustRun(t, "list", "--dir", dir, "--workflow", "fulfilment", "-o", "ndjson").stdout) {
		var row listRow
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	if len(rows) != 4 {
		t.Fatalf("list --workflow fulfilment: %d rows, want 4", len(rows))
	}
	for _, row := range rows {
		if row.Status != "completed" {
			t.Errorf("%s: %s, want completed", row.Instance, row.Status)
		}
		show := mustRun(t, "show", row.Instance, "--dir", dir).stdout
		for _, want := range []string{"task pick claimed by \"demo-worker-", "task pack claimed by", "retries of 1 task set", "AtDelay(", "demo-timers", "task ship claimed by", "workflow.completed"} {
			if !strings.Contains(show, want) {
				t.Errorf("%s's timeline lacks %q:\n%s", row.Instance, want, show)
			}
		}
	}
	if r := replay(t, "demo", "--dir", dir, "--workers", "-1"); r.code != exitUsage {
		t.Errorf("demo --workers -1: exit %d", r.code)
	}
}

// TestIndexIsOnlyDerived: the visibility index costs time, never answers.
// A deleted index is rebuilt by the next list; an index file that is not
// a database makes list say so on stderr and answer by folding every
// history; either way the rows are the fold's.
func TestIndexIsOnlyDerived(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	folded := mustRun(t, "list", "--dir", dir, "-o", "ndjson", "--no-index").stdout
	index := filepath.Join(dir, "visibility", "RUNLOG.db")
	if r := mustRun(t, "list", "--dir", dir, "-o", "ndjson"); r.stdout != folded {
		t.Fatalf("through the index:\n%s\nwant\n%s", r.stdout, folded)
	}
	if _, err := os.Stat(index); err != nil {
		t.Fatalf("list left no index at %s: %v", index, err)
	}
	for _, f := range []string{index, index + "-wal", index + "-shm"} {
		os.Remove(f)
	}
	if r := mustRun(t, "list", "--dir", dir, "-o", "ndjson"); r.stdout != folded {
		t.Errorf("after the index was deleted:\n%s\nwant\n%s", r.stdout, folded)
	}
	for _, f := range []string{index + "-wal", index + "-shm"} {
		os.Remove(f)
	}
	if err := os.WriteFile(index, bytes.Repeat([]byte("not a database "), 512), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, "list", "--dir", dir, "-o", "ndjson")
	if r.stdout != folded || !strings.Contains(r.stderr, "not using the visibility index") {
		t.Errorf("with a damaged index: stdout\n%s\nstderr\n%s\nwant the fold's rows and a warning", r.stdout, r.stderr)
	}
}
