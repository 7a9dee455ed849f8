package bench

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/runlog/runlog/visibility"
	"github.com/runlog/runlog/workflow"
)

// BenchmarkIndexLag is the time from a commit (a fresh PrepareRun, timed
// from before the call) to the visibility index holding it, the index
// kept as replay serve keeps it (visibility.Index.Keep, woken by
// jetstream.Log.NotifyCommits, a periodic catch-up of 1 s as the
// fallback): p50 and p99 reported. Its floor is BenchmarkRawPublishDeliver
// plus a JetStream read and a SQLite write transaction.
func BenchmarkIndexLag(b *testing.B) {
	e := newEnv(b, syncDefault)
	st := e.store(b, 0)
	ix, err := visibility.Open(filepath.Join(b.TempDir(), "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	ctx, cancel := context.WithCancel(context.Background())
	hints, stop, err := e.log.NotifyCommits()
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	var mu sync.Mutex
	seen := map[string]time.Time{}
	arrived := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		ix.Keep(ctx, e.log, hints, time.Second, func(s visibility.Stats) {
			now := time.Now()
			mu.Lock()
			for _, id := range s.Changed {
				seen[id] = now
			}
			mu.Unlock()
			select {
			case arrived <- struct{}{}:
			default:
			}
		}, func(err error) { b.Error(err) })
	})
	defer func() { cancel(); wg.Wait() }()
	var lat []time.Duration
	g := ids{prefix: "lag-"}
	for b.Loop() {
		id := g.next()
		t0 := time.Now()
		if _, err := st.PrepareRun(ctx, prepareReq(id, workflow.Fail)); err != nil {
			b.Fatal(err)
		}
		deadline := time.After(10 * time.Second)
		for {
			mu.Lock()
			at, ok := seen[id]
			mu.Unlock()
			if ok {
				lat = append(lat, at.Sub(t0))
				break
			}
			select {
			case <-arrived:
			case <-deadline:
				b.Fatalf("%s not indexed in 10 s", id)
			}
		}
	}
	slices.Sort(lat)
	reportPercentiles(b, lat)
}
