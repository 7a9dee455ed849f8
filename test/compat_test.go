package test

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// TestOneStreamStoreFromBeforePartitions opens a store directory written
// by runlog before partitions existed (testdata/store-52e5e47.tar.gz:
// `replay demo --seed 1` at commit 52e5e47): it opens unchanged as one
// partition, verifies, digests, takes new writes, and refuses a client
// configured with 4 partitions.
func TestOneStreamStoreFromBeforePartitions(t *testing.T) {
	dir := t.TempDir()
	untar(t, "testdata/store-52e5e47.tar.gz", dir)
	ctx := t.Context()

	if _, err := jetstream.OpenEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{Partitions: 4}); !errors.Is(err, jetstream.ErrPartitionMismatch) {
		t.Fatalf("open with 4 partitions: %v, want ErrPartitionMismatch", err)
	}
	js, err := jetstream.OpenEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer js.Close()
	if js.Partitions() != 1 || !slices.Equal(js.Streams(), []string{"RUNLOG"}) {
		t.Fatalf("partitions %d, streams %v", js.Partitions(), js.Streams())
	}
	ids, err := js.Instances(ctx, "", 0)
	if err != nil || len(ids) != 10 || !slices.Contains(ids, "order-s1-1") {
		t.Fatalf("instances %v, %v", ids, err)
	}
	rep, err := audit.Verify(ctx, js, audit.VerifyOptions{})
	if err != nil || !rep.OK() || rep.Instances != 10 || rep.Messages != 47 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	d, err := audit.MakeDigest(ctx, js, audit.DigestOptions{})
	if err != nil || d.Stream != "RUNLOG" || d.Instances != 10 {
		t.Fatalf("digest: %+v, %v", d, err)
	}
	st, err := lifecycle.New(js, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	def := workflow.DefinitionHashOf("compat v1")
	if _, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "new-after-upgrade", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("a")}}); err != nil {
		t.Fatal(err)
	}
	if got := js.SubjectFor("new-after-upgrade"); got != "runlog.wf.new-after-upgrade" {
		t.Fatalf("a new instance on %s, want the one-stream subject", got)
	}
	// The old history still folds: its last state is what it was.
	snap, _, err := st.LoadSnapshot(ctx, "order-s1-1")
	if err != nil || snap.State.Kind != workflow.Completed {
		t.Fatalf("order-s1-1 after the upgrade: %+v, %v", snap, err)
	}
	drep, err := audit.VerifyDigest(ctx, js, "", d)
	if err != nil || len(drep.Problems) != 0 {
		t.Fatalf("the digest made before the write: %v, %v", drep.Problems, err)
	}
}

// untar extracts the gzipped tar file into dir.
func untar(t *testing.T, file, dir string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, tr); err != nil {
				t.Fatal(err)
			}
			if err := out.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
