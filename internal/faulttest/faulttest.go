// Package faulttest holds what the fault tests (test/crash, test/cluster)
// share: their seed and soak switches, a runner of concurrent writers,
// loopback ports that survive restarts, and what counts as a refusal.
package faulttest

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/runlog/runlog/lifecycle"
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

// Refused reports whether err is a refusal by the store: a domain error
// (already exists, stale, terminal, not found, cannot cancel or pause,
// definition mismatch, invalid request) or a give-up after conflicts. A
// refused decision wrote nothing; any other error may or may not have
// landed.
func Refused(err error) bool {
	for _, target := range []error{lifecycle.ErrAlreadyExists, lifecycle.ErrStale, lifecycle.ErrTerminal,
		lifecycle.ErrNotFound, lifecycle.ErrCannotCancel, lifecycle.ErrCannotPause, lifecycle.ErrDefinitionMismatch,
		lifecycle.ErrInvalidRequest, lifecycle.ErrConcurrentModification} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
