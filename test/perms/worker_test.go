package perms

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// workerLeasePublish is what a worker needs besides writerPublish to
// claim, heartbeat and release through the lease bucket RUNLOG_LEASES
// (a KV bucket: stream KV_RUNLOG_LEASES), which the admin creates:
//   - $JS.API.STREAM.INFO.KV_RUNLOG_LEASES       the bucket is looked up
//   - $JS.API.DIRECT.GET.KV_RUNLOG_LEASES.>      a lease is read (direct get by subject)
//   - $KV.RUNLOG_LEASES.>                         a lease is created, renewed, deleted
var workerLeasePublish = []string{
	"$JS.API.STREAM.INFO.KV_RUNLOG_LEASES",
	"$JS.API.DIRECT.GET.KV_RUNLOG_LEASES.>",
	"$KV.RUNLOG_LEASES.>",
}

// TestWorkerPermissions: a worker user with the writer's set and the
// lease entries claims a task, heartbeats, saves fenced by its claim and
// releases it in the checkpoint; without the lease entries it cannot
// claim, and nothing is written.
func TestWorkerPermissions(t *testing.T) {
	url := startServer(t, slices.Concat(writerPublish, workerLeasePublish), writerPublish)
	admin := createStream(t, url)
	ctx := t.Context()
	// The admin makes the lease bucket (a lease taken and released).
	al := admin.Leases()
	setup := lifecycle.LeaseKey{Instance: "setup", Task: first.ID}
	if _, _, err := al.AcquireLease(ctx, setup, "admin", time.Second); err != nil {
		t.Fatal(err)
	}
	if err := al.ReleaseLease(ctx, setup, "admin"); err != nil {
		t.Fatal(err)
	}
	if err := workerClaims(t, url, writerUser, writerPass, "w-1"); err != nil {
		t.Fatalf("worker: %v", err)
	}
	// The reader user has the writer's set only (no lease entries): its
	// claim fails and writes nothing.
	before := streamMsgs(t, admin)
	if err := workerClaims(t, url, readerUser, readerPass, "w-2"); err == nil {
		t.Fatal("a worker without the lease permissions claimed a task")
	} else {
		t.Logf("worker without lease permissions: %v", err)
	}
	if got := streamMsgs(t, admin); got != before+1 { // its PrepareRun only
		t.Fatalf("the stream went from %d to %d messages: the refused claim wrote", before, got)
	}
}

// workerClaims runs a worker's life on one task as user: create, claim,
// heartbeat, fenced checkpoint that releases.
func workerClaims(t *testing.T, url, user, pass, worker string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 4*step)
	defer cancel()
	log, err := connect(t, ctx, url, user, pass, jetstream.Config{})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	st, err := lifecycle.New(log, lifecycle.Config{Logger: discard, Leases: log.Leases()})
	if err != nil {
		return err
	}
	id := "job-" + worker
	p, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defHash, FirstTask: first})
	if err != nil {
		return fmt.Errorf("PrepareRun: %w", err)
	}
	sctx, scancel := context.WithTimeout(ctx, step)
	c, err := st.ClaimTask(sctx, id, first.ID, worker, 30*time.Second)
	scancel()
	if err != nil {
		return fmt.Errorf("ClaimTask: %w", err)
	}
	if err := st.ExtendTaskClaim(ctx, id, first.ID, worker, 30*time.Second); err != nil {
		return fmt.Errorf("ExtendTaskClaim: %w", err)
	}
	snap := p.Snapshot.Clone()
	snap.MarkTaskCompleted(first.ID, []byte("out"), snap.CreatedAt)
	snap.UpdatePosition(workflow.AtTaskPosition(workflow.NewTaskID("second")), snap.CreatedAt)
	if _, err := st.SaveSnapshot(ctx, snap, p.Revision, lifecycle.WithClaim(c, true)); err != nil {
		return fmt.Errorf("fenced SaveSnapshot: %w", err)
	}
	if _, ok, err := log.Leases().LeaseHolder(ctx, lifecycle.LeaseKey{Instance: id, Run: c.Run, Task: first.ID}); err != nil || ok {
		return fmt.Errorf("the lease after the releasing checkpoint: held %t, %v", ok, errors.Join(err))
	}
	return nil
}
