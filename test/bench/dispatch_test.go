package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/dispatch"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/worker"
	"github.com/runlog/runlog/workflow"
)

// ---- Dispatch (issue 13, BENCHMARKS.md §5.13) --------------------------

// BenchmarkFindAvailable is one dispatch.Find of 10 tasks over the
// runnable index (jetstream.Log.RunnableIndex) of a store of 1,000
// instances, all runnable, and of 100,000 instances of which 1,000 are
// runnable (the others paused): its cost must follow the runnable work,
// not the instances.
func BenchmarkFindAvailable(b *testing.B) {
	for _, tc := range []struct{ instances, runnable int }{{1000, 1000}, {100_000, 1000}} {
		b.Run(fmt.Sprintf("instances=%d", tc.instances), func(b *testing.B) {
			e := newEnv(b, syncDefault)
			st, err := lifecycle.New(e.log, lifecycle.Config{Logger: discard, Leases: e.log.Leases(), CacheSize: -1})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			seedInstances(b, st, tc.instances, tc.runnable)
			x := e.log.RunnableIndex()
			if err := x.Rebuild(ctx, st); err != nil {
				b.Fatal(err)
			}
			// The markers of the entries removed (the paused instances)
			// expire 5 s after their removal: the steady state.
			time.Sleep(7 * time.Second)
			cpu := startCPU()
			for b.Loop() {
				got, err := dispatch.Find(ctx, x, st, e.log.Leases(), "worker-1", 10, dispatch.Options{})
				if err != nil || len(got) != 10 {
					b.Fatal(len(got), err)
				}
			}
			cpu.report(b)
		})
	}
}

// seedInstances creates n instances, the first runnable of them runnable
// and the others paused (a pending pause), from 16 goroutines.
func seedInstances(b *testing.B, st *lifecycle.Store, n, runnable int) {
	b.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	const writers = 16
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				id := "find-" + strconv.Itoa(i)
				if _, err := st.PrepareRun(ctx, prepareReq(id, workflow.Fail)); err != nil {
					b.Error(err)
					return
				}
				if i >= runnable {
					if err := st.StoreSignal(ctx, id, workflow.Pause, workflow.SignalRequest{Reason: "idle"}); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkWakeup is the time from a commit that makes a task runnable (a
// fresh PrepareRun) to the hint's delivery to a waiting worker
// (RunnableIndex.Wakeups), through the indexer: p50 and p99 reported.
// Its floor is BenchmarkRawPublishDeliver.
func BenchmarkWakeup(b *testing.B) {
	e := newEnv(b, syncDefault)
	st, err := lifecycle.New(e.log, lifecycle.Config{Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	x := e.log.RunnableIndex()
	go func() { _ = x.Run(ctx, st, jetstream.IndexerOptions{}) }()
	wakeLatencies(ctx, b, st, e.otherLog(b).RunnableIndex(), "wake-")
}

// wakeLatencies creates a run per op on st while a worker goroutine waits
// on x's wake-ups (x on a connection of its own, as a worker process's
// would be), noting when each run's hint reaches it. It reports, as p50-µs and p99-µs, the time from the commit
// (the server's time of storing it, read back afterwards: the embedded
// server shares this process's clock) to the hint's arrival, the issue's
// "commit → hint delivered"; and as req-p50-µs and req-p99-µs the time
// from before the PrepareRun (its decision and append included) to the
// hint.
func wakeLatencies(ctx context.Context, b *testing.B, st *lifecycle.Store, x *jetstream.RunnableIndex, prefix string) {
	w, err := x.Wakeups(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	type arrival struct {
		instance string
		at       time.Time
	}
	arrivals := make(chan arrival, 1024)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for {
			h, ok, err := w.Wait(wctx, time.Minute)
			if err != nil {
				return
			}
			if ok {
				arrivals <- arrival{h.Instance, time.Now()}
			}
		}
	}()
	var req []time.Duration
	var got []arrival
	g := ids{prefix: prefix}
	for b.Loop() {
		id := g.next()
		t0 := time.Now()
		if _, err := st.PrepareRun(ctx, prepareReq(id, workflow.Fail)); err != nil {
			b.Fatal(err)
		}
		var at time.Time
		for at.IsZero() {
			select {
			case a := <-arrivals:
				if a.instance == id {
					at = a.at
				}
			case <-time.After(10 * time.Second):
				b.Fatal("no hint of", id)
			}
		}
		req = append(req, at.Sub(t0))
		got = append(got, arrival{id, at})
	}
	// The commits' stored times, read after the timed loop.
	last := st.Log().(lifecycle.Last)
	lat := make([]time.Duration, 0, len(got))
	for _, h := range got {
		m, ok, err := last.LastMessage(ctx, h.instance)
		if err != nil || !ok {
			b.Fatal("the commit's stored time", err)
		}
		lat = append(lat, h.at.Sub(m.Time))
	}
	reportPercentiles(b, lat)
	if len(req) > 0 {
		slices.Sort(req)
		b.ReportMetric(float64(req[len(req)/2].Microseconds()), "req-p50-µs")
		b.ReportMetric(float64(req[len(req)*99/100].Microseconds()), "req-p99-µs")
	}
}

// BenchmarkRawPublishDeliver is a raw publish to a subject and its
// delivery to a subscriber on the same server: the floor of a wake-up.
func BenchmarkRawPublishDeliver(b *testing.B) {
	e := newEnv(b, syncDefault)
	sub, err := e.nc.SubscribeSync("bench.wake")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := e.nc.Publish("bench.wake", []byte("hint")); err != nil {
			b.Fatal(err)
		}
		if _, err := sub.NextMsg(10 * time.Second); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkWorkerPool: 8 workers of the reference pool (package worker)
// run one-step no-op workflows to completion — find, claim, run, fenced
// checkpoint that completes and releases — with the indexer keeping the
// runnable index and the pool searching a live copy of it
// (RunnableIndex.Live); ns/op is per workflow. Its floor is
// BenchmarkRawWorkQueue.
func BenchmarkWorkerPool(b *testing.B) {
	e := newEnv(b, syncDefault)
	st, err := lifecycle.New(e.log, lifecycle.Config{Logger: discard, Leases: e.log.Leases()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chain := &worker.Chain{Definition: defHash, Steps: []worker.Step{{Name: "noop", Run: func(_ context.Context, in []byte) ([]byte, error) { return in, nil }}}}
	x := e.log.RunnableIndex()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "pool-" + strconv.Itoa(i), DefinitionHash: defHash, FirstTask: chain.FirstTask()}); err != nil {
			b.Fatal(err)
		}
	}
	if err := x.Rebuild(ctx, st); err != nil {
		b.Fatal(err)
	}
	go func() { _ = x.Run(ctx, st, jetstream.IndexerOptions{}) }()
	live, err := x.Live(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer live.Stop()
	pool := &worker.Pool{Store: st, Leases: e.log.Leases(), Index: live, Name: "bench", Workers: 8, TTL: time.Minute, Chains: []*worker.Chain{chain}}
	before := e.nc.Stats()
	start := time.Now()
	b.StartTimer()
	go func() { _ = pool.Run(ctx) }()
	// Timed until every task is checkpointed: the pool's live index has
	// no entry left (its own checkpoints take theirs out, Passed).
	for live.Len() > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	// Messages this process sent per task: requests, acks, publishes (the
	// pool's, the indexer's and the live index's), while timed.
	b.ReportMetric(float64(e.nc.Stats().OutMsgs-before.OutMsgs)/float64(b.N), "msgs/task")
	// And until the indexer has caught up with the log too (its consumer
	// has nothing left to deliver or have acknowledged), untimed: it
	// still reads the setup's creates, indexed already by the Rebuild,
	// and every claim and checkpoint, while the pool needs none of it.
	for !indexerCaughtUp(b, e) {
		time.Sleep(5 * time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "indexed-tasks/s")
}

// BenchmarkRawWorkQueue: 8 goroutines drain a work-queue stream of b.N
// messages through one pull consumer, acking each: the floor of a worker
// pool's dispatch.
func BenchmarkRawWorkQueue(b *testing.B) {
	e := newEnv(b, syncDefault)
	ctx := context.Background()
	s, err := e.js.CreateStream(ctx, natsjs.StreamConfig{Name: "RAWWQ", Subjects: []string{"rawwq.>"}, Retention: natsjs.WorkQueuePolicy})
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.js.Publish(ctx, "rawwq.task", []byte("t")); err != nil {
			b.Fatal(err)
		}
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, natsjs.ConsumerConfig{Durable: "workers", AckPolicy: natsjs.AckExplicitPolicy})
	if err != nil {
		b.Fatal(err)
	}
	var acked atomic.Int64
	b.StartTimer()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for acked.Load() < int64(b.N) {
				batch, err := cons.Fetch(16, natsjs.FetchMaxWait(100*time.Millisecond))
				if err != nil {
					continue
				}
				for m := range batch.Messages() {
					if err := m.Ack(); err == nil {
						acked.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkWakeupHinted is BenchmarkWakeup with the writer announcing
// runnable tasks itself (lifecycle.Config.AfterCommit =
// RunnableIndex.Hints): commit → hint without the indexer. p50/p99 in
// the metrics, beside BenchmarkRawPublishDeliver.
func BenchmarkWakeupHinted(b *testing.B) {
	e := newEnv(b, syncDefault)
	x := e.log.RunnableIndex()
	st, err := lifecycle.New(e.log, lifecycle.Config{Logger: discard, AfterCommit: x.Hints()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wakeLatencies(ctx, b, st, e.otherLog(b).RunnableIndex(), "hinted-")
}

// BenchmarkRawRePublish is a raw JetStream publish to a stream that
// republishes its messages' headers (RePublish, HeadersOnly), and the
// republished headers' arrival at a subscriber, timed from the server's
// stored time (Nats-Time-Stamp): the floor of a hint the server would
// send as it stores a commit, a design tried and not kept (BENCHMARKS.md
// §5.13).
func BenchmarkRawRePublish(b *testing.B) {
	e := newEnv(b, syncDefault)
	ctx := context.Background()
	if _, err := e.js.CreateStream(ctx, natsjs.StreamConfig{Name: "RAWRP", Subjects: []string{"rawrp.>"},
		RePublish: &natsjs.RePublish{Source: "rawrp.>", Destination: "rawrp-hints.>", HeadersOnly: true}}); err != nil {
		b.Fatal(err)
	}
	arrivals := make(chan time.Duration, 1024)
	sub, err := e.nc.Subscribe("rawrp-hints.>", func(m *nats.Msg) {
		now := time.Now()
		ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(natsjs.TimeStampHeaer))
		if err != nil {
			b.Error(err)
		}
		arrivals <- now.Sub(ts)
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	payload := make([]byte, 512)
	var lat []time.Duration
	for b.Loop() {
		if _, err := e.js.Publish(ctx, "rawrp.task", payload); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, <-arrivals)
	}
	reportPercentiles(b, lat)
}

// indexerCaughtUp reports whether the runnable indexer's consumer on the
// env's stream has no message left to deliver or to be acknowledged.
func indexerCaughtUp(b *testing.B, e *env) bool {
	c, err := e.js.Consumer(context.Background(), e.log.Streams()[0], "runlog-indexer")
	if err != nil {
		b.Fatal(err)
	}
	i := c.CachedInfo()
	return i.NumPending == 0 && i.NumAckPending == 0
}
