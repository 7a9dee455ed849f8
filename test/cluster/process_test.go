package cluster

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// process is one run of a node's child process, from its start to its
// exit.
type process struct {
	label  string // "node n2 (run 3)": the node and how many times it was started
	cmd    *exec.Cmd
	stdin  io.WriteCloser // closing it asks the node to shut down
	stderr *tailBuffer
	ready  chan struct{} // closed when the node printed readyLine
	done   chan struct{} // closed when the process has exited and been waited for

	metaLeader   atomic.Bool // the node's last report: it leads the meta group
	streamLeader atomic.Bool // the node's last report: it leads the stream

	mu    sync.Mutex
	ended string // how it ended ("killed with SIGKILL", ...), for the failure report
}

// setEnded records how the process ended, unless that is known already.
func (p *process) setEnded(how string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended == "" {
		p.ended = how
	}
}

// how returns how the process ended, or "running".
func (p *process) how() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended == "" {
		return "running"
	}
	return p.ended
}

// spawn starts the test binary as the node of spec and returns at once.
// The process's stdout is read for readyLine and the leadership reports
// (leadsLine); its stderr is kept (the last stderrKeep bytes).
func spawn(label string, spec nodeSpec) (*process, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("%s: find the test binary: %w", label, err)
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: encode the node spec: %w", label, err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), nodeEnv+"="+string(js))
	p := &process{label: label, cmd: cmd, stderr: newTailBuffer(stderrKeep), ready: make(chan struct{}), done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("%s: stdin pipe: %w", label, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = p.stdin.Close()
		return nil, fmt.Errorf("%s: stdout pipe: %w", label, err)
	}
	if err := cmd.Start(); err != nil {
		_ = p.stdin.Close()
		return nil, fmt.Errorf("%s: start %s: %w", label, exe, err)
	}
	go p.readStdout(stdout)
	return p, nil
}

// readStdout follows the node's stdout until it ends, then waits for the
// process (os/exec wants stdout drained first) and closes done.
func (p *process) readStdout(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		switch line := sc.Text(); {
		case line == readyLine:
			close(p.ready)
		case strings.HasPrefix(line, leadsLine+" "):
			p.leads(strings.Fields(strings.TrimPrefix(line, leadsLine)))
		}
	}
	_ = p.cmd.Wait()
	p.metaLeader.Store(false)
	p.streamLeader.Store(false)
	p.setEnded(fmt.Sprintf("exited by itself (%v)", p.cmd.ProcessState))
	close(p.done)
}

// leads records a leadership report: ["meta"|"stream", "true"|"false"].
func (p *process) leads(report []string) {
	if len(report) != 2 {
		return
	}
	switch leads := report[1] == "true"; report[0] {
	case leadsMeta:
		p.metaLeader.Store(leads)
	case leadsStream:
		p.streamLeader.Store(leads)
	}
}

// waitReady waits until the node accepts clients, at most timeout. A node
// that exits first (a port in use: its logger's Fatalf) or is not ready
// in time (it is then killed) gives an error with the end of its stderr.
func (p *process) waitReady(timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.ready:
		return nil
	case <-p.done:
		return fmt.Errorf("%s exited before it was ready (%v); its stderr ends with:\n%s", p.label, p.cmd.ProcessState, p.stderr.last(errorTail))
	case <-timer.C:
		p.kill()
		return fmt.Errorf("%s was not ready to accept clients after %v (killed); its stderr ends with:\n%s", p.label, timeout, p.stderr.last(errorTail))
	}
}

// kill kills the process with SIGKILL (no chance to hand anything over
// or to flush) and waits until it has exited. It may be called more than
// once, and after the process has exited.
func (p *process) kill() {
	select {
	case <-p.done:
	default:
		p.setEnded("killed with SIGKILL")
		_ = p.cmd.Process.Kill() // fails only if it has exited meanwhile
		<-p.done
	}
	_ = p.stdin.Close()
}

// shutdown asks the node to shut down gracefully (it hands its raft
// leaderships over first) by closing its stdin, and waits until it has
// exited, at most timeout; then it kills it. It returns an error if the
// node had to be killed or did not exit cleanly.
func (p *process) shutdown(timeout time.Duration) error {
	p.setEnded("shut down gracefully")
	_ = p.stdin.Close()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		p.kill() // recorded as "shut down gracefully", corrected here
		p.mu.Lock()
		p.ended = "killed with SIGKILL: a graceful shutdown took longer than " + timeout.String()
		p.mu.Unlock()
		return fmt.Errorf("%s did not shut down within %v: killed", p.label, timeout)
	}
	if !p.cmd.ProcessState.Success() {
		return fmt.Errorf("%s shut down with %v; its stderr ends with:\n%s", p.label, p.cmd.ProcessState, p.stderr.last(errorTail))
	}
	return nil
}

// How much of a node's stderr is kept, and how much of it an error
// message quotes.
const (
	stderrKeep = 64 << 10
	errorTail  = 4 << 10
)

// raceReport starts every report of Go's race detector.
var raceReport = []byte("WARNING: DATA RACE")

// tailBuffer is an io.Writer that keeps the last max bytes written to it,
// and notes whether a race detector report went through it. It is safe
// for concurrent use.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	b       []byte
	dropped int64
	race    bool
	carry   []byte // the end of the previous write, to find a report cut between writes
}

// newTailBuffer returns a tailBuffer that keeps the last size bytes.
func newTailBuffer(size int) *tailBuffer { return &tailBuffer{max: size} }

// Write keeps p (or its end) and always succeeds.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.race {
		window := append(slices.Clone(t.carry), p...)
		t.race = bytes.Contains(window, raceReport)
		t.carry = window[max(0, len(window)-len(raceReport)+1):]
	}
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.dropped += int64(over)
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// last returns the last n bytes kept, or "(empty)".
func (t *tailBuffer) last(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.b) == 0 {
		return "(empty)"
	}
	b := t.b[max(0, len(t.b)-n):]
	if skipped := int64(len(t.b)-len(b)) + t.dropped; skipped > 0 {
		return fmt.Sprintf("[%d bytes before]\n%s", skipped, b)
	}
	return string(b)
}

// sawRace reports whether a race detector report was written.
func (t *tailBuffer) sawRace() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.race
}

// TestNodePortInUse checks that a node whose client port is taken exits
// at once and says why, instead of leaving its parent to wait out
// readyTimeout: that is what lets startCluster retry on new ports.
func TestNodePortInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node process; skipped with -short")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer func() { _ = l.Close() }()
	taken := l.Addr().(*net.TCPAddr).Port
	ports := distinctPorts(t, 1)
	spec := nodeSpec{Name: "n1", Dir: t.TempDir(), ClientPort: taken, ClusterPort: ports[0],
		Routes: []string{"nats://127.0.0.1:" + strconv.Itoa(ports[0])}}
	p, err := spawn("node n1 (run 1)", spec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.kill()
	began := time.Now()
	err = p.waitReady(readyTimeout)
	if err == nil {
		t.Fatalf("a node on port %d, which is taken, got ready", taken)
	}
	if took := time.Since(began); took > readyTimeout/2 {
		t.Errorf("the node took %v to report that its port is taken", took)
	}
	if want := strconv.Itoa(taken); !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), want) {
		t.Errorf("error %q: want the node's exit and its listen error on port %s", err, want)
	}
	t.Logf("%v later: %v", time.Since(began).Round(time.Millisecond), err)
}
