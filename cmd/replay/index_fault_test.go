package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/runlog/runlog/internal/faulttest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	_ "github.com/runlog/runlog/visibility" // the sqlite driver, to read the index's position
	"github.com/runlog/runlog/workflow"
)

// TestIndexSurvivesKill is the visibility index's fault test: replay
// processes building and keeping the index (list, serve) are killed with
// SIGKILL at seeded random points while the log grows; every query then
// answers what a fold of every history answers, and a serve killed
// without cleaning up leaves no server file that misleads the next
// program. RUNLOG_SEED picks the kill points; RUNLOG_SOAK=1 kills more
// often.
func TestIndexSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: kills replay processes; skipped with -short")
	}
	t.Parallel()
	bin, err := exec.LookPath("replay") // the test binary as replay (testscript.Main)
	if err != nil {
		t.Fatal(err)
	}
	sd := faulttest.Seed(t)
	rng := rand.New(rand.NewPCG(sd, 0x76697369))
	rounds := 4
	if faulttest.Soak() {
		rounds = 20
	}
	dir := filepath.Join(t.TempDir(), "store")
	grow := func(round int) (last uint64) {
		t.Helper()
		st, err := jetstream.OpenEmbedded(t.Context(), jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		ls, err := lifecycle.New(st, lifecycle.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			info, err := st.PartitionInfo(t.Context(), 0)
			if err != nil {
				t.Fatal(err)
			}
			last = info.LastSeq
		}()
		ctx := lifecycle.WithActor(t.Context(), fmt.Sprintf("writer-%d", round))
		for i := range 400 {
			id := fmt.Sprintf("order-%04d", rng.IntN(1200))
			p, err := ls.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: workflow.DefinitionHashOf("checkout v1"),
				Input: []byte(`{}`), FirstTask: workflow.NewTaskHint("reserve"), Policy: workflow.UseExisting,
				Workflow: &workflow.Definition{Name: "checkout", Version: "v1", Tasks: []string{"reserve", "pay"}}})
			if err != nil {
				t.Fatal(err)
			}
			if p.Outcome != lifecycle.Created || i%3 == 0 {
				continue
			}
			snap := p.Snapshot
			switch i % 4 {
			case 0:
				snap.MarkFailed("declined", time.Now())
			case 1:
				snap.MarkCompleted([]byte(`{}`), time.Now())
			default:
				if err := ls.StoreSignal(ctx, id, workflow.Cancel, workflow.SignalRequest{Reason: "asked", RequestedBy: "alice"}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if _, err := ls.SaveSnapshot(ctx, snap, p.Revision); err != nil {
				t.Fatal(err)
			}
		}
		return last // set by the deferred read of the log's end
	}
	indexFile := filepath.Join(dir, "visibility", jetstream.DefaultStream+".db")
	// position is the index's position (0 before it has one), read as
	// another process would, without writing.
	position := func() uint64 {
		db, err := sql.Open("sqlite", "file:"+indexFile+"?mode=ro&_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var seq uint64
		if err := db.QueryRow(`SELECT seq FROM partitions WHERE partition = 0`).Scan(&seq); err != nil {
			return 0
		}
		return seq
	}
	// kill runs bin with args and SIGKILLs it once its catch-up has
	// committed a seeded number of batches (or after a seeded pause when
	// the catch-up is done before).
	kill := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "RUNLOG_INDEX_BATCH=20")
		start := position()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		batches, seen, last := 1+rng.IntN(8), 0, start
		deadline := time.Now().Add(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		for seen < batches && time.Now().Before(deadline) {
			select {
			case <-exited:
				return
			case <-time.After(time.Millisecond):
			}
			if p := position(); p != last {
				seen, last = seen+1, p
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
	behind := 0
	for round := range rounds {
		last := grow(round)
		kill("list", "--dir", dir, "--status", "failed", "-o", "ndjson")
		if round%2 == 1 {
			kill("serve", "--dir", dir, "--http", "127.0.0.1:0", "--nats", "127.0.0.1:0")
		}
		pos := position()
		if pos < last {
			behind++
		}
		t.Logf("round %d: the log ends at %d, the index is at %d after the kills", round, last, pos)
	}
	if behind == 0 {
		t.Error("no kill stopped a catch-up half way: the test proved nothing")
	}
	// A killed serve may have left its server file: the next program on
	// the directory runs its own server (the lock is free) and removes it.
	for _, args := range [][]string{
		{"--status", "failed"}, {"--status", "completed,in_progress"}, {"--signal", "cancel"}, {"--actor", "alice"},
		{"--actor", "writer-1"}, {"--workflow", "checkout v1"}, {"--event-type", "workflow.failed"}, {"--sort", "updated", "--limit", "25"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		indexed := mustRun(t, append([]string{"list", "--dir", dir, "-o", "ndjson"}, args...)...).stdout
		folded := replayCtx(t, ctx, append([]string{"list", "--dir", dir, "-o", "ndjson", "--no-index"}, args...)...).stdout
		cancel()
		if indexed != folded || indexed == "" {
			t.Errorf("list %v after the kills: the index says\n%s\nthe fold of every history says\n%s", args, indexed, folded)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, jetstream.ServerFileName)); !os.IsNotExist(err) {
		t.Errorf("a stale server file is still there: %v", err)
	}
}
