package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/internal/faulttest"
)

// node is one server of the cluster. Its ports and store directory stay
// the same across restarts.
type node struct {
	name        string
	dir         string
	clientPort  int
	clusterPort int

	mu  sync.Mutex
	srv *server.Server // nil while down
}

// cluster is three nodes in this process, routed to each other on
// loopback.
type cluster struct {
	t      *testing.T
	nodes  []*node
	routes string
}

// readyTimeout bounds how long a node may take to accept clients.
const readyTimeout = time.Minute

// startCluster starts three nodes and shuts them down when the test ends.
// Ports are chosen below the ephemeral range (faulttest.Port); if a node
// cannot start all the same (another process took a port meanwhile), the
// cluster starts again on new ports, up to three times.
func startCluster(t *testing.T, size int) *cluster {
	t.Helper()
	var err error
	for range 3 {
		var c *cluster
		if c, err = tryStartCluster(t, size); err == nil {
			return c
		}
		t.Logf("start the cluster: %v; again on new ports", err)
	}
	t.Fatal(err)
	return nil
}

func tryStartCluster(t *testing.T, size int) (*cluster, error) {
	c := &cluster{t: t}
	var routes []string
	for i := range size {
		n := &node{name: fmt.Sprintf("n%d", i+1), dir: t.TempDir(), clientPort: faulttest.Port(t), clusterPort: faulttest.Port(t)}
		c.nodes = append(c.nodes, n)
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(n.clusterPort))
	}
	c.routes = strings.Join(routes, ",")
	var wg sync.WaitGroup
	errs := make([]error, size)
	for i, n := range c.nodes {
		wg.Go(func() { errs[i] = c.start(n) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, n := range c.nodes {
			c.stop(n)
		}
		return nil, err
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			c.stop(n)
		}
	})
	return c, nil
}

// start starts n on its directory and ports.
func (c *cluster) start(n *node) error {
	opts := &server.Options{
		ServerName:         n.name,
		Host:               "127.0.0.1",
		Port:               n.clientPort,
		JetStream:          true,
		StoreDir:           n.dir,
		SyncAlways:         true, // runlog's default durability
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  1 << 30,
		NoLog:              true,
		NoSigs:             true,
		Cluster: server.ClusterOpts{
			Name: "runlog-test",
			Host: "127.0.0.1",
			Port: n.clusterPort,
		},
		Routes: server.RoutesFromStr(c.routes),
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.name, err)
	}
	fatal := make(chan string, 1)
	srv.SetLoggerV2(fatalLogger{fatal}, false, false, false)
	go srv.Start()
	deadline := time.Now().Add(readyTimeout)
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		var err error
		select {
		case msg := <-fatal:
			err = fmt.Errorf("node %s: %s", n.name, msg)
		default:
			if time.Now().After(deadline) {
				err = fmt.Errorf("node %s: not ready after %v", n.name, readyTimeout)
			}
		}
		if err != nil {
			srv.Shutdown()
			srv.WaitForShutdown()
			return err
		}
	}
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
	return nil
}

// fatalLogger discards the server's logs but its first fatal message
// (a port in use), which it hands to start.
type fatalLogger struct{ fatal chan<- string }

func (fatalLogger) Noticef(string, ...any) {}
func (fatalLogger) Warnf(string, ...any)   {}
func (fatalLogger) Errorf(string, ...any)  {}
func (fatalLogger) Debugf(string, ...any)  {}
func (fatalLogger) Tracef(string, ...any)  {}
func (l fatalLogger) Fatalf(format string, v ...any) {
	select {
	case l.fatal <- fmt.Sprintf(format, v...):
	default:
	}
}

// stop shuts n down (its raft leaderships are handed over first, as
// Server.Shutdown does) and waits until it is gone.
func (c *cluster) stop(n *node) {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

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

func (n *node) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.clientPort) }

// metaLeader returns the name of the node that leads the JetStream meta
// group, or "".
func (c *cluster) metaLeader() string {
	for _, n := range c.nodes {
		n.mu.Lock()
		srv := n.srv
		n.mu.Unlock()
		if srv != nil && srv.JetStreamIsLeader() {
			return n.name
		}
	}
	return ""
}

// monitor is a connection to every node that watches the stream.
type monitor struct {
	nc     *nats.Conn
	js     natsjs.JetStream
	stream string
}

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

// info returns the stream's cluster info.
func (m *monitor) info(ctx context.Context) (*natsjs.ClusterInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
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

// waitLeader waits until the stream has a leader other than not, and
// returns it.
func (m *monitor) waitLeader(ctx context.Context, not string, timeout time.Duration) (string, error) {
	var leader string
	err := poll(ctx, timeout, func(ctx context.Context) error {
		ci, err := m.info(ctx)
		if err != nil {
			return err
		}
		if ci.Leader == "" || ci.Leader == not {
			return fmt.Errorf("stream leader is %q", ci.Leader)
		}
		leader = ci.Leader
		return nil
	})
	return leader, err
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
