package browsertest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const clickPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>browsertest</title>
<link rel="icon" href="data:,">
<style>
  body { font-family: sans-serif; margin: 3rem; background: #f6f7f9; color: #1d2330; }
  h1 { font-size: 2rem; }
  button { font-size: 1.2rem; padding: .6rem 1.4rem; border-radius: .4rem; border: 1px solid #3b5bdb; background: #4c6ef5; color: white; }
  #status { font-size: 1.4rem; margin-top: 1.5rem; }
  .done { color: #2b8a3e; font-weight: bold; }
</style>
</head>
<body>
<h1>runlog browser test</h1>
<button id="go" type="button">Click me</button>
<p id="status">not clicked</p>
<script>
  let clicks = 0;
  document.getElementById("go").addEventListener("click", () => {
    clicks++;
    const s = document.getElementById("status");
    s.textContent = "clicked " + clicks + " time" + (clicks === 1 ? "" : "s");
    s.className = "done";
  });
</script>
</body>
</html>
`

// brokenPage reports every kind of error that Console collects.
const brokenPage = `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>broken</title></head>
<body><p>broken</p>
<script>
  console.log("only a log line");
  console.error("something went %s", "wrong", 42);
  Promise.reject(new Error("nobody catches this promise"));
  setTimeout(() => { throw new TypeError("thrown from a timer"); }, 0);
</script>
</body></html>
`

func servePages(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	for path, body := range map[string]string{"/{$}": clickPage, "/broken": brokenPage} {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, body)
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// do runs steps with a per-step timeout, as page tests should.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	step, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(step, steps...); err != nil {
		t.Fatal(err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	step, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(step, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

func TestClickChangesText(t *testing.T) {
	srv := servePages(t)
	t.Setenv("RUNLOG_ARTIFACTS", t.TempDir())
	ctx := New(t)
	console := Listen(t, ctx)

	do(t, ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#go")))
	if got := text(t, ctx, "h1"); got != "runlog browser test" {
		t.Errorf("heading = %q", got)
	}
	if got := text(t, ctx, "#status"); got != "not clicked" {
		t.Fatalf("before the click, status = %q, want %q", got, "not clicked")
	}

	do(t, ctx, chromedp.Click(chromedp.CSS("#go")))
	if got := text(t, ctx, "#status"); got != "clicked 1 time" {
		t.Fatalf("after one click, status = %q, want %q (the click did not reach the page's handler)", got, "clicked 1 time")
	}
	do(t, ctx, chromedp.Click(chromedp.CSS("#go")))
	if got := text(t, ctx, "#status"); got != "clicked 2 times" {
		t.Fatalf("after two clicks, status = %q, want %q", got, "clicked 2 times")
	}

	// The window is the laptop size New promises.
	step, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	size, err := chromedp.Run(step, chromedp.Evaluate[[]int]("[window.innerWidth, window.innerHeight]"))
	if err != nil {
		t.Fatal(err)
	}
	if len(size) != 2 || size[0] != WindowWidth {
		t.Errorf("viewport = %v, want width %d", size, WindowWidth)
	}

	console.NoErrors(t)

	Screenshot(t, ctx, "browsertest-click")
	path := filepath.Join(os.Getenv("RUNLOG_ARTIFACTS"), "screenshots", "browsertest-click.png")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 1000 {
		t.Errorf("%s is only %d bytes", path, fi.Size())
	}
	// Also keep one in the repository's artefact directory, for a person to
	// look at.
	t.Setenv("RUNLOG_ARTIFACTS", "")
	Screenshot(t, ctx, "browsertest-click")
}

// The console check is not vacuous: a page that logs an error, rejects a
// promise and throws has all three reported, and its plain log line is not.
func TestConsoleCollectsErrors(t *testing.T) {
	srv := servePages(t)
	ctx := New(t)
	console := Listen(t, ctx)
	do(t, ctx, chromedp.Navigate(srv.URL+"/broken"))

	want := []string{
		"console.error: something went wrong 42",
		"exception: Uncaught (in promise) Error: nobody catches this promise",
		"exception: Uncaught TypeError: thrown from a timer",
	}
	var errs []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		errs = console.Errors()
		if len(errs) >= len(want) {
			break
		}
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n  %s", len(errs), len(want), strings.Join(errs, "\n  "))
	}
	for _, w := range want {
		found := false
		for _, e := range errs {
			found = found || strings.HasPrefix(e, w)
		}
		if !found {
			t.Errorf("no error starting with %q in:\n  %s", w, strings.Join(errs, "\n  "))
		}
	}
	for _, e := range errs {
		if strings.Contains(e, "only a log line") {
			t.Errorf("a console.log line was collected as an error: %q", e)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"page", "runs-list.1", "a b"} {
		if err := checkName(ok); err != nil {
			t.Errorf("checkName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "../x", `a\b`, "/abs"} {
		if err := checkName(bad); err == nil {
			t.Errorf("checkName(%q) accepted", bad)
		}
	}
}

func TestArtifactDir(t *testing.T) {
	t.Setenv("RUNLOG_ARTIFACTS", "")
	dir, err := ArtifactDir("screenshots")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(filepath.Dir(dir)))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil || !strings.HasSuffix(dir, filepath.Join("test", "artifacts", "screenshots")) {
		t.Errorf("ArtifactDir = %s, want <dir with go.mod>/test/artifacts/screenshots", dir)
	}

	custom := t.TempDir()
	t.Setenv("RUNLOG_ARTIFACTS", custom)
	dir, err = ArtifactDir("screenshots")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(custom, "screenshots"); dir != want {
		t.Errorf("ArtifactDir = %s, want %s", dir, want)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("%s was not created: %v", dir, err)
	}
}
