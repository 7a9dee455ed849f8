// Package test holds the tests that cross packages: the conformance suite
// (lifecycle/logtest) run against every lifecycle.Log implementation.
package test

import (
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/lifecycle/logtest"
	"github.com/runlog/runlog/memlog"
)

func TestConformanceMemlog(t *testing.T) {
	t.Parallel()
	logtest.Run(t, func(t *testing.T) lifecycle.Log {
		l := memlog.New(nil)
		t.Cleanup(func() { _ = l.Close() })
		return l
	})
}

// openJetStream returns a factory of JetStream logs, each on its own
// embedded server (its own store directory) with the given storage.
func openJetStream(storage natsjs.StorageType) func(t *testing.T) lifecycle.Log {
	return openPartitioned(storage, 0)
}

// openPartitioned is openJetStream with k partitions (0: the default).
func openPartitioned(storage natsjs.StorageType, k int) func(t *testing.T) lifecycle.Log {
	return func(t *testing.T) lifecycle.Log {
		t.Helper()
		nc := natstest.Connect(t, natstest.Start(t))
		s, err := jetstream.Open(t.Context(), nc, jetstream.Config{Storage: storage, Partitions: k})
		if err != nil {
			t.Fatalf("jetstream.Open: %v", err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		return s
	}
}

func TestConformanceJetStreamFile(t *testing.T) {
	t.Parallel()
	logtest.Run(t, openJetStream(natsjs.FileStorage))
}

func TestConformanceJetStreamMemory(t *testing.T) {
	t.Parallel()
	logtest.Run(t, openJetStream(natsjs.MemoryStorage))
}

// The whole contract again on a store of 4 partitions: every operation
// goes to its instance's partition, and reads across instances (Scan,
// listings) cover all of them.
func TestConformanceJetStreamPartitioned(t *testing.T) {
	t.Parallel()
	logtest.Run(t, openPartitioned(natsjs.FileStorage, 4))
}
