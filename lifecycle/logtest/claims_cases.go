package logtest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// Task claims (Sayiir's TaskClaimStore, research/sayiir.md §4.2–4.3) on
// every log that brings a lease store: claim, double claim, release by
// the owner and by another, absolute extension, no-TTL extension,
// expiry and take-over, fenced writes after the loss, a checkpoint that
// releases, what ends a claim, and bad input that writes nothing.

// needLeases skips a claim case on a log without a lease store.
func needLeases(t *testing.T, h *storeHarness) {
	t.Helper()
	if leasesOf(h.log) == nil {
		t.Skip("the log has no lease store (Leases())")
	}
}

// claimsOf returns the task.claimed and task.claim_released events of
// the instance's history, in order.
func (h *storeHarness) claimEvents(id string) []events.Event {
	h.t.Helper()
	var out []events.Event
	for _, rec := range h.records(id) {
		for _, e := range rec.Commit.Events {
			if e.Type == events.TaskClaimed || e.Type == events.TaskClaimReleased {
				out = append(out, e)
			}
		}
	}
	return out
}

// waitClaim tries to claim until it succeeds (the previous lease ended),
// at most bound.
func (h *storeHarness) waitClaim(st *lifecycle.Store, id string, task workflow.TaskID, worker string, ttl, bound time.Duration) lifecycle.TaskClaim {
	h.t.Helper()
	deadline := time.Now().Add(bound)
	for {
		c, err := st.ClaimTask(h.ctx, id, task, worker, ttl)
		if err == nil {
			return c
		}
		if !errors.Is(err, lifecycle.ErrAlreadyClaimed) || time.Now().After(deadline) {
			h.t.Fatalf("ClaimTask(%s) by %s: %v (waited up to %v for the lease to end)", id, worker, err, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var claimCases = []storeCase{
	{"ClaimAndDoubleClaim", func(t *testing.T, h *storeHarness) {
		needLeases(t, h)
		h.start("c")
		task := stTasks[0]
		c, err := h.store.ClaimTask(h.ctx, "c", task, "w-1", time.Minute)
		if err != nil || c.Worker != "w-1" || c.ID.IsZero() || c.ExpiresAt == nil || c.TookOver != nil {
			t.Fatalf("ClaimTask = %+v, %v", c, err)
		}
		for _, w := range []string{"w-2", "w-1"} {
			_, err := h.other().ClaimTask(h.ctx, "c", task, w, time.Minute)
			ce, ok := errors.AsType[*lifecycle.ClaimedError](err)
			if !ok || !errors.Is(err, lifecycle.ErrAlreadyClaimed) || ce.Worker != "w-1" || ce.Claim != c.ID {
				t.Fatalf("second claim by %s: %v, want a ClaimedError naming w-1's claim", w, err)
			}
		}
		if evs := h.claimEvents("c"); len(evs) != 1 {
			t.Fatalf("%d claim events, want 1: a refused claim writes nothing", len(evs))
		}
		// Another task of the same run is free.
		if _, err := h.store.ClaimTask(h.ctx, "c", stTasks[1], "w-2", 0); err != nil {
			t.Fatalf("claim of another task: %v", err)
		}
	}},

	{"ReleaseByOwnerAndByOther", func(t *testing.T, h *storeHarness) {
		needLeases(t, h)
		h.start("r")
		task := stTasks[0]
		if err := h.store.ReleaseTaskClaim(h.ctx, "r", task, "w-1"); !errors.Is(err, lifecycle.ErrNotFound) {
			t.Fatalf("release with no claim: %v, want ErrNotFound", err)
		}
		c, err := h.store.ClaimTask(h.ctx, "r", task, "w-1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.other().ReleaseTaskClaim(h.ctx, "r", task, "w-2"); !errors.Is(err, lifecycle.ErrClaimLost) {
			t.Fatalf("release by another worker: %v, want ErrClaimLost", err)
		}
		if err := h.store.ReleaseTaskClaim(h.ctx, "r", task, "w-1"); err != nil {
			t.Fatalf("release by the owner: %v", err)
		}
		if err := h.store.ReleaseTaskClaim(h.ctx, "r", task, "w-1"); !errors.Is(err, lifecycle.ErrNotFound) {
			t.Fatalf("second release: %v, want ErrNotFound", err)
		}
		// Released, not expired: the next claim takes over nothing.
		c2, err := h.other().ClaimTask(h.ctx, "r", task, "w-2", time.Minute)
		if err != nil || c2.TookOver != nil {
			t.Fatalf("claim after the release: %+v, %v", c2, err)
		}
		evs := h.claimEvents("r")
		if len(evs) != 3 || evs[1].Type != events.TaskClaimReleased || evs[1].Data.(*events.TaskClaimReleasedData).Claim != c.ID {
			t.Fatalf("claim events %v", evs)
		}
	}},

	{"LeaseLeftByAReleasedClaim", func(t *testing.T, h *storeHarness) {
		// A release whose lease deletion failed (or is late) leaves the
		// lease held under a claim the history says ended: the next claim
		// ends it, rather than being refused until its ttl (never, here).
		// A lease held under a claim the history does not know (one being
		// committed) is left alone.
		needLeases(t, h)
		leases := leasesOf(h.log)
		h.start("left")
		task := stTasks[0]
		c, err := h.store.ClaimTask(h.ctx, "left", task, "w-1", 0)
		if err != nil {
			t.Fatal(err)
		}
		key := lifecycle.LeaseKey{Instance: "left", Run: c.Run, Task: task}
		holder, ok, err := leases.LeaseHolder(h.ctx, key)
		if err != nil || !ok {
			t.Fatalf("the claim's lease: %q %v %v", holder, ok, err)
		}
		if err := h.store.ReleaseTaskClaim(h.ctx, "left", task, "w-1"); err != nil {
			t.Fatal(err)
		}
		if got, _, _ := leases.AcquireLease(h.ctx, key, holder, 0); !got {
			t.Fatal("could not put the released claim's lease back")
		}
		for i, st := range []*lifecycle.Store{h.store, h.other()} { // on the cached projection, then on a cold one
			w := []string{"w-2", "w-3"}[i]
			c2, err := st.ClaimTask(h.ctx, "left", task, w, time.Minute)
			if err != nil || c2.TookOver != nil {
				t.Fatalf("claim by %s over the lease a released claim left: %+v, %v", w, c2, err)
			}
			now, ok, err := leases.LeaseHolder(h.ctx, key)
			if err != nil || !ok || now == holder {
				t.Fatalf("the lease after the claim: %q %v %v", now, ok, err)
			}
			if err := st.ReleaseTaskClaim(h.ctx, "left", task, w); err != nil {
				t.Fatal(err)
			}
			holder = now
			if got, _, _ := leases.AcquireLease(h.ctx, key, holder, 0); !got {
				t.Fatal("could not put the released claim's lease back")
			}
		}
		if err := leases.ReleaseLease(h.ctx, key, holder); err != nil {
			t.Fatal(err)
		}
		// The lease's holder value is the claim's id and the worker
		// (docs/WORKERS.md): a claim this history has never seen.
		inFlight := ulid.Make().String() + " w-9"
		if got, _, _ := leases.AcquireLease(h.ctx, key, inFlight, time.Minute); !got {
			t.Fatal("could not take the lease for a claim in flight")
		}
		before := h.lastSeq("left")
		if _, err := h.other().ClaimTask(h.ctx, "left", task, "w-4", time.Minute); !errors.Is(err, lifecycle.ErrAlreadyClaimed) {
			t.Fatalf("claim while another claim is being committed: %v, want ErrAlreadyClaimed", err)
		}
		if now, _, _ := leases.LeaseHolder(h.ctx, key); now != inFlight || h.lastSeq("left") != before {
			t.Fatalf("a refused claim changed the lease (%q) or wrote (seq %d → %d)", now, before, h.lastSeq("left"))
		}
	}},

	{"ExtendAbsoluteAndNoTTL", func(t *testing.T, h *storeHarness) {
		needLeases(t, h)
		h.start("e")
		// No TTL: extending is a silent no-op, the claim stays.
		if _, err := h.store.ClaimTask(h.ctx, "e", stTasks[1], "w-1", 0); err != nil {
			t.Fatal(err)
		}
		if err := h.store.ExtendTaskClaim(h.ctx, "e", stTasks[1], "w-1", time.Second); err != nil {
			t.Fatalf("extend of a claim without expiry: %v", err)
		}
		if err := h.store.ExtendTaskClaim(h.ctx, "e", stTasks[1], "w-2", time.Second); !errors.Is(err, lifecycle.ErrClaimLost) {
			t.Fatalf("extend by another worker: %v, want ErrClaimLost", err)
		}
		// A 30 s lease renewed for 1 s ends about 1 s later: the renewal
		// counts from now, not from the old expiry (which would be 31 s).
		if _, err := h.store.ClaimTask(h.ctx, "e", stTasks[0], "w-1", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		before := len(h.commits("e"))
		if err := h.store.ExtendTaskClaim(h.ctx, "e", stTasks[0], "w-1", time.Second); err != nil {
			t.Fatalf("extend: %v", err)
		}
		if after := len(h.commits("e")); after != before {
			t.Fatalf("a heartbeat wrote %d commits to the history", after-before)
		}
		c := h.waitClaim(h.other(), "e", stTasks[0], "w-2", time.Minute, 20*time.Second)
		if c.TookOver == nil || c.TookOver.Worker != "w-1" {
			t.Fatalf("claim after the renewed lease ended: %+v, want a take-over of w-1", c)
		}
	}},

	{"ExpiryTakeOverAndFencedSaves", func(t *testing.T, h *storeHarness) {
		needLeases(t, h)
		h.start("x")
		task := stTasks[0]
		old, err := h.store.ClaimTask(h.ctx, "x", task, "w-1", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		snap, rev := h.load("x")
		// The claim does not move the revision: w-1's save is fenced by
		// its claim only.
		snap.MarkTaskCompleted(task, []byte("one"), snap.UpdatedAt)
		if rev, err = h.store.SaveSnapshot(h.ctx, snap, rev, lifecycle.WithClaim(old, false)); err != nil {
			t.Fatalf("fenced save while the lease is live: %v", err)
		}
		// w-1 stalls; its lease ends; w-2 takes the claim over. (The first
		// task has a result now: w-2 claims the next one in a fresh run.)
		h2 := h.other()
		if _, err := h2.PrepareRun(h.ctx, lifecycle.PrepareRunRequest{InstanceID: "x2", DefinitionHash: stDef, FirstTask: workflow.TaskHint{ID: task}}); err != nil {
			t.Fatal(err)
		}
		old2, err := h.store.ClaimTask(h.ctx, "x2", task, "w-1", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		snap2, rev2 := h.load("x2")
		taken := h.waitClaim(h2, "x2", task, "w-2", time.Minute, 20*time.Second)
		if taken.TookOver == nil || taken.TookOver.Claim != old2.ID || taken.TookOver.Worker != "w-1" {
			t.Fatalf("take-over %+v, want it to name w-1's claim %s", taken, old2.ID)
		}
		// w-1's late writes are refused, and write nothing.
		before := len(h.commits("x2"))
		snap2.MarkTaskCompleted(task, []byte("late"), snap2.UpdatedAt)
		if _, err := h.store.SaveSnapshot(h.ctx, snap2, rev2, lifecycle.WithClaim(old2, false)); !errors.Is(err, lifecycle.ErrClaimLost) {
			t.Fatalf("save of the worker taken over: %v, want ErrClaimLost", err)
		}
		if _, err := h.store.SaveTaskResult(h.ctx, "x2", rev2, task, []byte("late"), lifecycle.WithClaim(old2, false)); !errors.Is(err, lifecycle.ErrClaimLost) {
			t.Fatalf("task result of the worker taken over: %v, want ErrClaimLost", err)
		}
		if err := h.store.ReleaseTaskClaim(h.ctx, "x2", task, "w-1"); !errors.Is(err, lifecycle.ErrClaimLost) {
			t.Fatalf("release by the worker taken over: %v, want ErrClaimLost", err)
		}
		if err := h.store.ExtendTaskClaim(h.ctx, "x2", task, "w-1", time.Minute); !errors.Is(err, lifecycle.ErrClaimLost) {
			t.Fatalf("extend by the worker taken over: %v, want ErrClaimLost", err)
		}
		if after := len(h.commits("x2")); after != before {
			t.Fatalf("refused writes wrote %d commits", after-before)
		}
		// The new holder's fenced checkpoint releases the claim in the
		// same commit; the lease is gone with it.
		snap3, rev3, err := h2.LoadSnapshot(h.ctx, "x2")
		if err != nil {
			t.Fatal(err)
		}
		snap3.MarkTaskCompleted(task, []byte("done"), snap3.UpdatedAt)
		snap3.UpdatePosition(workflow.AtTaskPosition(stTasks[1]), snap3.UpdatedAt)
		if _, err := h2.SaveSnapshot(h.ctx, snap3, rev3, lifecycle.WithClaim(taken, true)); err != nil {
			t.Fatalf("fenced checkpoint that releases: %v", err)
		}
		cs := h.commits("x2")
		if last := cs[len(cs)-1]; !slices.Contains(last, events.TaskClaimReleased) || !slices.Contains(last, events.CheckpointSaved) {
			t.Fatalf("the releasing checkpoint's commit is %v", last)
		}
		if _, err := h.store.ClaimTask(h.ctx, "x2", stTasks[1], "w-3", 0); err != nil {
			t.Fatalf("claim of the next task: %v", err)
		}
		if _, err := h.store.ClaimTask(h.ctx, "x2", task, "w-3", 0); !errors.Is(err, lifecycle.ErrInvalidRequest) {
			t.Fatalf("claim of the completed task: %v, want ErrInvalidRequest", err)
		}
	}},

	{"ClaimEndsWithTheRun", func(t *testing.T, h *storeHarness) {
		needLeases(t, h)
		h.start("t")
		task := stTasks[0]
		c, err := h.store.ClaimTask(h.ctx, "t", task, "w-1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		snap, rev := h.load("t")
		if _, err := h.store.PrepareRun(h.ctx, lifecycle.PrepareRunRequest{InstanceID: "t", DefinitionHash: stDef, FirstTask: workflow.TaskHint{ID: task}, Policy: workflow.TerminateExisting}); err != nil {
			t.Fatal(err)
		}
		snap.MarkTaskCompleted(task, []byte("late"), snap.UpdatedAt)
		if _, err := h.store.SaveSnapshot(h.ctx, snap, rev, lifecycle.WithClaim(c, false)); !errors.Is(err, lifecycle.ErrStale) && !errors.Is(err, lifecycle.ErrClaimLost) {
			t.Fatalf("save on the replaced run: %v, want ErrStale or ErrClaimLost", err)
		}
		if err := h.store.ExtendTaskClaim(h.ctx, "t", task, "w-1", time.Minute); !errors.Is(err, lifecycle.ErrNotFound) {
			t.Fatalf("extend of a claim of the replaced run: %v, want ErrNotFound (the new run has no claim)", err)
		}
		if err := h.store.ReleaseTaskClaim(h.ctx, "t", task, "w-1"); !errors.Is(err, lifecycle.ErrNotFound) {
			t.Fatalf("release on the new run: %v", err)
		}
		// The new run's task is claimed at once: leases are per run, so
		// the old run's live lease does not block it.
		c2, err := h.other().ClaimTask(h.ctx, "t", task, "w-2", time.Minute)
		if err != nil || c2.TookOver != nil || c2.Run == c.Run {
			t.Fatalf("claim on the new run: %+v, %v", c2, err)
		}
	}},

	{"ClaimBadInputWritesNothing", func(t *testing.T, h *storeHarness) {
		needLeases(t, h)
		h.start("b")
		h.start("done")
		h.finish("done", workflow.Completed)
		h.start("gone")
		if err := h.store.DeleteSnapshot(h.ctx, "gone", "test"); err != nil {
			t.Fatal(err)
		}
		seqs := map[string]uint64{"b": h.lastSeq("b"), "done": h.lastSeq("done"), "gone": h.lastSeq("gone")}
		for _, tc := range []struct {
			name, id, worker string
			ttl              time.Duration
			want             error
		}{
			{"empty worker", "b", "", 0, lifecycle.ErrInvalidRequest},
			{"control characters in the worker id", "b", "w\n1", 0, lifecycle.ErrInvalidRequest},
			{"a negative ttl", "b", "w-1", -time.Second, lifecycle.ErrInvalidRequest},
			{"a terminal run", "done", "w-1", 0, lifecycle.ErrTerminal},
			{"a deleted instance", "gone", "w-1", 0, lifecycle.ErrNotFound},
			{"no instance", "never", "w-1", 0, lifecycle.ErrNotFound},
		} {
			if _, err := h.store.ClaimTask(h.ctx, tc.id, stTasks[0], tc.worker, tc.ttl); !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
		}
		for id, seq := range seqs {
			if got := h.lastSeq(id); got != seq {
				t.Errorf("%s: last sequence %d, was %d: a refused claim wrote", id, got, seq)
			}
		}
		// Without a lease store, claims are refused as a configuration
		// error.
		bare, err := lifecycle.New(h.log, lifecycle.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bare.ClaimTask(h.ctx, "b", stTasks[0], "w-1", 0); !errors.Is(err, lifecycle.ErrInvalidConfig) {
			t.Errorf("claim without Config.Leases: %v, want ErrInvalidConfig", err)
		}
	}},
}
