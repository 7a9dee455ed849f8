// Package faulttest holds what the fault tests (test/crash, test/cluster)
// share: their seed and soak switches, and a runner of concurrent writers.
package faulttest

import (
	"context"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// Seed returns $RUNLOG_SEED, or 1: fixed schedules by default.
func Seed(t testing.TB) uint64 {
	t.Helper()
	s := os.Getenv("RUNLOG_SEED")
	if s == "" {
		return 1
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("RUNLOG_SEED=%q: %v", s, err)
	}
	return n
}

// Soak reports whether RUNLOG_SOAK=1 asks for the long runs.
func Soak() bool { return os.Getenv("RUNLOG_SOAK") == "1" }

// Stepper is a writer that performs one operation per Step.
type Stepper interface{ Step(ctx context.Context) }

// Load runs writers until stopped.
type Load struct {
	halt atomic.Bool
	wg   sync.WaitGroup
}

// Start runs each writer's Step in a loop of its own until Stop or ctx ends.
func Start[S Stepper](ctx context.Context, writers []S) *Load {
	l := &Load{}
	for _, w := range writers {
		l.wg.Go(func() {
			for !l.halt.Load() && ctx.Err() == nil {
				w.Step(ctx)
			}
		})
	}
	return l
}

// Stop lets the writers finish their current operation and waits for them.
func (l *Load) Stop() {
	l.halt.Store(true)
	l.wg.Wait()
}
