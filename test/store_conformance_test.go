package test

import (
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"

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
