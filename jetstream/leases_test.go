package jetstream

import (
	"fmt"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// TestLeasesShared: a log has one lease store, which its partition views
// share, so that the releases it has in flight are known to all of them.
func TestLeasesShared(t *testing.T) {
	s, _, _ := newStore(t, Config{Partitions: 2})
	l := s.Leases()
	if s.Leases() != l {
		t.Fatal("Leases returned a second lease store")
	}
	for p := range 2 {
		v, err := s.Partition(p)
		if err != nil {
			t.Fatal(err)
		}
		if v.Leases() != l {
			t.Fatalf("partition %d's view has a lease store of its own", p)
		}
	}
}

// TestLeaseReleaseReadOwn: a release of a lease the store wrote last is
// sent without waiting for its answer (Log.Leases), and every later call
// on that lease waits for it: the store never sees a lease it released
// as held, and a release's answer outlives no Close.
func TestLeaseReleaseReadOwn(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	l := s.Leases()
	ctx := t.Context()
	run := ulid.Make()
	for i := range 200 {
		key := lifecycle.LeaseKey{Instance: fmt.Sprintf("i%d", i%20), Run: run, Task: workflow.NewTaskID("t")}
		holder := fmt.Sprintf("h%d", i)
		if ok, cur, err := l.AcquireLease(ctx, key, holder, time.Minute); err != nil || !ok {
			t.Fatalf("acquire %d: %v %q %v", i, ok, cur, err)
		}
		if i%2 == 0 {
			if ok, err := l.RenewLease(ctx, key, holder, time.Minute); err != nil || !ok {
				t.Fatalf("renew %d: %v %v", i, ok, err)
			}
		}
		if err := l.ReleaseLease(ctx, key, holder); err != nil {
			t.Fatal(err)
		}
		if h, ok, err := l.LeaseHolder(ctx, key); err != nil || ok {
			t.Fatalf("release %d: then the lease is held by %q (%v): the store did not read its own release", i, h, err)
		}
	}
	if n := inflight(l.(*kvLeases)); n != 0 {
		t.Fatalf("%d releases still in flight after the store read each", n)
	}
	// Released and closed at once: Close waits for the answer.
	key := lifecycle.LeaseKey{Instance: "closing", Run: run, Task: workflow.NewTaskID("t")}
	if ok, _, err := l.AcquireLease(ctx, key, "last", time.Minute); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := l.ReleaseLease(ctx, key, "last"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := inflight(l.(*kvLeases)); n != 0 {
		t.Fatalf("Close returned with %d releases in flight", n)
	}
}

func inflight(l *kvLeases) int {
	n := 0
	l.inflight.Range(func(any, any) bool { n++; return true })
	return n
}
