package lifecycle_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

// countingLeases counts the lease reads a store makes.
type countingLeases struct {
	lifecycle.Leases
	reads atomic.Int64
}

func (c *countingLeases) LeaseHolder(ctx context.Context, k lifecycle.LeaseKey) (string, bool, error) {
	c.reads.Add(1)
	return c.Leases.LeaseHolder(ctx, k)
}

// TestFencedWriteTrustsItsOwnFreshLease: right after the store took the
// lease, a fenced save reads no lease (the store's own clock says it is
// live); once the ttl minus the margin has passed it reads it, and after
// expiry the save is refused.
func TestFencedWriteTrustsItsOwnFreshLease(t *testing.T) {
	ctx := t.Context()
	log := memlog.New(nil)
	cl := &countingLeases{Leases: log.Leases()}
	st, err := lifecycle.New(log, lifecycle.Config{Leases: cl})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PrepareRun(ctx, prepare("f")); err != nil {
		t.Fatal(err)
	}
	task := workflow.NewTaskID("t")
	// A minute's lease: the store counts on it for 45 s after it sent
	// the claim, whatever the machine's load.
	c, err := st.ClaimTask(ctx, "f", task, "w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	save := func(tag string) error {
		snap, rev, err := st.LoadSnapshot(ctx, "f")
		if err != nil {
			t.Fatal(err)
		}
		snap.SetTaskHint(workflow.TaskHint{ID: task, Tags: []string{tag}})
		_, err = st.SaveSnapshot(ctx, snap, rev, lifecycle.WithClaim(c, false))
		return err
	}
	before := cl.reads.Load()
	if err := save("fresh"); err != nil {
		t.Fatal(err)
	}
	if n := cl.reads.Load() - before; n != 0 {
		t.Errorf("a save right after the claim read the lease %d times, want 0", n)
	}
	// A short lease: once ttl - margin (300 ms) has passed the store asks.
	if err := st.ReleaseTaskClaim(ctx, "f", task, "w"); err != nil {
		t.Fatal(err)
	}
	const ttl = 400 * time.Millisecond
	if c, err = st.ClaimTask(ctx, "f", task, "w", ttl); err != nil {
		t.Fatal(err)
	}
	time.Sleep(320 * time.Millisecond)
	before = cl.reads.Load()
	err = save("late")
	if n := cl.reads.Load() - before; n != 1 {
		t.Errorf("a save near the end of the lease read it %d times, want 1", n)
	}
	if err != nil && !errors.Is(err, lifecycle.ErrClaimLost) {
		t.Fatal(err)
	}
	// Past the ttl: refused.
	time.Sleep(ttl)
	if err := save("expired"); !errors.Is(err, lifecycle.ErrClaimLost) {
		t.Fatalf("a save after expiry: %v, want ErrClaimLost", err)
	}
	// A heartbeat restores the store's own view (no read on the next save).
	c2, err := st.ClaimTask(ctx, "f", task, "w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c = c2
	if err := st.ExtendTaskClaim(ctx, "f", task, "w", time.Minute); err != nil {
		t.Fatal(err)
	}
	before = cl.reads.Load()
	if err := save("renewed"); err != nil {
		t.Fatal(err)
	}
	if n := cl.reads.Load() - before; n != 0 {
		t.Errorf("a save after a heartbeat read the lease %d times, want 0", n)
	}
}
