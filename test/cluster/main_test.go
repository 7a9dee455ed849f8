package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The cluster's nodes are child processes: the test binary re-executed
// with nodeEnv set runs one NATS server instead of the tests, so that the
// test can kill a node with SIGKILL (a crash: no raft leadership handed
// over, nothing flushed) and start it again on its store directory and
// ports.

// nodeEnv makes the test binary run as a node: its value is the node's
// nodeSpec, in JSON.
const nodeEnv = "RUNLOG_CLUSTER_NODE"

// Lines a node prints on its stdout, which the parent reads.
const (
	readyLine   = "runlog-cluster-node ready" // accepts clients
	leadsLine   = "runlog-cluster-node leads" // + " meta|stream true|false", whenever it changes
	leadsMeta   = "meta"                      // the JetStream meta group
	leadsStream = "stream"                    // the raft group of nodeSpec.Stream
)

// clusterName is the name of the NATS cluster the nodes form.
const clusterName = "runlog-test"

// leaderPoll is how often a node checks whether it leads the JetStream
// meta group and the stream, to report changes.
const leaderPoll = 50 * time.Millisecond

// nodeSpec is what a node process needs to run: its name, store
// directory, ports, the cluster ports of all nodes (itself included), and
// the stream whose leadership it reports. It stays the same across
// restarts.
type nodeSpec struct {
	Name        string   `json:"name"`
	Dir         string   `json:"dir"`
	ClientPort  int      `json:"client_port"`
	ClusterPort int      `json:"cluster_port"`
	Routes      []string `json:"routes"`
	Stream      string   `json:"stream"`
}

// options returns the server options of the node.
func (s nodeSpec) options() *server.Options {
	return &server.Options{
		ServerName:         s.Name,
		Host:               "127.0.0.1",
		Port:               s.ClientPort,
		JetStream:          true,
		StoreDir:           s.Dir,
		SyncAlways:         true, // runlog's default durability: fsync before acknowledging
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  1 << 30,
		NoSigs:             true,
		Cluster: server.ClusterOpts{
			Name: clusterName,
			Host: "127.0.0.1",
			Port: s.ClusterPort,
		},
		Routes: server.RoutesFromStr(strings.Join(s.Routes, ",")),
	}
}

// TestMain runs a node instead of the tests when nodeEnv is set.
func TestMain(m *testing.M) {
	if spec := os.Getenv(nodeEnv); spec != "" {
		os.Exit(runNode(spec))
	}
	os.Exit(m.Run())
}

// runNode runs the server of spec until its stdin ends (the parent closed
// it, or died), then shuts it down gracefully and returns the exit
// status. A server that cannot start (a port in use) exits at once with
// status 3 from its logger's Fatalf; the parent kills a node that does
// not get ready in time. The server's warnings and errors go to stderr,
// which the parent keeps; readyLine, then the changes of its meta and
// stream leaderships (leadsLine), go to stdout.
func runNode(specJSON string) int {
	var spec nodeSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "cluster node: bad %s %q: %v\n", nodeEnv, specJSON, err)
		return 2
	}
	log := &stderrLogger{node: spec.Name}
	srv, err := server.NewServer(spec.options())
	if err != nil {
		log.Fatalf("new server: %v", err)
	}
	srv.SetLoggerV2(log, false, false, false)
	go srv.Start()
	// Not ready yet: either it gets ready, or its logger's Fatalf ends
	// the process, or the parent kills it at its deadline.
	for !srv.ReadyForConnections(time.Second) {
	}
	if !srv.JetStreamEnabled() {
		log.Fatalf("JetStream did not start (store directory %q)", spec.Dir)
	}
	fmt.Println(readyLine)

	stop := make(chan struct{})
	var reporter sync.WaitGroup
	reporter.Go(func() { reportLeaderships(srv, spec.Stream, stop) })
	_, _ = io.Copy(io.Discard, os.Stdin) // returns when the parent closes stdin or is gone
	close(stop)
	reporter.Wait()
	srv.Shutdown() // hands its raft leaderships over first
	srv.WaitForShutdown()
	return 0
}

// reportLeaderships prints a leadsLine on stdout whenever srv starts or
// stops leading the JetStream meta group or the raft group of stream
// (in the global account), until stop closes.
func reportLeaderships(srv *server.Server, stream string, stop <-chan struct{}) {
	tick := time.NewTicker(leaderPoll)
	defer tick.Stop()
	var meta, str bool
	for {
		if now := srv.JetStreamIsLeader(); now != meta {
			meta = now
			fmt.Printf("%s %s %t\n", leadsLine, leadsMeta, meta)
		}
		if now := stream != "" && srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream); now != str {
			str = now
			fmt.Printf("%s %s %t\n", leadsLine, leadsStream, str)
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// stderrLogger writes the server's warnings, errors and fatal errors to
// stderr, one line each with the time and the node's name. Fatalf then
// ends the process with status 3, as nats-server's own logger does: that
// is how a listen error (a port in use) is reported, at once.
type stderrLogger struct {
	node string
	mu   sync.Mutex
}

// printf writes one line to stderr.
func (l *stderrLogger) printf(level, format string, v []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(os.Stderr, "%s %s [%s] %s\n", time.Now().Format("15:04:05.000"), level, l.node, fmt.Sprintf(format, v...))
}

// Noticef discards informational messages (the start banner and such).
func (l *stderrLogger) Noticef(string, ...any) {}

// Warnf writes a warning to stderr.
func (l *stderrLogger) Warnf(format string, v ...any) { l.printf("WARN ", format, v) }

// Errorf writes an error to stderr.
func (l *stderrLogger) Errorf(format string, v ...any) { l.printf("ERROR", format, v) }

// Fatalf writes a fatal error to stderr and exits with status 3.
func (l *stderrLogger) Fatalf(format string, v ...any) {
	l.printf("FATAL", format, v)
	os.Exit(3)
}

// Debugf discards debug messages.
func (l *stderrLogger) Debugf(string, ...any) {}

// Tracef discards trace messages.
func (l *stderrLogger) Tracef(string, ...any) {}
