package visibility_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/visibility"
	"github.com/runlog/runlog/workflow"
)

// benchLog is a memlog of n instances, each created by PrepareRun, every
// hundredth failed after: the shape of BENCHMARKS.md §5.16's store.
func benchLog(b *testing.B, n int) (*memlog.Log, int) {
	lg := memlog.New(nil)
	st, err := lifecycle.New(lg, lifecycle.Config{CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	msgs := 0
	for i := range n {
		id := fmt.Sprintf("i%d", i)
		p, err := st.PrepareRun(b.Context(), lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: workflow.DefinitionHashOf("bench"),
			Input: []byte(`{"order":1}`), FirstTask: workflow.NewTaskHint("reserve")})
		if err != nil {
			b.Fatal(err)
		}
		msgs++
		if i%100 == 99 {
			snap := p.Snapshot
			snap.MarkFailed("card expired", snap.CreatedAt)
			if _, err := st.SaveSnapshot(b.Context(), snap, p.Revision); err != nil {
				b.Fatal(err)
			}
			msgs++
		}
	}
	return lg, msgs
}

// BenchmarkIndexBuild builds the visibility index of 20,000 instances
// from nothing: events/s is the build rate (BENCHMARKS.md §5.16).
func BenchmarkIndexBuild(b *testing.B) {
	lg, msgs := benchLog(b, 20_000)
	var size int64
	for b.Loop() {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "index.db")
		ix, err := visibility.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		s, err := ix.CatchUp(b.Context(), lg, nil)
		if err != nil || s.Messages != msgs {
			b.Fatal(err, s.Messages, msgs)
		}
		b.StopTimer()
		ix.Close()
		size = fileSizes(path, path+"-wal")
		b.StartTimer()
	}
	b.ReportMetric(float64(msgs)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(size)/20_000, "B/instance")
}

// fileSizes sums the sizes of the files that exist.
func fileSizes(paths ...string) int64 {
	var n int64
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// BenchmarkIndexQuery: the query of `replay list --status failed --limit
// 50` on the index of 20,000 instances.
func BenchmarkIndexQuery(b *testing.B) {
	lg, _ := benchLog(b, 20_000)
	ix, err := visibility.Open(filepath.Join(b.TempDir(), "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	if _, err := ix.CatchUp(b.Context(), lg, nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		got, err := ix.Search(b.Context(), audit.Query{Statuses: []string{"failed"}}, visibility.SearchOptions{Limit: 50})
		if err != nil || len(got) != 50 {
			b.Fatal(err, len(got))
		}
	}
}
