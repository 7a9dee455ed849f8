package bench

import (
	"github.com/nats-io/nkeys"

	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

// scale reports whether the long scale measurements were asked for
// (RUNLOG_BENCH_SCALE=1). They are skipped otherwise so that the whole
// benchmark run stays under 10 minutes.
func scale(tb testing.TB) {
	tb.Helper()
	if os.Getenv("RUNLOG_BENCH_SCALE") != "1" {
		tb.Skip("set RUNLOG_BENCH_SCALE=1 to run the long scale measurements")
	}
}

// genHistory encodes the history of an instance of n events, commit by
// commit, exactly as lifecycle.Store writes it (PrepareRun, then n-1
// checkpoints of one 128-byte task output and a new position, cycling over
// 100 tasks), with the hash chain, without a store: for bulk setup.
func genHistory(tb testing.TB, gen *events.IDSource, id string, n int) []events.Message {
	tb.Helper()
	return genHistoryEnding(tb, gen, id, n, false)
}

// genHistoryEnding is genHistory whose last commit (of n ≥ 2), when
// failed, fails the workflow instead of checkpointing it.
func genHistoryEnding(tb testing.TB, gen *events.IDSource, id string, n int, failed bool) []events.Message {
	tb.Helper()
	msgs := make([]events.Message, 0, n)
	var prev workflow.Hash32
	var run [16]byte
	out := bytes.Repeat([]byte("o"), 128)
	for i := range n {
		cid, t, err := gen.New()
		if err != nil {
			tb.Fatal(err)
		}
		t = t.UTC()
		c := events.Commit{ID: cid, Instance: id, Time: t, Prev: prev}
		var p events.Payload
		if i == 0 {
			r, _, _ := gen.New()
			run = r
			req := prepareReq(id, workflow.Fail)
			c.Command = "prepare_run"
			p = &events.SnapshotCreatedData{DefinitionHash: req.DefinitionHash, Input: req.Input, FirstTask: req.FirstTask, Policy: req.Policy.String()}
		} else if failed && i == n-1 {
			c.Command = "save_snapshot"
			p = &events.WorkflowFailedData{Error: "payment provider: card expired"}
		} else {
			copy(out, strconv.Itoa(i))
			pos := workflow.AtTaskPosition(taskID(i % 100))
			c.Command = "save_snapshot"
			p = &events.CheckpointSavedData{Position: &pos, Completed: events.TaskOutputs{{Task: taskID((i - 1) % 100), Output: bytes.Clone(out)}}}
		}
		eid, err := gen.Next(t)
		if err != nil {
			tb.Fatal(err)
		}
		c.Events = []events.Event{{ID: eid, Type: p.EventType(), Run: run, Data: p, Instance: id, Time: t, Schema: events.SchemaVersion}}
		m, err := c.Encode()
		if err != nil {
			tb.Fatal(err)
		}
		prev = workflow.Sha256(m.Data)
		msgs = append(msgs, m)
	}
	return msgs
}

// publishBulk stores msgs on instance's subject with asynchronous
// publishes (Nats-Msg-Id and headers as Encode made them, no sequence
// check: bulk setup only). Call e.flush to wait for the acks.
func (e *env) publishBulk(tb testing.TB, instance string, msgs []events.Message) {
	tb.Helper()
	subj := e.log.SubjectFor(instance)
	for _, m := range msgs {
		nm := &nats.Msg{Subject: subj, Header: nats.Header(m.Header), Data: m.Data}
		if _, err := e.js.PublishMsgAsync(nm); err != nil {
			tb.Fatal(err)
		}
	}
}

func (e *env) flush(tb testing.TB) {
	tb.Helper()
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		tb.Fatal("async publishes not acknowledged")
	}
}

// bulkCreate stores n instances prefix0..prefix(n-1), each one
// PrepareRun commit.
func (e *env) bulkCreate(tb testing.TB, prefix string, n int) {
	tb.Helper()
	gen := events.NewIDSource(nil, nil)
	for i := range n {
		id := prefix + strconv.Itoa(i)
		e.publishBulk(tb, id, genHistory(tb, gen, id, 1))
	}
	e.flush(tb)
}

// ---- Cost against history length --------------------------------------

// BenchmarkHistoryLength measures, for one instance of 10, 1,000 and
// 10,000 events: the raw read of its messages, a cold load (nothing
// cached), PrepareRun UseExisting through a store that has not seen it,
// and a checkpoint through a store that has it cached.
func BenchmarkHistoryLength(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run("events="+strconv.Itoa(n), func(b *testing.B) {
			e := newEnv(b, syncDefault)
			id := "h" + strconv.Itoa(n)
			e.publishBulk(b, id, genHistory(b, events.NewIDSource(nil, nil), id, n))
			e.flush(b)
			ctx := context.Background()
			subj := e.log.SubjectFor(id)
			b.Run("RawRead", func(b *testing.B) {
				cpu := startCPU()
				for b.Loop() {
					if got, _, err := e.rawRead(ctx, subj, 0); err != nil || got != n {
						b.Fatal(got, err)
					}
				}
				cpu.report(b)
			})
			b.Run("LoadColdFold", func(b *testing.B) {
				st := e.store(b, -1)
				cpu := startCPU()
				for b.Loop() {
					if s, err := st.Load(ctx, id); err != nil || s.Events != n {
						b.Fatal(s.Events, err)
					}
				}
				cpu.report(b)
			})
			b.Run("LoadCold", func(b *testing.B) {
				st := e.checkpointedStore(b)
				if _, err := st.Load(ctx, id); err != nil { // the first load folds and writes the checkpoint
					b.Fatal(err)
				}
				cpu := startCPU()
				for b.Loop() {
					if s, err := st.Load(ctx, id); err != nil || s.Events != n {
						b.Fatal(s.Events, err)
					}
				}
				cpu.report(b)
			})
			b.Run("PrepareRunUseExistingUncached", func(b *testing.B) {
				st := e.store(b, -1)
				cpu := startCPU()
				for b.Loop() {
					if p, err := st.PrepareRun(ctx, prepareReq(id, workflow.UseExisting)); err != nil || p.Outcome != lifecycle.UsedExisting {
						b.Fatal(p.Outcome, err)
					}
				}
				cpu.report(b)
			})
			b.Run("Checkpoint", func(b *testing.B) {
				st := e.store(b, 0)
				snap, rev, err := st.LoadSnapshot(ctx, id)
				if err != nil {
					b.Fatal(err)
				}
				// Same loop of 100 tasks as the history: the snapshot
				// keeps 100 results, only the history grows.
				r := &runner{id: id, snap: snap, rev: rev, next: n, cycle: 100}
				output := bytes.Repeat([]byte("r"), outputSize)
				cpu := startCPU()
				for b.Loop() {
					if err := r.checkpoint(ctx, st, output); err != nil {
						b.Fatal(err)
					}
				}
				cpu.report(b)
			})
		})
	}
}

// BenchmarkCheckpointSnapshotSize measures one checkpoint (as
// BenchmarkCheckpoint: one 256-byte output, new position) of an instance
// whose snapshot already holds 10, 100 or 1,000 task results: the cost of
// SaveSnapshot as a workflow grows.
func BenchmarkCheckpointSnapshotSize(b *testing.B) {
	for _, results := range []int{10, 100, 1000} {
		b.Run("results="+strconv.Itoa(results), func(b *testing.B) {
			e := newEnv(b, syncDefault)
			st := e.store(b, 0)
			ctx := context.Background()
			output := bytes.Repeat([]byte("r"), outputSize)
			r := runners(b, st, "s", 1)[0]
			r.cycle = results
			for range results {
				if err := r.checkpoint(ctx, st, output); err != nil {
					b.Fatal(err)
				}
			}
			cpu := startCPU()
			for b.Loop() {
				if err := r.checkpoint(ctx, st, output); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
		})
	}
}

// ---- Cost against instance count --------------------------------------

// BenchmarkInstanceCount measures the single-instance operations on a
// stream that already holds 1,000 and 100,000 instances (one commit
// each). PrepareRunUseExistingUncached picks a different existing
// instance each time, through a store with no cache.
func BenchmarkInstanceCount(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run("instances="+strconv.Itoa(n), func(b *testing.B) {
			e := newEnv(b, syncDefault)
			e.bulkCreate(b, "pre-", n)
			ctx := context.Background()
			t := e.template(b)
			b.Run("RawPublishCAS", func(b *testing.B) {
				g := ids{prefix: "raw-"}
				cpu := startCPU()
				for b.Loop() {
					if _, err := e.publishCAS(ctx, t, e.log.SubjectFor(g.next())); err != nil {
						b.Fatal(err)
					}
				}
				cpu.report(b)
			})
			b.Run("PrepareRunFresh", func(b *testing.B) {
				st := e.store(b, 0)
				g := ids{prefix: "fresh-"}
				cpu := startCPU()
				for b.Loop() {
					if _, err := st.PrepareRun(ctx, prepareReq(g.next(), workflow.Fail)); err != nil {
						b.Fatal(err)
					}
				}
				cpu.report(b)
			})
			b.Run("RawGetLast", func(b *testing.B) {
				i := 0
				cpu := startCPU()
				for b.Loop() {
					i = (i + 7919) % n
					if _, err := e.stream.GetLastMsgForSubject(ctx, e.log.SubjectFor("pre-"+strconv.Itoa(i))); err != nil {
						b.Fatal(err)
					}
				}
				cpu.report(b)
			})
			b.Run("PrepareRunUseExistingUncached", func(b *testing.B) {
				st := e.store(b, -1)
				i := 0
				cpu := startCPU()
				for b.Loop() {
					i = (i + 7919) % n
					if p, err := st.PrepareRun(ctx, prepareReq("pre-"+strconv.Itoa(i), workflow.UseExisting)); err != nil || p.Outcome != lifecycle.UsedExisting {
						b.Fatal(p.Outcome, err)
					}
				}
				cpu.report(b)
			})
		})
	}
}

// ---- Client projection cache ------------------------------------------

// BenchmarkCacheBytesPerInstance fills the projection cache of a store
// with default settings (4096 instances) from an in-memory log and
// reports the heap it holds per cached instance (cache-B/instance), for
// a freshly created instance (256-byte input) and for one that has
// completed 16 tasks with 256-byte outputs. ns/op is the time to load
// the 4096 instances cold from memory.
func BenchmarkCacheBytesPerInstance(b *testing.B) {
	for _, tasks := range []int{0, 16} {
		b.Run("tasks="+strconv.Itoa(tasks), func(b *testing.B) {
			log := memlog.New(nil)
			w, err := lifecycle.New(log, lifecycle.Config{Logger: discard})
			if err != nil {
				b.Fatal(err)
			}
			const n = 4096 // the default Config.CacheSize
			ctx := context.Background()
			output := bytes.Repeat([]byte("r"), outputSize)
			for i := range n {
				id := "c" + strconv.Itoa(i)
				p, err := w.PrepareRun(ctx, prepareReq(id, workflow.Fail))
				if err != nil {
					b.Fatal(err)
				}
				r := &runner{id: id, snap: p.Snapshot, rev: p.Revision}
				for range tasks {
					if err := r.checkpoint(ctx, w, output); err != nil {
						b.Fatal(err)
					}
				}
			}
			w = nil
			var perInstance float64
			cpu := startCPU()
			for b.Loop() {
				before := heapInUse()
				st, err := lifecycle.New(log, lifecycle.Config{Logger: discard})
				if err != nil {
					b.Fatal(err)
				}
				for i := range n {
					if _, err := st.Load(ctx, "c"+strconv.Itoa(i)); err != nil {
						b.Fatal(err)
					}
				}
				after := heapInUse()
				perInstance = float64(after-before) / n
				runtime.KeepAlive(st)
			}
			cpu.report(b)
			b.ReportMetric(perInstance, "cache-B/instance")
		})
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// ---- replay verify ----------------------------------------------------

// BenchmarkVerify100k runs audit.Verify (the engine of `replay verify`)
// over 10 instances of 10,000 events stored on the embedded server and
// reports events/s.
func BenchmarkVerify100k(b *testing.B) { benchVerify(b, 10) }

// BenchmarkVerify1M is BenchmarkVerify100k over 100 instances (1,000,000
// events). Skipped unless RUNLOG_BENCH_SCALE=1.
func BenchmarkVerify1M(b *testing.B) {
	scale(b)
	benchVerify(b, 100)
}

// verifyEnv stores the histories of the verify and digest benchmarks:
// instances of longEvents events each.
func verifyEnv(b *testing.B, instances int) *env { return historiesEnv(b, "v", instances, longEvents) }

// historiesEnv stores instances histories of n events each (genHistory),
// of the ids prefix0, prefix1, ...
func historiesEnv(b *testing.B, prefix string, instances, n int) *env {
	e := newEnv(b, syncDefault)
	gen := events.NewIDSource(nil, nil)
	for i := range instances {
		id := prefix + strconv.Itoa(i)
		e.publishBulk(b, id, genHistory(b, gen, id, n))
	}
	e.flush(b)
	return e
}

func benchVerify(b *testing.B, instances int) {
	e := verifyEnv(b, instances)
	ctx := context.Background()
	var rep *audit.Report
	cpu := startCPU()
	for b.Loop() {
		var err error
		rep, err = audit.Verify(ctx, e.log, audit.VerifyOptions{})
		if err != nil || !rep.OK() || rep.Events != instances*longEvents {
			b.Fatal(err, rep.Problems, rep.Events)
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(rep.Events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDigest100k runs audit.MakeDigest (the engine of `replay
// digest`) on the store of BenchmarkVerify100k and reports events/s (the
// events the digest covers, per second): a digest reads each instance's
// last message and the subject totals, not the histories. Its time is
// compared with BenchmarkVerify100k's (BENCHMARKS.md).
func BenchmarkDigest100k(b *testing.B) { benchDigest(b, 10) }

// BenchmarkDigest1M is BenchmarkDigest100k over the store of
// BenchmarkVerify1M. Skipped unless RUNLOG_BENCH_SCALE=1.
func BenchmarkDigest1M(b *testing.B) {
	scale(b)
	benchDigest(b, 100)
}

func benchDigest(b *testing.B, instances int) {
	e := verifyEnv(b, instances)
	ctx := context.Background()
	key, err := nkeys.CreateOperator()
	if err != nil {
		b.Fatal(err)
	}
	var d *audit.Digest
	cpu := startCPU()
	for b.Loop() {
		d, err = audit.MakeDigest(ctx, e.log, audit.DigestOptions{Key: key})
		if err != nil || d.Instances != instances || d.Messages != uint64(instances*longEvents) {
			b.Fatal(err, d)
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(d.Messages)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// seedEnv opens the embedded store in dir (the stream runlog creates by
// default, the benchmarks' sync setting) for a seeding test, closed when
// the test ends.
func seedEnv(t *testing.T, dir string) *env {
	t.Helper()
	return openEnv(t, dir, syncDefault, jetstream.Config{Logger: discard})
}

// TestSeedVerifyStore writes the store `replay verify` is measured on
// (BENCHMARKS.md §5.6): 100 instances of 10,000 events, the histories of
// BenchmarkVerify1M, into the embedded store directory
// $RUNLOG_BENCH_SEED_DIR (the stream runlog creates by default). Groups
// of ten instances are written interleaved, commit by commit, as
// concurrent runs would. Skipped unless the variable is set:
//
//	RUNLOG_BENCH_SEED_DIR=/tmp/v1m go test -run TestSeedVerifyStore -timeout 30m ./test/bench/
//	go build -o /tmp/replay ./cmd/replay && /usr/bin/time -v /tmp/replay verify --dir /tmp/v1m
func TestSeedVerifyStore(t *testing.T) {
	dir := os.Getenv("RUNLOG_BENCH_SEED_DIR")
	if dir == "" {
		t.Skip("set RUNLOG_BENCH_SEED_DIR to a new directory to write the one-million-event store")
	}
	const instances, group = 100, 10
	e := seedEnv(t, dir)
	gen := events.NewIDSource(nil, nil)
	for g := 0; g < instances; g += group {
		hs := make([][]events.Message, group)
		for i := range hs {
			id := "v" + strconv.Itoa(g+i)
			hs[i] = genHistory(t, gen, id, longEvents)
		}
		for n := range longEvents {
			for i, h := range hs {
				e.publishBulk(t, "v"+strconv.Itoa(g+i), h[n:n+1])
			}
		}
		e.flush(t)
	}
	t.Logf("%d instances of %d events written to %s", instances, longEvents, dir)
}

// TestSeedInstancesStore writes the store `replay list` and `replay
// stats` are measured on (BENCHMARKS.md §5.7): 1,000,000 instances of one
// PrepareRun commit each, into the embedded store directory
// $RUNLOG_BENCH_SEED_INSTANCES_DIR. Skipped unless the variable is set:
//
//	RUNLOG_BENCH_SEED_INSTANCES_DIR=/tmp/i1m go test -run TestSeedInstancesStore -timeout 30m ./test/bench/
//	go build -o /tmp/replay ./cmd/replay && time /tmp/replay list --dir /tmp/i1m --limit 50
func TestSeedInstancesStore(t *testing.T) {
	dir := os.Getenv("RUNLOG_BENCH_SEED_INSTANCES_DIR")
	if dir == "" {
		t.Skip("set RUNLOG_BENCH_SEED_INSTANCES_DIR to a new directory to write the one-million-instance store")
	}
	e := seedEnv(t, dir)
	const instances = 1_000_000
	e.bulkCreate(t, "i", instances)
	t.Logf("%d instances written to %s", instances, dir)
}

// TestSeedVisibilityStore writes the store the visibility index is
// measured on (BENCHMARKS.md §5.16): $RUNLOG_BENCH_INSTANCES instances
// (default 1,000,000) of which 1 % failed (a PrepareRun commit and a
// workflow.failed commit; the others one PrepareRun commit), into the
// embedded store directory $RUNLOG_BENCH_SEED_VISIBILITY_DIR. Skipped
// unless the variable is set:
//
//	RUNLOG_BENCH_SEED_VISIBILITY_DIR=/tmp/vis1m go test -run TestSeedVisibilityStore -timeout 30m ./test/bench/
//	go build -o /tmp/replay ./cmd/replay
//	time /tmp/replay list --dir /tmp/vis1m --limit 50 --no-index           # today's unfiltered list
//	time /tmp/replay list --dir /tmp/vis1m --status failed --limit 50      # builds the index, then answers
//	time /tmp/replay list --dir /tmp/vis1m --status failed --limit 50      # the index built
func TestSeedVisibilityStore(t *testing.T) {
	dir := os.Getenv("RUNLOG_BENCH_SEED_VISIBILITY_DIR")
	if dir == "" {
		t.Skip("set RUNLOG_BENCH_SEED_VISIBILITY_DIR to a new directory to write the one-million-instance store")
	}
	instances := 1_000_000
	if v := os.Getenv("RUNLOG_BENCH_INSTANCES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 {
			t.Fatalf("RUNLOG_BENCH_INSTANCES=%q: want a number ≥ 100", v)
		}
		instances = n
	}
	e := seedEnv(t, dir)
	gen := events.NewIDSource(nil, nil)
	for i := range instances {
		id := "i" + strconv.Itoa(i)
		if i%100 == 99 {
			e.publishBulk(t, id, genHistoryEnding(t, gen, id, 2, true))
		} else {
			e.publishBulk(t, id, genHistory(t, gen, id, 1))
		}
		if i%100_000 == 99_999 {
			e.flush(t)
		}
	}
	e.flush(t)
	t.Logf("%d instances (%d failed) written to %s", instances, instances/100, dir)
}

// ---- Server memory per idle instance ----------------------------------

// TestServerMemoryPerIdleInstance creates 100,000 instances of one commit
// each (the PrepareRun commit, Msg-Id and headers included) on an
// embedded server in this process, and reports the server's memory per
// instance (Go heap in use after a full GC, and process RSS) right after,
// once the block caches have expired (15 s) and once the duplicate window
// (2 min) and the per-block subject state have expired (about 2.5 min).
// The client holds no projection (no lifecycle.Store cache is used).
// Skipped unless RUNLOG_BENCH_SCALE=1; it takes about 3 minutes.
func TestServerMemoryPerIdleInstance(t *testing.T) {
	scale(t)
	e := newEnv(t, syncDefault)
	type point struct {
		label     string
		instances int
		heap, rss uint64
	}
	measure := func(label string, n int) point {
		debug.FreeOSMemory()
		return point{label, n, heapInUse(), rss(t)}
	}
	base := measure("empty stream", 0)
	points := []point{base}
	created := 0
	for _, n := range []int{1000, 10_000, 100_000} {
		e.bulkCreate(t, "m"+strconv.Itoa(n)+"-", n-created)
		created = n
		points = append(points, measure("just created", n))
	}
	time.Sleep(15 * time.Second)
	points = append(points, measure("idle 15 s (block caches expired)", created))
	time.Sleep(135 * time.Second)
	points = append(points, measure("idle 2.5 min (duplicate window and subject state expired)", created))
	info, err := e.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stream: %d messages, %d subjects, %d bytes", info.State.Msgs, info.State.NumSubjects, info.State.Bytes)
	for _, p := range points {
		per := func(v uint64) string {
			if p.instances == 0 {
				return "-"
			}
			return fmt.Sprintf("%.0f B", (float64(v)-float64(base.heap))/float64(p.instances))
		}
		perRSS := "-"
		if p.instances > 0 {
			perRSS = fmt.Sprintf("%.0f B", (float64(p.rss)-float64(base.rss))/float64(p.instances))
		}
		t.Logf("%-60s instances=%-7d heap=%6.1f MiB (%s/instance)  rss=%6.1f MiB (%s/instance)",
			p.label, p.instances, float64(p.heap)/(1<<20), per(p.heap), float64(p.rss)/(1<<20), perRSS)
	}

}

// rss returns the process's resident set size from /proc/self/status.
func rss(tb testing.TB) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			kb, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

// ---- the runnable index rebuilt from the log ----------------------------

// BenchmarkRunnableRebuild100k rebuilds the runnable-task index
// (jetstream.RunnableIndex.Rebuild, `replay reindex`) of a store of
// 10,000 instances of 10 events (100,000 events), every instance read
// cold, and reports events/s; issue 13 asks for the time at 1 M events
// (BenchmarkRunnableRebuild1M).
func BenchmarkRunnableRebuild100k(b *testing.B) { benchRebuild(b, 10_000) }

// BenchmarkRunnableRebuild1M is BenchmarkRunnableRebuild100k at 100,000
// instances (1,000,000 events). Skipped unless RUNLOG_BENCH_SCALE=1.
func BenchmarkRunnableRebuild1M(b *testing.B) {
	scale(b)
	benchRebuild(b, 100_000)
}

func benchRebuild(b *testing.B, instances int) {
	const perInstance = 10
	e := historiesEnv(b, "r", instances, perInstance)
	store, err := lifecycle.New(e.log, lifecycle.Config{CacheSize: -1, Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	x := e.log.RunnableIndex()
	ctx := context.Background()
	for b.Loop() {
		if err := x.Rebuild(ctx, store); err != nil {
			b.Fatal(err)
		}
	}
	n := 0
	for _, err := range x.Entries(ctx) {
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	if n != instances {
		b.Fatalf("%d entries after the rebuild, want %d (every instance is at a task)", n, instances)
	}
	b.ReportMetric(float64(instances*perInstance)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
