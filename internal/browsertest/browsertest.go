// Package browsertest runs page tests in a real headless Chromium, through
// chromedp.
//
// New finds a Chromium binary, starts it headless with a fresh profile and a
// laptop-sized window (1366x900), and returns a chromedp context whose
// browser is closed when the test ends. Without a browser, New skips the
// test, unless RUNLOG_REQUIRE_BROWSER=1 is set (as .ci/run does when it has
// installed Chromium): then it fails, so CI cannot silently skip browser
// tests.
//
// The returned context has an overall timeout of DefaultTimeout. Give each
// step its own, shorter timeout with a context derived from it:
//
//	ctx := browsertest.New(t)
//	console := browsertest.Listen(t, ctx)
//	step, cancel := context.WithTimeout(ctx, 10*time.Second)
//	defer cancel()
//	if err := chromedp.Do(step, chromedp.Navigate(url), chromedp.Click(chromedp.CSS("#go"))); err != nil {
//		t.Fatal(err)
//	}
//	console.NoErrors(t)
//	browsertest.Screenshot(t, ctx, "my-page")
//
// A step's timeout ends only that step: the tab and the browser stay open,
// because New has already started them with the undeadlined context.
//
// Environment:
//   - RUNLOG_CHROMIUM: the browser binary (a path or a name on PATH); by
//     default chromium, chromium-browser or google-chrome on PATH, else
//     /usr/bin/chromium.
//   - RUNLOG_REQUIRE_BROWSER=1: fail, rather than skip, when there is none.
//   - RUNLOG_ARTIFACTS: where Screenshot writes (under screenshots/); by
//     default test/artifacts/ at the repository root.
package browsertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// DefaultTimeout bounds the whole life of the browser that New starts: when
// it passes, the browser is stopped and every later action fails.
const DefaultTimeout = 2 * time.Minute

// screenshotTimeout bounds one Screenshot.
const screenshotTimeout = 30 * time.Second

// Window size of the browser: a laptop screen.
const (
	WindowWidth  = 1366
	WindowHeight = 900
)

// installHint says how to get a browser for these tests.
const installHint = "install Debian's chromium package (apt-get install chromium), or set RUNLOG_CHROMIUM to a Chromium or Chrome binary"

// FindChromium returns the browser binary that New would start, or an error
// that says why there is none. RUNLOG_CHROMIUM, when set, is the only
// candidate.
func FindChromium() (string, error) {
	if p := os.Getenv("RUNLOG_CHROMIUM"); p != "" {
		found, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("RUNLOG_CHROMIUM=%q is not an executable: %w", p, err)
		}
		return found, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if found, err := exec.LookPath(name); err == nil {
			return found, nil
		}
	}
	if found, err := exec.LookPath("/usr/bin/chromium"); err == nil {
		return found, nil
	}
	return "", errors.New("no chromium, chromium-browser or google-chrome on PATH, and no /usr/bin/chromium")
}

// New starts a headless Chromium for the test and returns a chromedp context
// for one tab of it. The browser is stopped, and its profile directory
// removed, when the test ends. The context's overall timeout is
// DefaultTimeout; run each step with a shorter context.WithTimeout derived
// from it (see the package doc).
//
// Without a browser New skips the test, or fails it when
// RUNLOG_REQUIRE_BROWSER=1.
func New(t testing.TB) context.Context {
	t.Helper()
	bin, err := FindChromium()
	if err != nil {
		if os.Getenv("RUNLOG_REQUIRE_BROWSER") == "1" {
			t.Fatalf("headless Chromium not found (%v) and RUNLOG_REQUIRE_BROWSER=1: %s", err, installHint)
		}
		t.Skipf("headless Chromium not found (install Debian's chromium package, or set RUNLOG_CHROMIUM); skipping browser test (%v)", err)
	}

	// Registered first, so it runs after the browser's cleanup below, once
	// the browser has exited and stopped writing there.
	profile := t.TempDir()

	out := &tailBuffer{max: 16 << 10}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox, // as root, and in containers
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(WindowWidth, WindowHeight),
		chromedp.CombinedOutput(out),
	)

	// The browser's errors go to the test log, but never after the test has
	// finished: a Logf then would panic.
	var logMu sync.Mutex
	done := false
	errorf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		if !done {
			t.Logf("chromedp: "+format, args...)
		}
	}

	base, cancelBase := context.WithTimeout(context.Background(), DefaultTimeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(base, opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithErrorf(errorf))
	stop := func() {
		// Close the browser gracefully (bounded), then make sure the process
		// is gone: cancelAlloc waits for it.
		closeCtx, cancelClose := context.WithTimeout(ctx, 10*time.Second)
		_ = chromedp.Cancel(closeCtx)
		cancelClose()
		cancelCtx()
		cancelAlloc()
		cancelBase()
		logMu.Lock()
		done = true
		logMu.Unlock()
	}

	// Start the browser and open the tab now, with the context that has no
	// step deadline, so that the callers' step timeouts end only their step.
	start := time.Now()
	if err := chromedp.Do(ctx); err != nil {
		stop()
		t.Fatalf("starting %s: %v\nbrowser output:\n%s", bin, err, out)
	}
	t.Logf("browsertest: %s started in %v", bin, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("browser output (last %d bytes):\n%s", out.max, out)
		}
	})
	return ctx
}

// Screenshot saves a full-page PNG of the tab of ctx as name.png in the
// artefact directory: $RUNLOG_ARTIFACTS/screenshots, or
// test/artifacts/screenshots at the repository root. name must be a plain
// file name, without a path separator.
func Screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	if err := checkName(name); err != nil {
		t.Fatal(err)
	}
	dir, err := ArtifactDir("screenshots")
	if err != nil {
		t.Fatal(err)
	}
	step, cancel := context.WithTimeout(ctx, screenshotTimeout)
	defer cancel()
	// Quality 100 is what makes chromedp capture a PNG; below it, a JPEG.
	buf, err := chromedp.Run(step, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %q: %v", name, err)
	}
	if !bytes.HasPrefix(buf, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot %q: the browser did not return a PNG (%d bytes)", name, len(buf))
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// ArtifactDir returns, creating it, the directory sub of the test artefacts:
// $RUNLOG_ARTIFACTS/sub if RUNLOG_ARTIFACTS is set, else
// <repo root>/test/artifacts/sub, the repository root being the nearest
// directory above the working directory that holds go.mod.
func ArtifactDir(sub string) (string, error) {
	root := os.Getenv("RUNLOG_ARTIFACTS")
	if root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		repo, err := repoRoot(wd)
		if err != nil {
			return "", err
		}
		root = filepath.Join(repo, "test", "artifacts")
	}
	dir := filepath.Join(root, sub)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, nil
}

// repoRoot walks up from dir to the directory that holds go.mod.
func repoRoot(dir string) (string, error) {
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod in %s or above it (set RUNLOG_ARTIFACTS)", dir)
		}
		d = parent
	}
}

// checkName accepts a screenshot name that is a plain file name.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`+string(os.PathSeparator)) {
		return fmt.Errorf("screenshot name %q: want a plain file name, without a path separator", name)
	}
	return nil
}

// Console collects the JavaScript errors of one tab: calls of console.error
// (and console.assert failures), uncaught exceptions and unhandled promise
// rejections, and error entries of the browser log (a script or a resource
// that failed to load, for example). Make it with Listen.
type Console struct {
	mu     sync.Mutex
	errors []string
}

// Listen starts collecting the errors of the tab of ctx. Only what happens
// after Listen is seen, so call it before navigating.
func Listen(t testing.TB, ctx context.Context) *Console {
	t.Helper()
	c := &Console{}
	// fn runs on chromedp's reading goroutine, before the command that
	// follows an event returns: it must be fast and must not run commands.
	err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
				return
			}
			msg = "console." + string(ev.Type) + ": " + argsText(ev.Args) + stackPlace(ev.StackTrace)
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			if d == nil {
				return
			}
			text := d.Text
			if d.Exception != nil {
				desc, _, _ := strings.Cut(remoteText(d.Exception), "\n    at ")
				text += " " + desc
			}
			msg = "exception: " + strings.TrimSpace(text) + place(d.URL, d.LineNumber, d.ColumnNumber)
		case *log.EventEntryAdded:
			e := ev.Entry
			if e == nil || e.Level != log.EntryLevelError {
				return
			}
			msg = "log (" + string(e.Source) + "): " + e.Text + place(e.URL, e.LineNumber, -1)
		default:
			return
		}
		c.mu.Lock()
		c.errors = append(c.errors, msg)
		c.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("listening to the console: %v", err)
	}
	return c
}

// Errors returns the errors collected so far, in order.
func (c *Console) Errors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errors...)
}

// NoErrors fails the test (without stopping it) if any error was collected.
func (c *Console) NoErrors(t testing.TB) {
	t.Helper()
	if errs := c.Errors(); len(errs) > 0 {
		t.Errorf("the page reported %d JavaScript error(s):\n  %s", len(errs), strings.Join(errs, "\n  "))
	}
}

// argsText renders the arguments of a console call: a first string argument
// is a format whose %s, %d, %i, %f, %o, %O and %c take the arguments that
// follow it (%c, a CSS style, renders as nothing), and the arguments left
// over follow, space-separated.
func argsText(args []*runtime.RemoteObject) string {
	var parts []string
	rest := args
	if len(args) > 0 && args[0].Type == runtime.RemoteObjectTypeString {
		format := remoteText(args[0])
		rest = args[1:]
		var b strings.Builder
		for i := 0; i < len(format); i++ {
			c := format[i]
			if c != '%' || i+1 == len(format) {
				b.WriteByte(c)
				continue
			}
			verb := format[i+1]
			switch {
			case verb == '%':
				b.WriteByte('%')
				i++
			case strings.IndexByte("sdifoOc", verb) >= 0 && len(rest) > 0:
				if verb != 'c' {
					b.WriteString(remoteText(rest[0]))
				}
				rest = rest[1:]
				i++
			default:
				b.WriteByte(c)
			}
		}
		parts = append(parts, b.String())
	}
	for _, a := range rest {
		parts = append(parts, remoteText(a))
	}
	return strings.Join(parts, " ")
}

// remoteText renders a JavaScript value roughly as the DevTools console does.
func remoteText(o *runtime.RemoteObject) string {
	if o == nil {
		return ""
	}
	if o.Type == runtime.RemoteObjectTypeString && len(o.Value) > 0 {
		var s string
		if err := json.Unmarshal(o.Value, &s); err == nil {
			return s
		}
	}
	switch {
	case o.Description != "":
		return o.Description
	case o.UnserializableValue != "":
		return string(o.UnserializableValue)
	case len(o.Value) > 0:
		return string(o.Value)
	}
	return string(o.Type)
}

func stackPlace(st *runtime.StackTrace) string {
	if st == nil || len(st.CallFrames) == 0 {
		return ""
	}
	f := st.CallFrames[0]
	return place(f.URL, f.LineNumber, f.ColumnNumber)
}

// place renders a source position, with 1-based line and column numbers
// (the protocol's are 0-based); col < 0 leaves the column out.
func place(url string, line, col int64) string {
	if url == "" {
		return ""
	}
	if col < 0 {
		return fmt.Sprintf(" (%s:%d)", url, line+1)
	}
	return fmt.Sprintf(" (%s:%d:%d)", url, line+1, col+1)
}

// tailBuffer keeps the last max bytes written to it; the browser writes to it
// from its own goroutine.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// String returns the kept output, less the lines about the missing D-Bus
// (there is none in a container, and Chromium says so many times).
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out strings.Builder
	for line := range strings.Lines(string(b.buf)) {
		if !strings.Contains(line, ":ERROR:dbus/") {
			out.WriteString(line)
		}
	}
	return out.String()
}
