package test

import (
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/lifecycle/logtest"
	"github.com/runlog/runlog/memlog"
)

// The store operations (Sayiir's snapshot, signal and task-result contracts
// and the fencing Sayiir lacks) on every log.

func TestStoreConformanceMemlog(t *testing.T) {
	t.Parallel()
	logtest.RunStore(t, func(t *testing.T) lifecycle.Log { return memlog.New(nil) })
}

func TestStoreConformanceJetStreamFile(t *testing.T) {
	t.Parallel()
	logtest.RunStore(t, openJetStream(natsjs.FileStorage))
}

func TestStoreConformanceJetStreamMemory(t *testing.T) {
	t.Parallel()
	logtest.RunStore(t, openJetStream(natsjs.MemoryStorage))
}

func TestStoreConformanceJetStreamPartitioned(t *testing.T) {
	t.Parallel()
	logtest.RunStore(t, openPartitioned(natsjs.FileStorage, 4))
}

// The lease stores of task claims, held to one contract.
func TestLeasesMemlog(t *testing.T) {
	t.Parallel()
	logtest.RunLeases(t, func(t *testing.T) lifecycle.Leases { return memlog.New(nil).Leases() })
}

func TestLeasesJetStream(t *testing.T) {
	t.Parallel()
	logtest.RunLeases(t, func(t *testing.T) lifecycle.Leases {
		js := openJetStream(natsjs.MemoryStorage)(t)
		return js.(*jetstream.Log).Leases()
	})
}
