package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// ---- Fresh create ------------------------------------------------------

// BenchmarkRawPublishCAS: one publish of runlog's create message (same
// payload and headers, fresh Nats-Msg-Id) with expected last subject
// sequence 0 on a new subject: the floor of a fresh create.
func BenchmarkRawPublishCAS(b *testing.B) { benchRawPublishCAS(b, syncDefault) }

// BenchmarkRawPublishCASSyncAlways is BenchmarkRawPublishCAS on a server
// that fsyncs before every acknowledgement.
func BenchmarkRawPublishCASSyncAlways(b *testing.B) { benchRawPublishCAS(b, syncAlways) }

func benchRawPublishCAS(b *testing.B, sync time.Duration) {
	e := newEnv(b, sync)
	t := e.template(b)
	g := ids{prefix: "raw-"}
	ctx := context.Background()
	cpu := startCPU()
	for b.Loop() {
		if _, err := e.publishCAS(ctx, t, e.log.SubjectFor(g.next())); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkRawPublishCASBare is BenchmarkRawPublishCAS with the same
// payload but no headers besides the sequence check (no Msg-Id, no
// Runlog-* headers), like a KV Create: what the headers cost.
func BenchmarkRawPublishCASBare(b *testing.B) {
	e := newEnv(b, syncDefault)
	t := e.template(b)
	g := ids{prefix: "bare-"}
	ctx := context.Background()
	cpu := startCPU()
	for b.Loop() {
		m := &nats.Msg{Subject: e.log.SubjectFor(g.next()), Data: t.data}
		if _, err := e.js.PublishMsg(ctx, m, natsjs.WithExpectLastSequencePerSubject(0)); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkRawPublishCASMsgID is BenchmarkRawPublishCASBare plus a
// Nats-Msg-Id (de-duplication), without the Runlog-* headers.
func BenchmarkRawPublishCASMsgID(b *testing.B) {
	e := newEnv(b, syncDefault)
	t := e.template(b)
	g := ids{prefix: "msgid-"}
	ctx := context.Background()
	cpu := startCPU()
	for b.Loop() {
		m := &nats.Msg{Subject: e.log.SubjectFor(g.next()), Data: t.data}
		if _, err := e.js.PublishMsg(ctx, m, natsjs.WithMsgID(ulid.Make().String()), natsjs.WithExpectLastSequencePerSubject(0)); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkKVCreate: JetStream KV Create of a new key whose value is a
// whole snapshot (the JSON of the snapshot runlog creates), in a file
// bucket on the same server.
func BenchmarkKVCreate(b *testing.B) {
	e := newEnv(b, syncDefault)
	ctx := context.Background()
	kv, err := e.js.CreateKeyValue(ctx, natsjs.KeyValueConfig{Bucket: "bench", Storage: natsjs.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	snap := workflow.NewSnapshot("kv-0000000", defHash, input, time.Now())
	snap.UpdatePosition(workflow.AtTaskPosition(taskID(0)), time.Now())
	value, err := json.Marshal(snap)
	if err != nil {
		b.Fatal(err)
	}
	g := ids{prefix: "kv-"}
	cpu := startCPU()
	for b.Loop() {
		if _, err := kv.Create(ctx, g.next(), value); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(len(value)), "value-B")
}

// BenchmarkPrepareRunFresh: PrepareRun with Fail on a new id.
func BenchmarkPrepareRunFresh(b *testing.B) { benchPrepareRunFresh(b, syncDefault) }

// BenchmarkPrepareRunFreshSyncAlways is BenchmarkPrepareRunFresh on a
// server that fsyncs before every acknowledgement.
func BenchmarkPrepareRunFreshSyncAlways(b *testing.B) { benchPrepareRunFresh(b, syncAlways) }

func benchPrepareRunFresh(b *testing.B, sync time.Duration) {
	e := newEnv(b, sync)
	freshCreates(b, e.store(b, 0), "fresh-")
}

// freshCreates is the loop of the PrepareRunFresh benchmarks: one
// PrepareRun with Fail on a new id per op, on st.
func freshCreates(b *testing.B, st *lifecycle.Store, prefix string) {
	g := ids{prefix: prefix}
	ctx := context.Background()
	cpu := startCPU()
	for b.Loop() {
		p, err := st.PrepareRun(ctx, prepareReq(g.next(), workflow.Fail))
		if err != nil || p.Outcome != lifecycle.Created {
			b.Fatal(p.Outcome, err)
		}
	}
	cpu.report(b)
}

// ---- Existing instance -------------------------------------------------

// BenchmarkRawGetLast: read the last message of an existing subject
// (Stream.GetLastMsgForSubject: a direct get, the stream allows them).
func BenchmarkRawGetLast(b *testing.B) {
	e := newEnv(b, syncDefault)
	ctx := context.Background()
	if _, err := e.store(b, 0).PrepareRun(ctx, prepareReq("existing", workflow.Fail)); err != nil {
		b.Fatal(err)
	}
	subj := e.log.SubjectFor("existing")
	cpu := startCPU()
	for b.Loop() {
		if _, err := e.stream.GetLastMsgForSubject(ctx, subj); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkPrepareRunUseExisting: PrepareRun with UseExisting on an
// existing instance, through the store that created it (its projection
// is cached; the call confirms it with one read).
func BenchmarkPrepareRunUseExisting(b *testing.B) {
	e := newEnv(b, syncDefault)
	st := e.store(b, 0)
	ctx := context.Background()
	if _, err := st.PrepareRun(ctx, prepareReq("existing", workflow.Fail)); err != nil {
		b.Fatal(err)
	}
	req := prepareReq("existing", workflow.UseExisting)
	cpu := startCPU()
	for b.Loop() {
		p, err := st.PrepareRun(ctx, req)
		if err != nil || p.Outcome != lifecycle.UsedExisting {
			b.Fatal(p.Outcome, err)
		}
	}
	cpu.report(b)
}

// BenchmarkPrepareRunUseExistingUncached: the same, through a store that
// has never seen the instance (no projection cache): another process, or
// an instance evicted from the cache.
func BenchmarkPrepareRunUseExistingUncached(b *testing.B) {
	e := newEnv(b, syncDefault)
	ctx := context.Background()
	if _, err := e.store(b, 0).PrepareRun(ctx, prepareReq("existing", workflow.Fail)); err != nil {
		b.Fatal(err)
	}
	st := e.store(b, -1)
	req := prepareReq("existing", workflow.UseExisting)
	cpu := startCPU()
	for b.Loop() {
		p, err := st.PrepareRun(ctx, req)
		if err != nil || p.Outcome != lifecycle.UsedExisting {
			b.Fatal(p.Outcome, err)
		}
	}
	cpu.report(b)
}

// signalled creates n instances prefix0.. with a pending cancel request,
// through st.
func signalled(b *testing.B, st *lifecycle.Store, prefix string, n int) []string {
	ctx := context.Background()
	out := make([]string, n)
	for i := range out {
		id := prefix + strconv.Itoa(i)
		if _, err := st.PrepareRun(ctx, prepareReq(id, workflow.Fail)); err != nil {
			b.Fatal(err)
		}
		if err := st.StoreSignal(ctx, id, workflow.Cancel, workflow.SignalRequest{Reason: "bench", RequestedBy: "bench"}); err != nil {
			b.Fatal(err)
		}
		out[i] = id
	}
	return out
}

// BenchmarkPrepareRunTerminateExisting: PrepareRun with TerminateExisting
// on an existing instance with a pending cancel signal (one commit: the
// snapshot deleted, the signal cleared, a new run created), through the
// store that created it. Instances are prepared 256 at a time with the
// timer stopped.
func BenchmarkPrepareRunTerminateExisting(b *testing.B) {
	benchTerminate(b, false)
}

// BenchmarkPrepareRunTerminateExistingUncached: the same through a store
// that has never seen the instances.
func BenchmarkPrepareRunTerminateExistingUncached(b *testing.B) {
	benchTerminate(b, true)
}

func benchTerminate(b *testing.B, uncached bool) {
	e := newEnv(b, syncDefault)
	writer := e.store(b, 0)
	st := writer
	if uncached {
		st = e.store(b, -1)
	}
	ctx := context.Background()
	var pool []string
	chunk := 0
	cpu := startCPU()
	for b.Loop() {
		if len(pool) == 0 {
			b.StopTimer()
			cpu.stop()
			pool = signalled(b, writer, "t"+strconv.Itoa(chunk)+"-", 256)
			chunk++
			cpu.resume()
			b.StartTimer()
		}
		p, err := st.PrepareRun(ctx, prepareReq(pool[0], workflow.TerminateExisting))
		if err != nil || p.Outcome != lifecycle.Replaced {
			b.Fatal(p.Outcome, err)
		}
		pool = pool[1:]
	}
	cpu.report(b)
}

// ---- Checkpoint --------------------------------------------------------

// BenchmarkCheckpoint: SaveSnapshot of a running instance after one task
// completed with a 256-byte output and the position moved to the next
// task, by the runtime holding the instance (warm cache). Runs 16 tasks
// per instance, 64 instances prepared at a time with the timer stopped.
// Reports the history bytes each checkpoint adds to the stream (hist-B/op:
// the server's account, subject and headers included), the commit payload
// (data-B/op), what changed (changed-B/op: the output, the completed
// task's id, the new position's task id) and the budget of the target
// 1.2 × changed + 512 (budget-B/op).
func BenchmarkCheckpoint(b *testing.B) { benchCheckpoint(b, outputSize) }

// BenchmarkCheckpointBytes is BenchmarkCheckpoint for other output sizes,
// for the history-bytes target.
func BenchmarkCheckpointBytes(b *testing.B) {
	for _, size := range []int{0, 64, 1024, 16384} {
		b.Run("output="+strconv.Itoa(size), func(b *testing.B) { benchCheckpoint(b, size) })
	}
}

// BenchmarkCheckpointS2 is BenchmarkCheckpoint on a stream with S2
// compression (jetstream.Config.Compression): the append cost of
// compression (BENCHMARKS.md §5.9).
func BenchmarkCheckpointS2(b *testing.B) {
	benchCheckpointOn(b, outputSize, newEnvConfig(b, syncDefault, jetstream.Config{Logger: discard, Compression: natsjs.S2Compression}))
}

func benchCheckpoint(b *testing.B, size int) { benchCheckpointOn(b, size, newEnv(b, syncDefault)) }

func benchCheckpointOn(b *testing.B, size int, e *env) {
	st := e.store(b, 0)
	ctx := context.Background()
	output := bytes.Repeat([]byte("r"), size)
	const tasks, instances = 16, 64
	var pool []*runner
	var done []*runner
	chunk, n := 0, 0
	var histBytes, mark uint64
	cpu := startCPU()
	for b.Loop() {
		if len(pool) == 0 {
			b.StopTimer()
			cpu.stop()
			if chunk > 0 {
				histBytes += e.streamBytes(b) - mark
			}
			pool = runners(b, st, "c"+strconv.Itoa(chunk)+"-", instances)
			chunk++
			mark = e.streamBytes(b)
			cpu.resume()
			b.StartTimer()
		}
		r := pool[0]
		if err := r.checkpoint(ctx, st, output); err != nil {
			b.Fatal(err)
		}
		n++
		if r.next == tasks {
			pool = pool[1:]
			if len(done) < 4 {
				done = append(done, r)
			}
		}
	}
	cpu.report(b)
	b.StopTimer()
	histBytes += e.streamBytes(b) - mark
	// Payload bytes of the checkpoints of a few finished instances.
	data, cps := 0, 0
	for _, r := range done {
		first := true
		for m, err := range e.log.Read(ctx, r.id, 0) {
			if err != nil {
				b.Fatal(err)
			}
			if first { // the create
				first = false
				continue
			}
			data += len(m.Data)
			cps++
		}
	}
	changed := float64(size + 32 + 32)
	b.ReportMetric(float64(histBytes)/float64(n), "hist-B/op")
	if cps > 0 {
		b.ReportMetric(float64(data)/float64(cps), "data-B/op")
	}
	b.ReportMetric(changed, "changed-B/op")
	b.ReportMetric(1.2*changed+512, "budget-B/op")
}

// runners creates n instances in progress at task 0, through st.
func runners(b *testing.B, st *lifecycle.Store, prefix string, n int) []*runner {
	ctx := context.Background()
	out := make([]*runner, n)
	for i := range out {
		id := prefix + strconv.Itoa(i)
		p, err := st.PrepareRun(ctx, prepareReq(id, workflow.Fail))
		if err != nil {
			b.Fatal(err)
		}
		out[i] = &runner{id: id, snap: p.Snapshot, rev: p.Revision}
	}
	return out
}

// ---- Parallel fresh creates --------------------------------------------

// BenchmarkRawPublishCASParallel is BenchmarkRawPublishCAS from 64
// goroutines, distinct subjects, one connection.
func BenchmarkRawPublishCASParallel(b *testing.B) {
	parallelPublishes(b, newEnv(b, syncDefault), parallel, "rawp-")
}

// parallelPublishes measures raw CAS publishes of a create's bytes
// (distinct subjects, each on its instance's partition) from writers
// goroutines: the floor of parallelCreates.
func parallelPublishes(b *testing.B, e *env, writers int, prefix string) {
	t := e.template(b)
	g := ids{prefix: prefix}
	ctx := context.Background()
	b.SetParallelism(writersParallelism(writers))
	b.ResetTimer()
	cpu := startCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.publishCAS(ctx, t, e.log.SubjectFor(g.next())); err != nil {
				b.Error(err)
				return
			}
		}
	})
	cpu.report(b)
}

// BenchmarkPrepareRunFreshParallel is BenchmarkPrepareRunFresh from 64
// goroutines, distinct ids, one store.
func BenchmarkPrepareRunFreshParallel(b *testing.B) {
	parallelCreates(b, newEnv(b, syncDefault), parallel, "freshp-")
}

// parallelCreates measures fresh PrepareRuns (distinct ids, Fail) from
// writers goroutines through one lifecycle store on e's log.
func parallelCreates(b *testing.B, e *env, writers int, prefix string) {
	st := e.store(b, 0)
	g := ids{prefix: prefix}
	ctx := context.Background()
	b.SetParallelism(writersParallelism(writers))
	b.ResetTimer()
	cpu := startCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if p, err := st.PrepareRun(ctx, prepareReq(g.next(), workflow.Fail)); err != nil || p.Outcome != lifecycle.Created {
				b.Error(p.Outcome, err)
				return
			}
		}
	})
	cpu.report(b)
}

// ---- Long histories ----------------------------------------------------

const longEvents = 10_000

// BenchmarkRawRead10k reads the 10,000 messages of one instance raw, with
// the mechanism jetstream.Log.Read uses: direct batch gets of 256
// (jetstreamext.GetBatch with the instance's subject), paging on
// Nats-Num-Pending. No decoding.
func BenchmarkRawRead10k(b *testing.B) {
	e := newEnv(b, syncDefault)
	longHistory(b, e.store(b, 0), "long", longEvents)
	ctx := context.Background()
	subj := e.log.SubjectFor("long")
	var size int
	cpu := startCPU()
	for b.Loop() {
		n, sz, err := e.rawRead(ctx, subj, 0)
		if err != nil || n != longEvents {
			b.Fatal(n, err)
		}
		size = sz
	}
	cpu.report(b)
	b.ReportMetric(float64(size)/longEvents, "msg-B")
}

// BenchmarkRawRead10kBare is BenchmarkRawRead10k over the same payloads
// stored without any header: what the per-message headers cost a read.
func BenchmarkRawRead10kBare(b *testing.B) {
	e := newEnv(b, syncDefault)
	msgs := genHistory(b, events.NewIDSource(nil, nil), "bare", longEvents)
	subj := e.log.SubjectFor("bare")
	for _, m := range msgs {
		if _, err := e.js.PublishMsgAsync(&nats.Msg{Subject: subj, Data: m.Data}); err != nil {
			b.Fatal(err)
		}
	}
	e.flush(b)
	ctx := context.Background()
	cpu := startCPU()
	for b.Loop() {
		if n, _, err := e.rawRead(ctx, subj, 0); err != nil || n != longEvents {
			b.Fatal(n, err)
		}
	}
	cpu.report(b)
}

// BenchmarkLoadCold10k: Store.Load of an instance of 10,000 events with
// nothing cached (a store with CacheSize -1): read, decode, verify the
// hash chain, fold, copy out.
func BenchmarkLoadCold10k(b *testing.B) {
	e := newEnv(b, syncDefault)
	longHistory(b, e.store(b, 0), "long", longEvents)
	st := e.store(b, -1)
	ctx := context.Background()
	cpu := startCPU()
	for b.Loop() {
		s, err := st.Load(ctx, "long")
		if err != nil || s.Events != longEvents {
			b.Fatal(s.Events, err)
		}
	}
	cpu.report(b)
}

// memHistory returns the messages of a 10,000-event instance written
// through a store on an in-memory log.
func memHistory(b *testing.B) (string, []events.Message) {
	log := memlog.New(nil)
	st, err := lifecycle.New(log, lifecycle.Config{Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	longHistory(b, st, "long", longEvents)
	var msgs []events.Message
	for m, err := range log.Read(context.Background(), "long", 0) {
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	return "long", msgs
}

// BenchmarkFold folds 10,000 decoded events (one per commit: a create and
// checkpoints) into a fresh projection; reports events/s.
func BenchmarkFold(b *testing.B) {
	id, msgs := memHistory(b)
	recs := decodeAll(b, id, msgs)
	evs := 0
	for _, r := range recs {
		evs += len(r.Commit.Events)
	}
	cpu := startCPU()
	for b.Loop() {
		s := projection.New(id)
		for _, r := range recs {
			if err := s.Apply(r); err != nil {
				b.Fatal(err)
			}
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(evs)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecode10k decodes the 10,000 messages of BenchmarkFold's
// history (events.Decode), to show where a cold load spends its time.
func BenchmarkDecode10k(b *testing.B) {
	id, msgs := memHistory(b)
	cpu := startCPU()
	for b.Loop() {
		for _, m := range msgs {
			if _, err := events.Decode(m, id); err != nil {
				b.Fatal(err)
			}
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(len(msgs))*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkCodec measures events.Commit.Encode and events.Decode of the
// commit of a fresh create and of a checkpoint (256-byte output), the
// CPU every write (encode, then decode of its own commit) and every read
// pays per commit.
func BenchmarkCodec(b *testing.B) {
	id, msgs := memHistory(b)
	recs := decodeAll(b, id, msgs[:2])
	for i, name := range []string{"create", "checkpoint"} {
		c, m := recs[i].Commit, msgs[i]
		b.Run(name+"/Encode", func(b *testing.B) {
			cpu := startCPU()
			for b.Loop() {
				if _, err := c.Encode(); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
		})
		b.Run(name+"/Decode", func(b *testing.B) {
			cpu := startCPU()
			for b.Loop() {
				if _, err := events.Decode(m, id); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
		})
	}
}

// ---- Durable parallel creates, by partitions ----------------------------

// durableWriters is the number of goroutines of the ...ParallelDurable
// benchmarks.
const durableWriters = 16

// partitionCounts are the partition counts the ...ParallelDurable
// benchmarks compare.
var partitionCounts = []int{1, 4}

// BenchmarkRawPublishCASParallelDurable is the raw floor of
// BenchmarkPrepareRunFreshParallelDurable: the same publishes (a fresh
// Msg-Id, an expected last subject sequence of 0) from 16 goroutines to a
// server that fsyncs before every acknowledgement, on a store of 1 and
// of 4 partitions (each publish on its instance's partition).
func BenchmarkRawPublishCASParallelDurable(b *testing.B) {
	for _, k := range partitionCounts {
		b.Run(fmt.Sprintf("partitions=%d", k), func(b *testing.B) {
			e := openEnv(b, b.TempDir(), syncAlways, jetstream.Config{Logger: discard, Partitions: k})
			parallelPublishes(b, e, durableWriters, "rawd-")
		})
	}
}

// BenchmarkPrepareRunFreshParallelDurable is BenchmarkPrepareRunFresh
// from 16 goroutines, distinct ids, one store, on a server that fsyncs
// before every acknowledgement: durable write throughput, on a store of 1
// and of 4 partitions.
func BenchmarkPrepareRunFreshParallelDurable(b *testing.B) {
	for _, k := range partitionCounts {
		b.Run(fmt.Sprintf("partitions=%d", k), func(b *testing.B) {
			e := openEnv(b, b.TempDir(), syncAlways, jetstream.Config{Logger: discard, Partitions: k})
			parallelCreates(b, e, durableWriters, "freshd-")
		})
	}
}

// groupCommitSettings are the Config.GroupCommit values the group-commit
// benchmarks compare (0: off): appends queue for a batch once this many
// publishes of the partition are in flight.
var groupCommitSettings = []int{0, 4, 32}

// BenchmarkGroupCommitDurable is BenchmarkPrepareRunFreshParallelDurable
// at 16, 64 and 128 writers, on 1 and 4 partitions, with the group commit
// off and on (Config.GroupCommit = 4 and 32): where gathering appends
// into atomic batches pays.
func BenchmarkGroupCommitDurable(b *testing.B) {
	for _, writers := range []int{16, 64, 128} {
		for _, k := range partitionCounts {
			for _, group := range groupCommitSettings {
				name := fmt.Sprintf("writers=%d/partitions=%d/group=off", writers, k)
				if group > 0 {
					name = fmt.Sprintf("writers=%d/partitions=%d/group=%d", writers, k, group)
				}
				b.Run(name, func(b *testing.B) {
					e := openEnv(b, b.TempDir(), syncAlways, jetstream.Config{Logger: discard, Partitions: k, GroupCommit: group})
					parallelCreates(b, e, writers, "group-")
				})
			}
		}
	}
}
