package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/runlog/runlog/jetstream"
)

// served is a replay serve running in the test.
type served struct {
	web    string // the web UI's URL, ending in "/"
	token  string // its token
	nats   string // the NATS server's URL
	stderr *syncBuffer
	stop   func() int // cancels serve and returns its exit code
}

// startServe runs `replay serve --dir dir` on free loopback ports (its
// index caught up only on the commits it hears of: no periodic catch-up) until
// the test ends (or stop is called), and waits until it serves.
func startServe(t *testing.T, dir string, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--dir", dir, "--http", "127.0.0.1:0", "--nats", "127.0.0.1:0", "--index-every", "1h"}, args...), &out, &errb)
	}()
	sv := &served{stderr: &errb}
	webRE, natsRE := regexp.MustCompile(`web UI at (http://\S+/)\?token=(\w+)`), regexp.MustCompile(`NATS at (nats://\S+)`)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := webRE.FindStringSubmatch(out.String()); m != nil {
			sv.web, sv.token = m[1], m[2]
			sv.nats = natsRE.FindStringSubmatch(out.String())[1]
			break
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("serve exited %d before serving:\n%s%s", code, out.String(), errb.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not print its address in 60 s:\n%s%s", out.String(), errb.String())
		}
	}
	code, stopped := exitOK, false
	sv.stop = func() int {
		if !stopped {
			cancel()
			code, stopped = <-done, true
		}
		return code
	}
	t.Cleanup(func() { sv.stop() })
	return sv
}

// do sends a GET of path with serve's token.
func (sv *served) do(t *testing.T, path string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, sv.web+strings.TrimPrefix(path, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+sv.token)
	return http.DefaultClient.Do(req)
}

// documentedServeMetrics are the Prometheus names of the metrics table in
// docs/REPLAY.md's serve section.
func documentedServeMetrics(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "REPLAY.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(doc)) {
		if f := strings.Split(line, "|"); len(f) > 3 && strings.HasPrefix(strings.TrimSpace(f[2]), "`runlog_") {
			out = append(out, strings.Trim(strings.TrimSpace(f[2]), "`"))
		}
	}
	if len(out) == 0 {
		t.Fatal("docs/REPLAY.md lists no serve metrics")
	}
	return out
}

// get fetches path from serve's web server: the status and body.
func (sv *served) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := sv.do(t, path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestServe: replay serve shares one store directory among many programs:
// its API answers what the commands print, other replay commands and
// jetstream.OpenEmbedded on the directory connect to it and write
// through it, its event stream names the instances they change, a second
// serve is refused with who holds the directory, and a stop is clean.
func TestServe(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	sv := startServe(t, dir)

	// The API is the commands' JSON.
	code, body := sv.get(t, "/api/list?status=failed")
	want := mustRun(t, "list", "--dir", dir, "--status", "failed", "-o", "json").stdout
	if code != http.StatusOK || body != want {
		t.Errorf("/api/list?status=failed: %d\n%s\nwant what replay list prints:\n%s", code, body, want)
	}
	code, body = sv.get(t, "/api/show?id=po-s1")
	if want := mustRun(t, "show", "po-s1", "--dir", dir, "-o", "json").stdout; code != http.StatusOK || body != want {
		t.Errorf("/api/show?id=po-s1: %d\n%.300s\nwant\n%.300s", code, body, want)
	}
	for path, wantCode := range map[string]int{
		"/api/list?status=bogus":       http.StatusBadRequest,
		"/api/list?dir=/tmp":           http.StatusBadRequest,
		"/api/show?id=no-such-thing":   http.StatusNotFound,
		"/api/demo":                    http.StatusNotFound,
		"/api/state?id=po-s1&at-seq=x": http.StatusBadRequest,
	} {
		code, body := sv.get(t, path)
		var e struct{ Error string }
		if code != wantCode || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
			t.Errorf("%s: %d %s, want %d with an error message", path, code, body, wantCode)
		}
	}
	if code, body := sv.get(t, "/"); code != http.StatusOK || !strings.Contains(body, "<html") {
		t.Errorf("/: %d %.100s", code, body)
	}
	checkMetrics := func() {
		// After the requests and the writes below: every metric
		// docs/REPLAY.md lists is on /metrics, and no other of runlog's.
		_, body := sv.get(t, "/metrics")
		exposed := map[string]bool{}
		for line := range strings.Lines(body) {
			if name, ok := strings.CutPrefix(line, "# TYPE "); ok && strings.HasPrefix(name, "runlog_") {
				exposed[strings.Fields(name)[0]] = true
			}
		}
		for _, name := range documentedServeMetrics(t) {
			if !exposed[name] {
				t.Errorf("docs/REPLAY.md lists metric %s, which /metrics does not show:\n%s", name, body)
			}
			delete(exposed, name)
		}
		for name := range exposed {
			t.Errorf("/metrics shows %s, which docs/REPLAY.md does not list", name)
		}
		if !strings.Contains(body, `runlog_serve_requests_total{http_status="400",runlog_command="list"} 2`) {
			t.Errorf("/metrics does not count the two refused list requests:\n%s", body)
		}
	}

	// Without the token nothing is served: loopback is every local user's.
	for _, path := range []string{"", "api/list", "api/events", "metrics", "static/app.js", "?token=wrong"} {
		resp, err := http.Get(sv.web + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "token") {
			t.Errorf("/%s without the token: %d %.200s, want 401 saying what to do", path, resp.StatusCode, body)
		}
	}
	// The address serve prints lets a browser in once: a cookie keeps it.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.Get(sv.web + "?token=" + sv.token)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.RawQuery != "" {
		t.Errorf("the printed address: %d at %s, want the page without the token in its address", resp.StatusCode, resp.Request.URL)
	}
	if resp, err = browser.Get(sv.web + "api/count"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the API with the cookie: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	var f serveFile
	if b, err := os.ReadFile(filepath.Join(dir, serveFileName)); err != nil || json.Unmarshal(b, &f) != nil || f.Token != sv.token || f.URL != sv.web {
		t.Errorf("%s: %+v %v", serveFileName, f, err)
	}

	// The event stream names what a writer through the server changes.
	resp, err = sv.do(t, "api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	changed := make(chan changeEvent, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev changeEvent
				if json.Unmarshal([]byte(data), &ev) == nil {
					changed <- ev
				}
			}
		}
		close(changed)
	}()

	// Another program on the directory connects to the running server
	// (it would fail on the directory's lock otherwise) and writes.
	st, err := jetstream.OpenEmbedded(t.Context(), jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{})
	if err != nil {
		t.Fatalf("OpenEmbedded on a served directory: %v", err)
	}
	if f, ok := st.ServedBy(); !ok || f.URL != sv.nats || f.PID != os.Getpid() {
		t.Errorf("ServedBy = %+v, %v; want the serve at %s", f, ok, sv.nats)
	}
	st.Close()
	mustRun(t, "demo", "--dir", dir, "--seed", "2", "--now", fakeNow)
	seen := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for !seen["po-s2"] {
		select {
		case ev, ok := <-changed:
			if !ok {
				t.Fatal("the event stream ended")
			}
			for _, id := range ev.Instances {
				seen[id] = true
			}
		case <-timeout:
			t.Fatalf("no change event named po-s2 in 30 s (seen %v)", seen)
		}
	}
	if _, body := sv.get(t, "/api/list?workflow=purchase-order"); !strings.Contains(body, `"po-s2"`) {
		t.Errorf("the list does not show what was written through the server:\n%s", body)
	}

	// A second serve on the directory is refused, naming the first.
	r := replay(t, "serve", "--dir", dir, "--http", "127.0.0.1:0", "--nats", "127.0.0.1:0")
	if r.code != exitUsage || !strings.Contains(r.stderr, "already served") || !strings.Contains(r.stderr, sv.nats) {
		t.Errorf("a second serve: exit %d\n%s", r.code, r.stderr)
	}
	for _, bad := range [][]string{{"--http", "0.0.0.0:0"}, {"--nats", "192.0.2.1:4222"}, {"--server", "nats://x"}} {
		if r := replay(t, append([]string{"serve", "--dir", dir}, bad...)...); r.code != exitUsage {
			t.Errorf("serve %v: exit %d, want a usage error\n%s", bad, r.code, r.stderr)
		}
	}

	checkMetrics()
	if code := sv.stop(); code != exitOK {
		t.Fatalf("serve stopped with exit %d:\n%s", code, sv.stderr.String())
	}
	for _, f := range []string{jetstream.ServerFileName, serveFileName} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s outlived serve: %v", f, err)
		}
	}
	// The directory is free again: a command embeds its own server.
	if r := mustRun(t, "list", "--dir", dir, "--workflow", "purchase-order", "-o", "ndjson"); !strings.Contains(r.stdout, `"po-s2"`) {
		t.Errorf("after serve stopped: %s", r.stdout)
	}
}
