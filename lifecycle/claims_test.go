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

// TestClaimOnStaleCache: a claim and a heartbeat are first decided on the
// store's cached projection, without reading the log. Whatever another
// store wrote since — a claim taken over after its lease ended, a new run,
// the task completed, a take-over of this worker's claim — the answer is
// the one a read would give, and no lease is left behind.
func TestClaimOnStaleCache(t *testing.T) {
	ctx := t.Context()
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	advance := func(d time.Duration) { now.Add(int64(d)) }
	log := memlog.New(clock)
	leases := log.Leases()
	newStore := func() *lifecycle.Store {
		st, err := lifecycle.New(log, lifecycle.Config{Leases: leases})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	stale, other := newStore(), newStore()
	task := workflow.NewTaskID("t")
	if _, err := stale.PrepareRun(ctx, prepare("s")); err != nil {
		t.Fatal(err)
	}
	if _, err := stale.Load(ctx, "s"); err != nil { // cached from here on
		t.Fatal(err)
	}

	// Another store's claim, whose lease then ended: the stale store's
	// claim takes it over, naming it.
	theirs, err := other.ClaimTask(ctx, "s", task, "w-other", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	advance(2 * time.Second)
	mine, err := stale.ClaimTask(ctx, "s", task, "w-stale", time.Minute)
	if err != nil {
		t.Fatalf("claim on a stale cache after the other's lease ended: %v", err)
	}
	if mine.TookOver == nil || mine.TookOver.Claim != theirs.ID {
		t.Errorf("the claim took over %+v, want the other's claim %s", mine.TookOver, theirs.ID)
	}

	// The other store takes it over in turn once it ended: the stale
	// store's heartbeat is refused, and so is its claim while the
	// other's lease is live.
	advance(2 * time.Minute)
	if _, err := other.ClaimTask(ctx, "s", task, "w-other", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := stale.ExtendTaskClaim(ctx, "s", task, "w-stale", time.Minute); !errors.Is(err, lifecycle.ErrClaimLost) {
		t.Errorf("heartbeat of a claim taken over, on a stale cache: %v, want ErrClaimLost", err)
	}
	if _, err := stale.ClaimTask(ctx, "s", task, "w-stale", time.Minute); !errors.Is(err, lifecycle.ErrAlreadyClaimed) {
		t.Errorf("claim of a live claim, on a stale cache: %v, want ErrAlreadyClaimed", err)
	}

	// A new run by the other store: the old run's lease is still live,
	// yet the new run's task is free.
	p, err := other.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "s", DefinitionHash: workflow.DefinitionHashOf("d"), FirstTask: workflow.TaskHint{ID: task}, Policy: workflow.TerminateExisting})
	if err != nil {
		t.Fatal(err)
	}
	c, err := stale.ClaimTask(ctx, "s", task, "w-stale", time.Minute)
	if err != nil || c.Run != p.Revision.Run {
		t.Fatalf("claim on a stale cache after a new run: %+v, %v; want a claim on run %s", c, err, p.Revision.Run)
	}
	if err := stale.ReleaseTaskClaim(ctx, "s", task, "w-stale"); err != nil {
		t.Fatal(err)
	}

	// The task completed by the other store: refused as a read would.
	snap, rev, err := other.LoadSnapshot(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	snap.MarkTaskCompleted(task, []byte("done"), clock())
	if _, err := other.SaveSnapshot(ctx, snap, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := stale.ClaimTask(ctx, "s", task, "w-stale", time.Minute); !errors.Is(err, lifecycle.ErrInvalidRequest) {
		t.Errorf("claim of a completed task, on a stale cache: %v, want ErrInvalidRequest", err)
	}
	key := lifecycle.LeaseKey{Instance: "s", Run: p.Revision.Run, Task: task}
	if h, ok, err := leases.LeaseHolder(ctx, key); err != nil || ok {
		t.Errorf("a refused claim left a lease behind: %q %v %v", h, ok, err)
	}
}
