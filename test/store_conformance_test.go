package test

import (
	"testing"

	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/lifecycle/logtest"
	"github.com/runlog/runlog/memlog"
)

func TestStoreConformanceMemlog(t *testing.T) {
	logtest.RunStore(t, func(t *testing.T) lifecycle.Log { return memlog.New(nil) })
}
