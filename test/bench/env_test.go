package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// Server durability settings. Every benchmark without the SyncAlways
// suffix runs with the server's default (fsync every 2 minutes); the
// SyncAlways ones fsync before every acknowledgement. Raw and runlog
// benchmarks of a pair always use the same one.
const (
	syncDefault = 2 * time.Minute
	syncAlways  = 0
)

// Sizes of the workload.
const (
	inputSize  = 256 // workflow input, bytes
	outputSize = 256 // task output per checkpoint, bytes
	parallel   = 64  // goroutines of the ...Parallel benchmarks
)

var (
	discard = slog.New(slog.DiscardHandler)
	defHash = workflow.DefinitionHashOf("bench-workflow v1")
	input   = bytes.Repeat([]byte("i"), inputSize)
)

// taskID returns the id of task n of the benchmark workflow.
func taskID(n int) workflow.TaskID { return workflow.NewTaskID("task-" + strconv.Itoa(n)) }

// env is one embedded server (file storage, the given sync setting), the
// runlog log on it and the raw JetStream handles on the same connection
// and stream.
type env struct {
	log    *jetstream.Log
	js     natsjs.JetStream
	nc     *nats.Conn
	stream natsjs.Stream
	name   string // stream name
	dir    string // the store directory (newEnv)
	emb    *jetstream.Embedded
}

// otherLog opens e's log again on a connection of its own, closed when tb
// ends: what another process (a worker) would have.
func (e *env) otherLog(tb testing.TB) *jetstream.Log {
	tb.Helper()
	nc, err := e.emb.Conn()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	s, err := jetstream.Open(context.Background(), nc, jetstream.Config{Logger: discard, Stream: e.name, NoCreate: true})
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	return s
}

// newEnv starts a fresh embedded server in its own directory, stopped
// when tb ends.
func newEnv(tb testing.TB, sync time.Duration) *env {
	return newEnvConfig(tb, sync, jetstream.Config{Logger: discard})
}

// newEnvConfig is newEnv with the store's configuration.
func newEnvConfig(tb testing.TB, sync time.Duration, cfg jetstream.Config) *env {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	e := openEnv(tb, dir, sync, cfg)
	stream, err := e.js.Stream(ctx, e.name)
	if err != nil {
		tb.Fatalf("stream: %v", err)
	}
	e.stream, e.dir = stream, dir
	return e
}

// openEnv starts an embedded server on dir, connects to it and opens the
// store on that connection, all closed when tb ends.
func openEnv(tb testing.TB, dir string, sync time.Duration, cfg jetstream.Config) *env {
	tb.Helper()
	ctx := context.Background()
	emb, err := jetstream.StartEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir, SyncInterval: sync})
	if err != nil {
		tb.Fatalf("start embedded: %v", err)
	}
	tb.Cleanup(func() { _ = emb.Close() })
	nc, err := emb.Conn()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	s, err := jetstream.Open(ctx, nc, cfg)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return &env{log: s, js: js, nc: nc, name: s.Stream(), emb: emb}
}

// store returns a lifecycle store on e's log.
func (e *env) store(tb testing.TB, cacheSize int) *lifecycle.Store {
	tb.Helper()
	st, err := lifecycle.New(e.log, lifecycle.Config{Logger: discard, CacheSize: cacheSize})
	if err != nil {
		tb.Fatalf("lifecycle.New: %v", err)
	}
	return st
}

// checkpointedStore is a store with no projection cache that keeps
// projection checkpoints in the log's KV bucket (lifecycle.Config.Checkpoints):
// every operation is a cold read, from the instance's checkpoint.
func (e *env) checkpointedStore(tb testing.TB) *lifecycle.Store {
	tb.Helper()
	st, err := lifecycle.New(e.log, lifecycle.Config{Logger: discard, CacheSize: -1, Checkpoints: e.log.Checkpoints()})
	if err != nil {
		tb.Fatalf("lifecycle.New: %v", err)
	}
	return st
}

// streamBytes returns the bytes the stream holds (the server's account:
// subject, headers, payload and per-message overhead).
func (e *env) streamBytes(tb testing.TB) uint64 {
	tb.Helper()
	info, err := e.stream.Info(context.Background())
	if err != nil {
		tb.Fatalf("stream info: %v", err)
	}
	return info.State.Bytes
}

func prepareReq(id string, p workflow.ConflictPolicy) lifecycle.PrepareRunRequest {
	return lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defHash, Input: input,
		FirstTask: workflow.TaskHint{ID: taskID(0)}, Policy: p}
}

// ids hands out distinct instance ids, safe for concurrent use.
type ids struct {
	prefix string
	n      atomic.Int64
}

func (g *ids) next() string { return g.prefix + strconv.FormatInt(g.n.Add(1), 10) }

// createMany creates n instances named prefix0..prefix(n-1) with one
// commit each, from 64 goroutines, through st.
func createMany(tb testing.TB, st *lifecycle.Store, prefix string, n int) {
	tb.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, parallel)
	for g := range parallel {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if _, err := st.PrepareRun(context.Background(), prepareReq(prefix+strconv.FormatInt(i, 10), workflow.Fail)); err != nil {
					errs[g] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatalf("create: %v", err)
		}
	}
}

// rawTemplate is the message runlog stores for a fresh create, read back
// from the stream: the raw baselines publish the same bytes and headers.
type rawTemplate struct {
	data   []byte
	header nats.Header // without the headers Append adds (Msg-Id, expectations)
}

func (e *env) template(tb testing.TB) rawTemplate {
	tb.Helper()
	ctx := context.Background()
	st := e.store(tb, -1)
	if _, err := st.PrepareRun(ctx, prepareReq("template", workflow.Fail)); err != nil {
		tb.Fatalf("template: %v", err)
	}
	m, ok, err := e.log.LastMessage(ctx, "template")
	if err != nil || !ok {
		tb.Fatalf("template: %v %v", ok, err)
	}
	h := nats.Header(maps.Clone(m.Header))
	for _, k := range []string{natsjs.MsgIDHeader, natsjs.ExpectedStreamHeader, natsjs.ExpectedLastSubjSeqHeader} {
		h.Del(k)
	}
	return rawTemplate{data: m.Data, header: h}
}

// publishCAS publishes t on subj, expecting the subject to be empty, with
// a fresh Msg-Id: the floor of runlog's fresh create.
func (e *env) publishCAS(ctx context.Context, t rawTemplate, subj string) (uint64, error) {
	return e.publishCASAfter(ctx, t, subj, 0)
}

// publishCASAfter is publishCAS expecting the subject's last sequence to
// be last.
func (e *env) publishCASAfter(ctx context.Context, t rawTemplate, subj string, last uint64) (uint64, error) {
	m := &nats.Msg{Subject: subj, Header: make(nats.Header, len(t.header)+2), Data: t.data}
	for k, v := range t.header {
		m.Header[k] = v
	}
	ack, err := e.js.PublishMsg(ctx, m, natsjs.WithMsgID(ulid.Make().String()), natsjs.WithExpectLastSequencePerSubject(last))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// rawRead reads every message of subj after sequence after with direct
// batch gets of 256 (jetstreamext.GetBatch), paging on Nats-Num-Pending:
// the mechanism jetstream.Log.Read uses, without decoding. It returns
// the number of messages and payload bytes.
func (e *env) rawRead(ctx context.Context, subj string, after uint64) (int, int, error) {
	n, size := 0, 0
	next := after + 1
	for {
		page, err := jetstreamext.GetBatch(ctx, e.js, e.name, jetstream.DefaultReadBatch,
			jetstreamext.GetBatchSubject(subj), jetstreamext.GetBatchSeq(next))
		if err != nil {
			return n, size, err
		}
		var pending, last uint64
		got := 0
		for raw, err := range page {
			if err != nil {
				if got == 0 && n == 0 {
					return 0, 0, nil
				}
				return n, size, err
			}
			p, err := strconv.ParseUint(raw.Header.Get("Nats-Num-Pending"), 10, 64)
			if err != nil {
				return n, size, err
			}
			got++
			n++
			size += len(raw.Data)
			pending, last = p, raw.Sequence
		}
		if got == 0 {
			return n, size, fmt.Errorf("empty page at %d", next)
		}
		if pending == 0 {
			return n, size, nil
		}
		next = last + 1
	}
}

// longHistory writes an instance of exactly n events (n commits: the
// create and n-1 checkpoints) through st: a loop workflow that cycles over
// 100 tasks, each checkpoint recording one task output of 128 bytes and
// moving to the next task. It returns the snapshot and revision after the
// last checkpoint.
func longHistory(tb testing.TB, st *lifecycle.Store, id string, n int) (*workflow.Snapshot, lifecycle.Revision) {
	tb.Helper()
	ctx := context.Background()
	p, err := st.PrepareRun(ctx, prepareReq(id, workflow.Fail))
	if err != nil {
		tb.Fatalf("create %s: %v", id, err)
	}
	snap, rev := p.Snapshot, p.Revision
	out := bytes.Repeat([]byte("o"), 128)
	for i := 1; i < n; i++ {
		copy(out, strconv.Itoa(i))
		snap.MarkTaskCompleted(taskID((i-1)%100), bytes.Clone(out), time.Now())
		snap.UpdatePosition(workflow.AtTaskPosition(taskID(i%100)), time.Now())
		if rev, err = st.SaveSnapshot(ctx, snap, rev); err != nil {
			tb.Fatalf("checkpoint %d of %s: %v", i, id, err)
		}
	}
	return snap, rev
}

// runner is an instance in progress as a workflow runtime holds it: its
// snapshot, revision and next task.
type runner struct {
	id    string
	snap  *workflow.Snapshot
	rev   lifecycle.Revision
	next  int
	cycle int // if > 0, tasks are numbered modulo cycle (a loop): the snapshot keeps at most cycle results
}

func (r *runner) task(n int) workflow.TaskID {
	if r.cycle > 0 {
		n %= r.cycle
	}
	return taskID(n)
}

// checkpoint completes the runner's current task with output and moves
// to the next one, saving the change.
func (r *runner) checkpoint(ctx context.Context, st *lifecycle.Store, output []byte) error {
	now := time.Now()
	r.snap.MarkTaskCompleted(r.task(r.next), output, now)
	r.next++
	r.snap.UpdatePosition(workflow.AtTaskPosition(r.task(r.next)), now)
	rev, err := st.SaveSnapshot(ctx, r.snap, r.rev)
	r.rev = rev
	return err
}

// parallelism returns the RunParallel factor that gives 64 goroutines.
func parallelism() int { return writersParallelism(parallel) }

// writersParallelism returns the RunParallel factor that gives n
// goroutines (at least n).
func writersParallelism(n int) int { return (n + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0) }

// decodeAll decodes msgs for instance.
func decodeAll(tb testing.TB, instance string, msgs []events.Message) []events.Record {
	tb.Helper()
	recs := make([]events.Record, len(msgs))
	for i, m := range msgs {
		r, err := events.Decode(m, instance)
		if err != nil {
			tb.Fatalf("decode: %v", err)
		}
		recs[i] = r
	}
	return recs
}
