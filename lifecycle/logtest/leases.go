package logtest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// RunLeases runs the contract of a lifecycle.Leases implementation: one
// live holder per key, holder-only renewal and release, absolute renewal,
// expiry by the store's clock, keys independent of each other (runs and
// tasks included). newLeases returns a fresh, empty lease store; the
// expiry cases wait a few seconds (JetStream counts TTLs in whole
// seconds).
func RunLeases(t *testing.T, newLeases func(t *testing.T) lifecycle.Leases) {
	run1, run2 := ulid.Make(), ulid.Make()
	key := lifecycle.LeaseKey{Instance: "lease.é 1", Run: run1, Task: workflow.NewTaskID("a")}
	t.Run("OneHolder", func(t *testing.T) {
		t.Parallel()
		l := newLeases(t)
		ctx := t.Context()
		const racers = 16
		var won atomic.Int32
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() {
				ok, cur, err := l.AcquireLease(ctx, key, "h"+string(rune('a'+i)), time.Minute)
				if err != nil {
					t.Error(err)
				}
				if ok {
					won.Add(1)
				} else if cur == "" {
					t.Error("a refused acquire named no holder")
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("%d racers acquired one lease", won.Load())
		}
		// Other keys are independent: another task, another run.
		for _, k := range []lifecycle.LeaseKey{{Instance: key.Instance, Run: run1, Task: workflow.NewTaskID("b")}, {Instance: key.Instance, Run: run2, Task: key.Task}} {
			if ok, _, err := l.AcquireLease(ctx, k, "other", time.Minute); err != nil || !ok {
				t.Fatalf("acquire of %+v: %v %v", k, ok, err)
			}
		}
	})
	t.Run("HolderOnlyRenewAndRelease", func(t *testing.T) {
		t.Parallel()
		l := newLeases(t)
		ctx := t.Context()
		if ok, _, err := l.AcquireLease(ctx, key, "me", time.Minute); err != nil || !ok {
			t.Fatal(ok, err)
		}
		if ok, err := l.RenewLease(ctx, key, "you", time.Minute); err != nil || ok {
			t.Fatalf("renew by another holder: %v %v", ok, err)
		}
		if err := l.ReleaseLease(ctx, key, "you"); err != nil {
			t.Fatal(err)
		}
		if h, ok, err := l.LeaseHolder(ctx, key); err != nil || !ok || h != "me" {
			t.Fatalf("holder after another's release: %q %v %v", h, ok, err)
		}
		if ok, err := l.RenewLease(ctx, key, "me", time.Minute); err != nil || !ok {
			t.Fatalf("renew by the holder: %v %v", ok, err)
		}
		if err := l.ReleaseLease(ctx, key, "me"); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := l.LeaseHolder(ctx, key); err != nil || ok {
			t.Fatalf("held after release: %v %v", ok, err)
		}
		if ok, err := l.RenewLease(ctx, key, "me", time.Minute); err != nil || ok {
			t.Fatalf("renew after release: %v %v", ok, err)
		}
		if ok, _, err := l.AcquireLease(ctx, key, "you", 0); err != nil || !ok {
			t.Fatalf("acquire after release: %v %v", ok, err)
		}
	})
	t.Run("ExpiryAndAbsoluteRenewal", func(t *testing.T) {
		t.Parallel()
		l := newLeases(t)
		ctx := t.Context()
		if ok, _, err := l.AcquireLease(ctx, key, "me", time.Second); err != nil || !ok {
			t.Fatal(ok, err)
		}
		// A long lease renewed short ends short: renewal counts from now.
		long := lifecycle.LeaseKey{Instance: "long", Run: run1, Task: key.Task}
		if ok, _, err := l.AcquireLease(ctx, long, "me", time.Minute); err != nil || !ok {
			t.Fatal(ok, err)
		}
		if ok, err := l.RenewLease(ctx, long, "me", time.Second); err != nil || !ok {
			t.Fatal(ok, err)
		}
		// No lease expiring before its ttl; both ended within a bound.
		if h, ok, _ := l.LeaseHolder(ctx, key); !ok || h != "me" {
			t.Fatalf("the lease ended at once")
		}
		for _, k := range []lifecycle.LeaseKey{key, long} {
			deadline := time.Now().Add(20 * time.Second)
			for {
				_, ok, err := l.LeaseHolder(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("lease %+v still held 20 s after a 1 s ttl", k)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if ok, _, err := l.AcquireLease(ctx, key, "you", time.Minute); err != nil || !ok {
			t.Fatalf("acquire after expiry: %v %v", ok, err)
		}
		if ok, err := l.RenewLease(ctx, key, "me", time.Minute); err != nil || ok {
			t.Fatalf("renew by the expired holder: %v %v", ok, err)
		}
	})
}
