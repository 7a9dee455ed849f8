// Package natstest runs NATS servers with JetStream inside tests: no
// external service, no build tags. Servers listen on no port (clients
// connect in process), log nothing, and are shut down by the test's
// cleanup. Failures end the test through tb.Fatalf; nothing panics.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// readyTimeout bounds how long a server may take to accept connections.
const readyTimeout = 10 * time.Second

// Start starts a server with JetStream storing in a fresh tb.TempDir().
// It is shut down, and waited for, when the test ends.
func Start(tb testing.TB) *server.Server {
	tb.Helper()
	return StartDir(tb, tb.TempDir())
}

// StartDir starts a server with JetStream storing in dir, for tests that
// stop a server and start another on the same directory. Stop the first
// one (Shutdown, WaitForShutdown) before starting the next. The server is
// shut down, and waited for, when the test ends.
func StartDir(tb testing.TB, dir string) *server.Server {
	tb.Helper()
	return start(tb, &server.Options{JetStream: true, StoreDir: dir, DontListen: true, NoLog: true, NoSigs: true})
}

// StartListening starts a server with JetStream that also listens on a
// loopback port (its ClientURL), for tests whose other side connects by
// URL, as a separate program would.
func StartListening(tb testing.TB) *server.Server {
	tb.Helper()
	return StartOptions(tb, server.Options{})
}

// StartOptions starts a listening server with JetStream on a loopback
// port with opts (its users and permissions, say): the store directory,
// host, port and quiet defaults are filled in where opts leaves them
// unset.
func StartOptions(tb testing.TB, opts server.Options) *server.Server {
	tb.Helper()
	opts.JetStream = true
	if opts.StoreDir == "" {
		opts.StoreDir = tb.TempDir()
	}
	if opts.Host == "" {
		opts.Host, opts.Port = "127.0.0.1", -1
	}
	opts.NoLog, opts.NoSigs = true, true
	return start(tb, &opts)
}

func start(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(readyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		tb.Fatalf("natstest: server not ready after %v", readyTimeout)
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect returns an in-process connection to s, closed when the test
// ends.
func Connect(tb testing.TB, s *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.InProcessServer(s))
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}
