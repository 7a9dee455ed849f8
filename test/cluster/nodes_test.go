package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/internal/faulttest"
)

// node is one server of the cluster, run as a child process. Its name,
// ports and store directory stay the same across restarts.
type node struct {
	name string
	spec nodeSpec

	mu   sync.Mutex
	proc *process   // the running process, nil while down
	runs []*process // every process it ran as, for the failure report
}

// cluster is three nodes, each a child process, routed to each other on
// loopback.
type cluster struct {
	t     testing.TB
	nodes []*node
}

// Bounds on a node's life cycle. A node under the race detector on a
// loaded two-core machine can take a while to recover its store.
const (
	readyTimeout    = 2 * time.Minute  // from the start of a node to accepting clients
	shutdownTimeout = 30 * time.Second // for a graceful shutdown, before it is killed
)

// startCluster starts size nodes, which report their leaderships of the
// meta group and of stream, and kills them when the test ends.
// Ports are chosen below the ephemeral range (faulttest.Port); if a node
// cannot start all the same (another process took a port meanwhile: the
// node reports the listen error at once), the cluster starts again on new
// ports, up to three times.
func startCluster(t testing.TB, size int, stream string) *cluster {
	t.Helper()
	var err error
	for range 3 {
		var c *cluster
		if c, err = tryStartCluster(t, size, stream); err == nil {
			return c
		}
		t.Logf("start the cluster: %v; again on new ports", err)
	}
	t.Fatalf("could not start the cluster: %v", err)
	return nil
}

// tryStartCluster starts size nodes on new ports and directories, and
// waits until each accepts clients. If one does not, it kills them all
// and returns why.
func tryStartCluster(t testing.TB, size int, stream string) (*cluster, error) {
	c := &cluster{t: t}
	var routes []string
	ports := distinctPorts(t, 2*size)
	for i := range size {
		spec := nodeSpec{Name: fmt.Sprintf("n%d", i+1), Dir: t.TempDir(), ClientPort: ports[2*i], ClusterPort: ports[2*i+1], Stream: stream}
		c.nodes = append(c.nodes, &node{name: spec.Name, spec: spec})
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(spec.ClusterPort))
	}
	for _, n := range c.nodes {
		n.spec.Routes = routes
	}
	// Registered after the directories, so it runs before they are
	// removed.
	t.Cleanup(c.cleanup)
	var wg sync.WaitGroup
	errs := make([]error, size)
	for i, n := range c.nodes {
		wg.Go(func() { errs[i] = c.start(n) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, n := range c.nodes {
			c.kill(n)
		}
		return nil, err
	}
	return c, nil
}

// distinctPorts returns n different free ports from faulttest.Port (which
// checks each port alone, so two calls may give the same one).
func distinctPorts(t testing.TB, n int) []int {
	var ports []int
	for len(ports) < n {
		if p := faulttest.Port(t); !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

// cleanup kills every node process that is still running, fails the
// test if the race detector reported a data race in one of them, and, if
// the test failed, prints the end of every node process's stderr.
func (c *cluster) cleanup() {
	for _, n := range c.nodes {
		n.down()
		n.mu.Lock()
		runs := slices.Clone(n.runs)
		n.mu.Unlock()
		for _, p := range runs {
			p.setEnded("killed with SIGKILL at the end of the test")
			p.kill()
		}
	}
	for _, n := range c.nodes {
		n.mu.Lock()
		runs := slices.Clone(n.runs)
		n.mu.Unlock()
		for _, p := range runs {
			if p.stderr.sawRace() {
				c.t.Errorf("%s: the race detector reported a data race in the server; see its stderr below", p.label)
			}
		}
	}
	if !c.t.Failed() {
		return
	}
	for _, n := range c.nodes {
		n.mu.Lock()
		runs := slices.Clone(n.runs)
		n.mu.Unlock()
		for _, p := range runs {
			c.t.Logf("stderr of %s (%s):\n%s", p.label, p.how(), p.stderr.last(stderrKeep))
		}
	}
}

// start starts n on its directory and ports and waits until it accepts
// clients (readyTimeout). A node that exits first (a port in use) or is
// not ready in time gives an error quoting the end of its stderr.
func (c *cluster) start(n *node) error {
	n.mu.Lock()
	if n.proc != nil {
		n.mu.Unlock()
		return fmt.Errorf("node %s: started while running", n.name)
	}
	p, err := spawn(fmt.Sprintf("node %s (run %d)", n.name, len(n.runs)+1), n.spec)
	if err == nil {
		n.runs = append(n.runs, p)
	}
	n.mu.Unlock()
	if err != nil {
		return err
	}
	if err := p.waitReady(readyTimeout); err != nil {
		return err
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	return nil
}

// down marks n as down and returns the process it was running, or nil.
func (n *node) down() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.proc
	n.proc = nil
	return p
}

// kill kills n with SIGKILL, if it runs, and waits until its process has
// exited: a crash, with no raft leadership handed over.
func (c *cluster) kill(n *node) {
	if p := n.down(); p != nil {
		p.kill()
	}
}

// shutdown shuts n down gracefully, if it runs (nats-server hands its
// raft leaderships over first), and waits until its process has exited.
func (c *cluster) shutdown(n *node) error {
	if p := n.down(); p != nil {
		return p.shutdown(shutdownTimeout)
	}
	return nil
}

// node returns the node named name; the test fails if there is none.
func (c *cluster) node(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %q", name)
	return nil
}

// urls returns the client URLs of all nodes, comma separated: clients
// fail over between them.
func (c *cluster) urls() string {
	var us []string
	for _, n := range c.nodes {
		us = append(us, n.url())
	}
	return strings.Join(us, ",")
}

// url returns the client URL of n.
func (n *node) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.spec.ClientPort) }

// metaLeader returns the name of the node that leads the JetStream meta
// group, as the running nodes last reported it, or "".
func (c *cluster) metaLeader() string {
	return c.leader(func(p *process) bool { return p.metaLeader.Load() })
}

// streamLeader returns the name of the node that leads the stream, as the
// running nodes last reported it, or "".
func (c *cluster) streamLeader() string {
	return c.leader(func(p *process) bool { return p.streamLeader.Load() })
}

// leader returns the name of the first running node whose process leads,
// or "".
func (c *cluster) leader(leads func(*process) bool) string {
	for _, n := range c.nodes {
		n.mu.Lock()
		p := n.proc
		n.mu.Unlock()
		if p != nil && leads(p) {
			return n.name
		}
	}
	return ""
}

// waitStreamLeader waits until a running node other than not reports that
// it leads the stream, and returns its name.
func (c *cluster) waitStreamLeader(ctx context.Context, not string, timeout time.Duration) (string, error) {
	var leader string
	err := poll(ctx, timeout, func(context.Context) error {
		leader = c.streamLeader()
		if leader == "" || leader == not {
			return fmt.Errorf("no node but %q reports that it leads the stream", not)
		}
		return nil
	})
	return leader, err
}

// monitor is a connection to every node that watches the stream.
type monitor struct {
	nc     *nats.Conn
	js     natsjs.JetStream
	stream string
}

// newMonitor connects to every node of c to watch stream; the
// connection is closed when the test ends.
func newMonitor(t *testing.T, c *cluster, stream string) *monitor {
	t.Helper()
	nc, err := nats.Connect(c.urls(), nats.Name("runlog-cluster-monitor"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.NoCallbacksAfterClientClose(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatalf("monitor connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatalf("monitor jetstream: %v", err)
	}
	return &monitor{nc: nc, js: js, stream: stream}
}

// waitMeta waits until the meta group has a leader: until the JetStream
// API answers account info.
func (m *monitor) waitMeta(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, timeout, func(ctx context.Context) error {
		_, err := m.js.AccountInfo(ctx)
		return err
	})
}

// infoTimeout bounds one stream info request. The requests are made in
// polls, so one that times out (the stream is between leaders, the
// machine is loaded) is simply made again.
const infoTimeout = 2 * time.Second

// info returns the stream's cluster info.
func (m *monitor) info(ctx context.Context) (*natsjs.ClusterInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	s, err := m.js.Stream(ctx, m.stream)
	if err != nil {
		return nil, err
	}
	ci := s.CachedInfo().Cluster
	if ci == nil {
		return nil, fmt.Errorf("stream %s has no cluster info", m.stream)
	}
	return ci, nil
}

// waitCurrent waits until the stream has a leader and size-1 replicas
// that are current, online and not lagging.
func (m *monitor) waitCurrent(ctx context.Context, size int, timeout time.Duration) (*natsjs.ClusterInfo, error) {
	var out *natsjs.ClusterInfo
	err := poll(ctx, timeout, func(ctx context.Context) error {
		ci, err := m.info(ctx)
		if err != nil {
			return err
		}
		if ci.Leader == "" {
			return fmt.Errorf("no stream leader")
		}
		if len(ci.Replicas) != size-1 {
			return fmt.Errorf("%d replicas besides the leader, want %d", len(ci.Replicas), size-1)
		}
		for _, r := range ci.Replicas {
			if !r.Current || r.Offline || r.Lag > 0 {
				return fmt.Errorf("replica %s: current %v, offline %v, lag %d", r.Name, r.Current, r.Offline, r.Lag)
			}
		}
		out = ci
		return nil
	})
	return out, err
}

// poll calls fn every 100ms until it returns nil, at most timeout, and
// returns fn's last error if it never did.
func poll(ctx context.Context, timeout time.Duration, fn func(ctx context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
