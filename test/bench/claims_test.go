package bench

import (
	"bytes"
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// ---- Task claims (issue 12, BENCHMARKS.md §5.12) -----------------------

const claimTTL = 30 * time.Second

// claimedStore is a store with a lease store on e's log.
func (e *env) claimedStore(tb testing.TB) *lifecycle.Store {
	tb.Helper()
	st, err := lifecycle.New(e.log, lifecycle.Config{Logger: discard, Leases: e.log.Leases()})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// claimPool hands out runners, a fresh chunk of 64 instances when the
// last is used up (16 tasks each), outside the timer and the CPU meter
// (cpu, when set). setup, when set, is called for each runner of a new
// chunk there too.
type claimPool struct {
	b     *testing.B
	st    *lifecycle.Store
	cpu   *cpuMeter
	setup func(*runner)
	pool  []*runner
	chunk int
}

func (p *claimPool) next() *runner {
	if len(p.pool) == 0 {
		p.b.StopTimer()
		if p.cpu != nil {
			p.cpu.stop()
		}
		p.pool = runners(p.b, p.st, "k"+strconv.Itoa(p.chunk)+"-", 64)
		p.chunk++
		if p.setup != nil {
			for _, r := range p.pool {
				p.setup(r)
			}
		}
		if p.cpu != nil {
			p.cpu.resume()
		}
		p.b.StartTimer()
	}
	r := p.pool[0]
	if r.next == 15 {
		p.pool = p.pool[1:]
	}
	return r
}

// BenchmarkClaimedTask is what a worker pays per task: claim, one
// heartbeat, and a fenced checkpoint that completes the task and releases
// the claim in the same commit. Its floor is BenchmarkRawLeasedTask.
// hist-B/op is the audit stream's growth per task (the claim commit and
// the checkpoint with its release), to compare with BenchmarkCheckpoint's;
// heartbeats add none of it (they live in the lease bucket).
func BenchmarkClaimedTask(b *testing.B) {
	e := newEnv(b, syncDefault)
	st := e.claimedStore(b)
	ctx := context.Background()
	out := bytes.Repeat([]byte("r"), outputSize)
	cpu := startCPU()
	p := &claimPool{b: b, st: st, cpu: cpu}
	task := func(r *runner) {
		task := r.task(r.next)
		c, err := st.ClaimTask(ctx, r.id, task, "worker-1", claimTTL)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.ExtendTaskClaim(ctx, r.id, task, "worker-1", claimTTL); err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		r.snap.MarkTaskCompleted(task, out, now)
		r.next++
		r.snap.UpdatePosition(workflow.AtTaskPosition(r.task(r.next)), now)
		if r.rev, err = st.SaveSnapshot(ctx, r.snap, r.rev, lifecycle.WithClaim(c, true)); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		task(p.next())
	}
	cpu.report(b)
	// The history bytes of 15 tasks of one fresh instance, outside the
	// timing.
	r := runners(b, st, "hist-", 1)[0]
	mark := e.streamBytes(b)
	for range 15 {
		task(r)
	}
	b.ReportMetric(float64(e.streamBytes(b)-mark)/15, "hist-B/op")
}

// rawLease is the raw floor's lease bucket: a KV bucket with per-key
// TTLs, as jetstream.Log.Leases makes it.
func rawLease(b *testing.B, e *env) natsjs.KeyValue {
	b.Helper()
	kv, err := e.js.CreateOrUpdateKeyValue(context.Background(), natsjs.KeyValueConfig{Bucket: "RAW_LEASES", History: 1, LimitMarkerTTL: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	return kv
}

// rawRenew renews a lease key by hand: a publish with a new TTL and the
// key's revision as the expected last sequence.
func rawRenew(ctx context.Context, e *env, key string, rev uint64) (uint64, error) {
	m := nats.NewMsg("$KV.RAW_LEASES." + key)
	m.Data = []byte("worker-1")
	m.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	m.Header.Set("Nats-TTL", "30")
	ack, err := e.js.PublishMsg(ctx, m)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// BenchmarkRawLeasedTask is BenchmarkClaimedTask done by hand on raw
// JetStream: a KV create of the lease key with a TTL, a renewal (a
// publish with a new TTL, checked against the key's revision), a CAS
// publish of the checkpoint's bytes, and a KV delete.
func BenchmarkRawLeasedTask(b *testing.B) { benchRawTask(b, false) }

// BenchmarkRawClaimedTask is the floor of the design BenchmarkClaimedTask
// runs (claims and releases are commits in the instance's history, the
// lease's liveness a KV key with a TTL), done by hand on raw JetStream:
// BenchmarkRawLeasedTask plus the claim's own commit — a CAS publish of
// the template's bytes before the renewal — with the lease's delete sent
// and not waited for, as runlog sends it. Five publishes for the server,
// four waited for; against BenchmarkRawLeasedTask it shows what the
// claim's commit costs before any of runlog's own work.
func BenchmarkRawClaimedTask(b *testing.B) { benchRawTask(b, true) }

// benchRawTask is BenchmarkRawLeasedTask, or with claimed
// BenchmarkRawClaimedTask.
func benchRawTask(b *testing.B, claimed bool) {
	e := newEnv(b, syncDefault)
	t := e.template(b)
	kv := rawLease(b, e)
	ctx := context.Background()
	g := ids{prefix: "rawlease-"}
	cpu := startCPU()
	for b.Loop() {
		id := g.next()
		key := jetstream.EncodeID(id) + "." + taskID(0).String()
		rev, err := kv.Create(ctx, key, []byte("worker-1"), natsjs.KeyTTL(claimTTL))
		if err != nil {
			b.Fatal(err)
		}
		subj := e.log.SubjectFor(id)
		var claim uint64 // the claim's commit
		if claimed {
			if claim, err = e.publishCAS(ctx, t, subj); err != nil {
				b.Fatal(err)
			}
		}
		if rev, err = rawRenew(ctx, e, key, rev); err != nil {
			b.Fatal(err)
		}
		if _, err := e.publishCASAfter(ctx, t, subj, claim); err != nil {
			b.Fatal(err)
		}
		if !claimed {
			if err := kv.Delete(ctx, key, natsjs.LastRevision(rev)); err != nil {
				b.Fatal(err)
			}
			continue
		}
		del := nats.NewMsg("$KV.RAW_LEASES." + key)
		del.Header.Set("KV-Operation", "DEL")
		del.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
		if _, err := e.js.PublishMsgAsync(del); err != nil {
			b.Fatal(err)
		}
	}
	<-e.js.PublishAsyncComplete()
	cpu.report(b)
}

// BenchmarkClaimExtend is one heartbeat (ExtendTaskClaim); its floor is
// BenchmarkRawKVUpdate.
func BenchmarkClaimExtend(b *testing.B) {
	e := newEnv(b, syncDefault)
	st := e.claimedStore(b)
	ctx := context.Background()
	r := runners(b, st, "extend-", 1)[0]
	if _, err := st.ClaimTask(ctx, r.id, r.task(0), "worker-1", claimTTL); err != nil {
		b.Fatal(err)
	}
	cpu := startCPU()
	for b.Loop() {
		if err := st.ExtendTaskClaim(ctx, r.id, r.task(0), "worker-1", claimTTL); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkRawKVUpdate is a lease renewal by hand: a publish with a new
// TTL checked against the key's revision, which the renewer remembers
// from its last write (one request, as a heartbeat on a cached projection
// is). BenchmarkRawKVGetUpdate is the same with a get of the key first.
func BenchmarkRawKVUpdate(b *testing.B) { benchRawKVUpdate(b, false) }

// BenchmarkRawKVGetUpdate is BenchmarkRawKVUpdate reading the key's
// revision before each renewal (two requests).
func BenchmarkRawKVGetUpdate(b *testing.B) { benchRawKVUpdate(b, true) }

func benchRawKVUpdate(b *testing.B, get bool) {
	e := newEnv(b, syncDefault)
	kv := rawLease(b, e)
	ctx := context.Background()
	const key = "lease"
	rev, err := kv.Create(ctx, key, []byte("worker-1"), natsjs.KeyTTL(claimTTL))
	if err != nil {
		b.Fatal(err)
	}
	cpu := startCPU()
	for b.Loop() {
		if get {
			en, err := kv.Get(ctx, key)
			if err != nil {
				b.Fatal(err)
			}
			rev = en.Revision()
		}
		if rev, err = rawRenew(ctx, e, key, rev); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkCheckpointFenced is BenchmarkCheckpoint with each checkpoint
// fenced by a claim held on the task (WithClaim, not releasing): the lease
// read and the history check on top of the checkpoint.
func BenchmarkCheckpointFenced(b *testing.B) {
	e := newEnv(b, syncDefault)
	st := e.claimedStore(b)
	ctx := context.Background()
	out := bytes.Repeat([]byte("r"), outputSize)
	claims := map[string]lifecycle.TaskClaim{}
	cpu := startCPU()
	// One claim per instance, on its first task, taken with the chunk's
	// set-up: it stays the task's claim while later tasks are
	// checkpointed (the fence checks the claim, not the task position).
	// Taken per instance instead, the timer stopped and started around
	// each (b.StopTimer and StartTimer read the memory statistics, which
	// stops the world), the checkpoints measured 20-30 % slower.
	p := &claimPool{b: b, st: st, cpu: cpu, setup: func(r *runner) {
		c, err := st.ClaimTask(ctx, r.id, r.task(r.next), "worker-1", claimTTL)
		if err != nil {
			b.Fatal(err)
		}
		claims[r.id] = c
	}}
	for b.Loop() {
		r := p.next()
		task := r.task(r.next)
		now := time.Now()
		r.snap.MarkTaskCompleted(task, out, now)
		r.next++
		r.snap.UpdatePosition(workflow.AtTaskPosition(r.task(r.next)), now)
		var err error
		if r.rev, err = st.SaveSnapshot(ctx, r.snap, r.rev, lifecycle.WithClaim(claims[r.id], false)); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkClaimContended: 32 workers, each with a store of its own (on
// the one connection of the embedded server; test/workers races them on
// their own connections), race for the same tasks, a task at a time, all
// of them at once; claims-granted/s is the rate of tasks handed out,
// attempts/grant how many claim calls one grant costs.
func BenchmarkClaimContended(b *testing.B) {
	e := newEnv(b, syncDefault)
	ctx := context.Background()
	const workers = 32
	stores := make([]*lifecycle.Store, workers)
	for i := range stores {
		stores[i] = e.claimedStore(b)
	}
	owner := e.claimedStore(b)
	var attempts atomic.Int64
	n := 0
	for b.Loop() {
		b.StopTimer()
		r := runners(b, owner, "race-"+strconv.Itoa(n)+"-", 1)[0]
		n++
		b.StartTimer()
		done := make(chan struct{}, workers)
		var granted atomic.Int64
		for i := range workers {
			go func() {
				attempts.Add(1)
				if _, err := stores[i].ClaimTask(ctx, r.id, r.task(0), "worker-"+strconv.Itoa(i), claimTTL); err == nil {
					granted.Add(1)
				}
				done <- struct{}{}
			}()
		}
		for range workers {
			<-done
		}
		if granted.Load() != 1 {
			b.Fatalf("%d grants for one task", granted.Load())
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "claims-granted/s")
	b.ReportMetric(float64(attempts.Load())/float64(n), "attempts/grant")
}
