package crash

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runlog/runlog/jetstream"
)

// childEnv makes the test binary run as the server child instead of the
// tests: its value is "<store dir>:<port>".
const childEnv = "RUNLOG_CRASH_CHILD"

// readyLine is what the child prints on stdout once it accepts clients.
const readyLine = "runlog-crash-child ready"

// childStartTimeout bounds how long a (re)started child may take to
// recover its store and accept clients.
const childStartTimeout = 2 * time.Minute

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

// runChild runs the embedded server of spec ("dir:port") until its stdin
// ends (the parent closed it, or died) or it is killed. Server warnings
// and errors go to stderr, which the parent keeps.
func runChild(spec string) int {
	i := strings.LastIndexByte(spec, ':')
	if i < 0 {
		fmt.Fprintf(os.Stderr, "crash child: bad %s %q, want dir:port\n", childEnv, spec)
		return 2
	}
	dir, port := spec[:i], spec[i+1:]
	ctx, cancel := context.WithTimeout(context.Background(), childStartTimeout)
	defer cancel()
	emb, err := jetstream.StartEmbedded(ctx, jetstream.EmbeddedConfig{
		Dir:        dir,
		Listen:     net.JoinHostPort("127.0.0.1", port),
		ServerName: "runlog-crash",
		// SyncInterval 0, the default: fsync before every acknowledgement.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "crash child: %v\n", err)
		return 1
	}
	fmt.Println(readyLine)
	_, _ = io.Copy(io.Discard, os.Stdin) // returns when the parent is gone
	_ = emb.Close()
	return 0
}

// child is a server child process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *lockedBuffer
	done   chan struct{} // closed once the process has been waited for
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startChild starts the server child on dir and port and waits until it
// accepts clients. The child is killed when the test ends, if still
// running.
func startChild(t *testing.T, dir string, port int) *child {
	t.Helper()
	c, ready := spawnChild(t, dir, port)
	select {
	case ok := <-ready:
		if !ok {
			<-c.done
			t.Fatalf("server child exited before it was ready (%v); stderr:\n%s", c.cmd.ProcessState, c.stderr)
		}
	case <-time.After(childStartTimeout):
		c.kill()
		t.Fatalf("server child not ready after %v; stderr:\n%s", childStartTimeout, c.stderr)
	}
	return c
}

// spawnChild starts the server child on dir and port and returns at once,
// with a channel that says whether it became ready (false: it exited
// first).
func spawnChild(t *testing.T, dir string, port int) (*child, <-chan bool) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("test binary: %v", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+dir+":"+strconv.Itoa(port))
	c := &child{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = c.stderr
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatalf("child stdin: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("child stdout: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if !ok && sc.Text() == readyLine {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
		// Wait only once stdout is drained (os/exec's rule).
		_ = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(c.kill)
	return c, ready
}

// kill kills the child with SIGKILL (no chance to flush or step down) and
// waits until it is gone. It may be called more than once.
func (c *child) kill() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.done
	_ = c.stdin.Close()
}
