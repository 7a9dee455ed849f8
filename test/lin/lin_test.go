package lin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

// size is the shape of one run of the workload.
type size struct {
	Clients int // concurrent clients (goroutines), each on random ids
	Ops     int // operations in all, shared evenly by the clients
	IDs     int // instance ids
	Stores  int // lifecycle.Store instances: client c uses store c % Stores
}

// The CI size fits well under three minutes for the whole package on two
// cores with -race; RUNLOG_LIN_LARGE=1 selects the large one.
var (
	ciSize    = size{Clients: 64, Ops: 10_000, IDs: 4, Stores: 4}
	largeSize = size{Clients: 128, Ops: 100_000, IDs: 5, Stores: 8}
)

// defaultSeed makes the workload (not the interleaving) reproducible;
// RUNLOG_LIN_SEED overrides it.
const defaultSeed = 20261126

func workloadSize() size {
	if os.Getenv("RUNLOG_LIN_LARGE") != "" {
		return largeSize
	}
	return ciSize
}

func seed(t *testing.T) uint64 {
	t.Helper()
	v := os.Getenv("RUNLOG_LIN_SEED")
	if v == "" {
		return defaultSeed
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("RUNLOG_LIN_SEED=%q: %v", v, err)
	}
	return n
}

// Instance ids: plain, with a dot, with wildcards and a space, Unicode.
var allIDs = []string{"lin-0", "lin.1", "lin *>2", "línea-3", "lin=4"}

// The two workflow definitions: 0 is the usual one, 1 appears rarely, to
// exercise the definition check before every policy.
var defs = [2]workflow.DefinitionHash{workflow.DefinitionHashOf("lin workflow v1"), workflow.DefinitionHashOf("lin workflow v2")}

var discard = slog.New(slog.DiscardHandler)

func TestLinearizableMemlog(t *testing.T) {
	sz := workloadSize()
	log := memlog.New(nil)
	t.Cleanup(func() { _ = log.Close() })
	logs := make([]lifecycle.Log, sz.Stores)
	for i := range logs {
		logs[i] = log
	}
	run(t, sz, seed(t), logs)
}

// TestLinearizableJetStream runs the check on one stream and on 4
// partitions.
func TestLinearizableJetStream(t *testing.T) {
	for _, k := range []int{1, 4} {
		t.Run(fmt.Sprintf("partitions=%d", k), func(t *testing.T) {
			sz := workloadSize()
			srv := natstest.Start(t)
			logs := make([]lifecycle.Log, sz.Stores)
			for i := range logs {
				// One connection and one jetstream.Log per group of clients, as
				// separate processes would have.
				js, err := jetstream.Open(t.Context(), natstest.Connect(t, srv), jetstream.Config{Logger: discard, Partitions: k})
				if err != nil {
					t.Fatalf("jetstream.Open: %v", err)
				}
				t.Cleanup(func() { _ = js.Close() })
				logs[i] = js
			}
			run(t, sz, seed(t), logs)
		})
	}
}

// newStore returns a store on log. Each store caches the projections it
// touched, so a decision often starts from a projection that another
// store's writes made stale: the sequence check must catch it.
func newStore(t *testing.T, log lifecycle.Log) *lifecycle.Store {
	t.Helper()
	s, err := lifecycle.New(log, lifecycle.Config{Logger: discard})
	if err != nil {
		t.Fatalf("lifecycle.New: %v", err)
	}
	return s
}

// recorder stamps calls and returns with a shared counter: if an
// operation returned before another was called, its return stamp is
// smaller than the other's call stamp, which is all porcupine needs.
type recorder struct {
	clock atomic.Int64
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func (r *recorder) now() int64 { return r.clock.Add(1) }

func (r *recorder) add(ops []porcupine.Operation) {
	r.mu.Lock()
	r.ops = append(r.ops, ops...)
	r.mu.Unlock()
}

// run runs the workload with one store on each of logs (all views of one
// history), checks the history and logs the figures.
func run(t *testing.T, sz size, seed uint64, logs []lifecycle.Log) {
	ctx := t.Context()
	ids := allIDs[:sz.IDs]
	rec := &recorder{}
	traces := make([]*tracingLog, len(logs))
	stores := make([]*lifecycle.Store, len(logs))
	for i, l := range logs {
		traces[i] = newTracingLog(l, rec)
		stores[i] = newStore(t, traces[i])
	}
	start := time.Now()
	var wg sync.WaitGroup
	for c := range sz.Clients {
		n := sz.Ops / sz.Clients
		if c < sz.Ops%sz.Clients {
			n++
		}
		cl := &client{num: c, store: stores[c%len(stores)], rng: rand.New(rand.NewPCG(seed, uint64(c))), ids: ids, views: map[string]*view{}}
		wg.Go(func() { rec.add(cl.run(ctx, t, rec, n)) })
	}
	wg.Wait()
	ran := time.Since(start)
	if t.Failed() {
		t.FailNow()
	}

	// A final read of every id by a fresh store, after everything
	// returned: the durable history must agree with the model too.
	final := newStore(t, logs[0])
	for _, id := range ids {
		in := input{ID: id, Op: opLoad}
		call := rec.now()
		out := exec(ctx, final, in, &view{})
		rec.ops = append(rec.ops, porcupine.Operation{ClientId: sz.Clients, Input: in, Call: call, Output: out, Return: rec.now()})
		if out.Err != errNone {
			t.Errorf("final load %q: %s", id, out.Text)
		}
	}
	history := rec.ops
	commits := findCommits(t, logs[0], ids, history)
	checkRunsDistinct(t, history)
	narrowed := narrow(t, history, commits, traces)
	verify(t, logs[0], len(commits))
	if t.Failed() {
		t.FailNow()
	}

	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, narrowed, 0)
	checked := time.Since(checkStart)
	if res != porcupine.Ok {
		t.Errorf("history of %d operations is not linearizable at the store's own log calls (%s); porcupine visualization: %s",
			len(narrowed), res, visualize(t, info))
		// Is it linearizable at all, within the clients' intervals? The
		// search may be long there; give it a bound, only to say more.
		res, info := porcupine.CheckOperationsVerbose(model, history, 2*time.Minute)
		t.Errorf("within the clients' call and return: %s; porcupine visualization: %s", res, visualize(t, info))
	}
	t.Logf("seed %d: %d operations checked (%d clients, %d ids, %d stores; at most %d operations in flight on one id, %d once narrowed): workload %v, check %v",
		seed, len(history), sz.Clients, len(ids), len(stores), maxInFlight(history), maxInFlight(narrowed), ran.Round(time.Millisecond), checked.Round(time.Millisecond))
	t.Logf("outcomes: %s", tally(history))
}

// verify runs audit.Verify over the whole log: every history intact, and
// as many commits as the operations that reported writing one.
func verify(t *testing.T, log lifecycle.Log, commits int) {
	t.Helper()
	src, ok := log.(audit.Source)
	if !ok {
		t.Fatalf("%T is not an audit.Source", log)
	}
	rep, err := audit.Verify(t.Context(), src, audit.VerifyOptions{})
	if err != nil {
		t.Fatalf("audit.Verify: %v", err)
	}
	for _, p := range rep.Problems {
		t.Errorf("audit: %s", p)
	}
	if rep.Messages != commits {
		t.Errorf("audit read %d messages; the operations wrote %d commits", rep.Messages, commits)
	}
	t.Logf("audit.Verify: %d instances, %d commits, %d events, %d problems", rep.Instances, rep.Messages, rep.Events, len(rep.Problems))
}

// narrow returns the history with each operation's interval narrowed to
// the log call its outcome was decided by (see tracingLog): the successful
// Append of an operation that wrote, the last Read of one that wrote
// nothing. Operations that lost every attempt, failed unexpectedly or ran
// without an actor keep the clients' call and return. A history
// linearizable with the narrowed intervals is linearizable with the
// clients' ones; the narrowed one is what the check can search quickly,
// as operations overlap much less.
func narrow(t *testing.T, history []porcupine.Operation, commits map[string]string, traces []*tracingLog) []porcupine.Operation {
	t.Helper()
	out := slices.Clone(history)
	for i, op := range out {
		in, o := op.Input.(input), op.Output.(output)
		if in.Actor == "" || o.Err == errConcurrent || o.Err == errUnexpected {
			continue
		}
		var spans []span
		for _, tr := range traces {
			spans = append(spans, tr.spansOf(in.Actor)...)
		}
		var best *span
		for j := range spans {
			sp := &spans[j]
			switch {
			case o.Wrote != 0 && sp.append && sp.msgID == commits[in.Actor]:
				best = sp
			case o.Wrote == 0 && !sp.append && (best == nil || sp.end > best.end):
				best = sp
			}
		}
		if best == nil {
			t.Errorf("%s %q by %s (%s): no log call decided it", in.Op, in.ID, in.Actor, describeOp(in, o))
			continue
		}
		if best.start < op.Call || best.end > op.Return {
			t.Errorf("%s by %s: log call [%d, %d] outside the operation [%d, %d]", in.Op, in.Actor, best.start, best.end, op.Call, op.Return)
			continue
		}
		out[i].Call, out[i].Return = best.start, best.end
	}
	return out
}

// findCommits reads every instance's history and fills in, for each
// operation, the commit it appended (found by its actor) and the commit
// before it on the instance.
// It returns the commit id of each operation that wrote, by actor.
func findCommits(t *testing.T, log lifecycle.Log, ids []string, history []porcupine.Operation) map[string]string {
	t.Helper()
	type commit struct {
		seq, after uint64
		id         string
	}
	byActor := map[string]commit{}
	ids2 := map[string]string{}
	for _, id := range ids {
		var after uint64
		for m, err := range log.Read(t.Context(), id, 0) {
			if err != nil {
				t.Fatalf("read %q: %v", id, err)
			}
			rec, err := events.Decode(m, id)
			if err != nil {
				t.Fatalf("decode %q: %v", id, err)
			}
			a := rec.Commit.Actor
			if _, dup := byActor[a]; dup || a == "" {
				t.Errorf("instance %q seq %d: commit by actor %q: no operation appends two commits", id, m.Seq, a)
			}
			byActor[a] = commit{m.Seq, after, rec.Commit.ID.String()}
			ids2[a] = rec.Commit.ID.String()
			after = m.Seq
		}
	}
	for i := range history {
		in, out := history[i].Input.(input), history[i].Output.(output)
		if c, ok := byActor[in.Actor]; ok && in.Actor != "" {
			out.Wrote, out.After = c.seq, c.after
			history[i].Output = out
			delete(byActor, in.Actor)
		}
	}
	for a, c := range byActor {
		t.Errorf("commit at seq %d by actor %q was written by no operation", c.seq, a)
	}
	return ids2
}

// checkRunsDistinct checks that every run PrepareRun created has an id
// never used before. Every successful creation appears in any
// linearization, so pairwise distinct ids are exactly "each new run id is
// new when it is created"; the model itself only compares with the
// current run.
func checkRunsDistinct(t *testing.T, history []porcupine.Operation) {
	t.Helper()
	seen := map[ulid.ULID]string{}
	for _, op := range history {
		in, out := op.Input.(input), op.Output.(output)
		if in.Op != opPrepare || out.Err != errNone || out.Outcome == lifecycle.UsedExisting {
			continue
		}
		if prev, ok := seen[out.Run]; ok {
			t.Errorf("run %s created twice: on %q and on %q", out.Run, prev, in.ID)
		}
		seen[out.Run] = in.ID
	}
}

// visualize writes porcupine's visualization to a temporary file and
// returns its path.
func visualize(t *testing.T, info porcupine.LinearizationInfo) string {
	t.Helper()
	f, err := os.CreateTemp("", "runlog-lin-*.html")
	if err != nil {
		t.Logf("visualization: %v", err)
		return "(not written)"
	}
	defer f.Close()
	if err := porcupine.Visualize(model, info, f); err != nil {
		t.Logf("visualization: %v", err)
	}
	return f.Name()
}

// maxInFlight returns the largest number of operations in flight at once
// on one id.
func maxInFlight(history []porcupine.Operation) int {
	most := 0
	for _, part := range model.Partition(history) {
		type edge struct {
			at   int64
			step int
		}
		edges := make([]edge, 0, 2*len(part))
		for _, op := range part {
			edges = append(edges, edge{op.Call, 1}, edge{op.Return, -1})
		}
		slices.SortFunc(edges, func(a, b edge) int { return cmp.Compare(a.at, b.at) })
		n := 0
		for _, e := range edges {
			n += e.step
			most = max(most, n)
		}
	}
	return most
}

// tally counts the operations by kind and result.
func tally(history []porcupine.Operation) string {
	counts := map[string]int{}
	for _, op := range history {
		in, out := op.Input.(input), op.Output.(output)
		k := in.Op.String() + ":" + out.Err.String()
		switch {
		case out.Err != errNone:
		case in.Op == opPrepare:
			k = in.Op.String() + ":" + out.Outcome.String()
		case in.Op == opCheckControl:
			k = in.Op.String() + ":" + out.Control.String()
		}
		counts[k]++
	}
	var b []byte
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		b = fmt.Appendf(b, "%s=%d ", k, counts[k])
	}
	return string(b)
}

// view is what a client last saw of an instance: the run and revision,
// and the snapshot at that revision when it may checkpoint from it.
type view struct {
	run  ulid.ULID
	rev  lifecycle.Revision
	snap *workflow.Snapshot
}

// client runs random operations, one at a time, on random ids, as the
// workers, APIs and operators of a runtime would.
type client struct {
	num   int
	store *lifecycle.Store
	rng   *rand.Rand
	ids   []string
	views map[string]*view
	n     int // operations issued, for unique task names and actors
}

func (c *client) run(ctx context.Context, t *testing.T, rec *recorder, n int) []porcupine.Operation {
	ops := make([]porcupine.Operation, 0, n)
	for range n {
		id := c.ids[c.rng.IntN(len(c.ids))]
		v := c.views[id]
		if v == nil {
			v = &view{}
			c.views[id] = v
		}
		in := c.next(id, v)
		call := rec.now()
		out := exec(ctx, c.store, in, v)
		ret := rec.now()
		if out.Err == errUnexpected {
			t.Errorf("client %d: %s %q: unexpected error: %s", c.num, in.Op, id, out.Text)
		}
		ops = append(ops, porcupine.Operation{ClientId: c.num, Input: in, Call: call, Output: out, Return: ret})
		c.n++
	}
	return ops
}

// next draws the next operation on id.
func (c *client) next(id string, v *view) input {
	in := input{ID: id}
	r := c.rng.IntN(100)
	switch {
	case r < 14:
		in.Op = opPrepare
		switch p := c.rng.IntN(100); {
		case p < 40:
			in.Policy = workflow.Fail
		case p < 70:
			in.Policy = workflow.UseExisting
		default:
			in.Policy = workflow.TerminateExisting
		}
		if c.rng.IntN(100) < 3 {
			in.Def = 1
		}
	case r < 40:
		if v.snap == nil || v.snap.State.Kind != workflow.InProgress {
			in.Op = opLoadSnapshot // a worker reloads before it runs a task
			break
		}
		in.Op = opCheckpoint
		in.Rev = v.rev
		in.Tasks = len(v.snap.State.CompletedTasks)
		switch t := c.rng.IntN(100); {
		case t < 4:
			in.Target = workflow.Completed
		case t < 8:
			in.Target = workflow.Failed
		default:
			in.Target = workflow.InProgress
		}
	case r < 44:
		if v.run.IsZero() {
			in.Op = opLoadSnapshot
			break
		}
		in.Op = opTaskResult
		in.Rev = lifecycle.Revision{Run: v.run}
	case r < 58:
		in.Op = opSignal
		in.Signal = workflow.Pause
		if c.rng.IntN(100) < 35 {
			in.Signal = workflow.Cancel
		}
	case r < 70:
		in.Op = opCheckControl
	case r < 78:
		in.Op = opUnpause
	case r < 81:
		in.Op = opDelete
	case r < 91:
		in.Op = opLoadSnapshot
	default:
		in.Op = opLoad
	}
	if in.Op == opCheckpoint || in.Op == opTaskResult {
		in.taskName = fmt.Sprintf("task-%d-%d", c.num, c.n)
	}
	in.Actor = fmt.Sprintf("client-%d-op-%d", c.num, c.n)
	return in
}

// exec runs in on s, reduces the answer to an output and updates the
// client's view v.
func exec(ctx context.Context, s *lifecycle.Store, in input, v *view) output {
	var out output
	var err error
	id := in.ID
	ctx = lifecycle.WithActor(ctx, in.Actor)
	switch in.Op {
	case opPrepare:
		var p lifecycle.Prepared
		p, err = s.PrepareRun(ctx, lifecycle.PrepareRunRequest{
			InstanceID: id, DefinitionHash: defs[in.Def], Input: []byte("input of " + id),
			FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("first")}, Policy: in.Policy,
		})
		if err == nil {
			out = output{Outcome: p.Outcome, Run: p.Run, PrevRun: p.PreviousRun, Seq: p.Revision.Seq,
				Kind: p.Snapshot.State.Kind, Tasks: len(p.Snapshot.State.CompletedTasks)}
			*v = view{run: p.Run, rev: p.Revision, snap: p.Snapshot}
		}
	case opCheckpoint:
		next := v.snap.Clone()
		now := time.Now()
		task := workflow.NewTaskID(in.taskName)
		next.MarkTaskCompleted(task, []byte(in.taskName), now)
		next.UpdatePosition(workflow.AtTaskPosition(workflow.NewTaskID("after "+in.taskName)), now)
		switch in.Target {
		case workflow.Completed:
			next.MarkCompleted([]byte("done"), now)
		case workflow.Failed:
			next.MarkFailed("boom", now)
		}
		var rev lifecycle.Revision
		rev, err = s.SaveSnapshot(ctx, next, in.Rev)
		if err == nil {
			out.Seq = rev.Seq
			*v = view{run: rev.Run, rev: rev, snap: next}
		}
	case opTaskResult:
		var rev lifecycle.Revision
		rev, err = s.SaveTaskResult(ctx, id, in.Rev, workflow.NewTaskID(in.taskName), []byte(in.taskName))
		if err == nil {
			out.Seq = rev.Seq
			// The stored snapshot now differs from the client's: reload
			// before the next checkpoint (docs/STORE.md).
			*v = view{run: rev.Run, rev: rev}
		}
	case opSignal:
		err = s.StoreSignal(ctx, id, in.Signal, workflow.SignalRequest{Reason: "lin", RequestedBy: "client"})
	case opCheckControl:
		out.Control, err = s.CheckControlSignals(ctx, id, nil)
	case opUnpause:
		var snap *workflow.Snapshot
		snap, err = s.Unpause(ctx, id)
		if err == nil {
			out.Kind, out.Tasks = snap.State.Kind, len(snap.State.CompletedTasks)
			v.snap = nil // no revision comes with it
		}
	case opDelete:
		err = s.DeleteSnapshot(ctx, id, "lin")
	case opLoadSnapshot:
		var snap *workflow.Snapshot
		var rev lifecycle.Revision
		snap, rev, err = s.LoadSnapshot(ctx, id)
		if err == nil {
			out = output{Run: rev.Run, Seq: rev.Seq, Kind: snap.State.Kind, Tasks: len(snap.State.CompletedTasks)}
			*v = view{run: rev.Run, rev: rev, snap: snap}
		}
	case opLoad:
		var st projectionState
		st, err = load(ctx, s, id)
		if err == nil {
			out = st.output
			*v = st.view
		}
	}
	if err != nil {
		out = classify(err)
		switch out.Err {
		case errStale, errTerminal, errNotFound:
			*v = view{}
		}
	}
	return out
}

// projectionState is what Load answered, as an output and a view.
type projectionState struct {
	output output
	view   view
}

func load(ctx context.Context, s *lifecycle.Store, id string) (projectionState, error) {
	st, err := s.Load(ctx, id)
	if err != nil {
		return projectionState{}, err
	}
	out := output{Exists: st.Exists, Run: st.Run, Seq: st.RevisionSeq, LastSeq: st.LastSeq}
	_, out.Cancel = st.Signals[workflow.Cancel]
	_, out.Pause = st.Signals[workflow.Pause]
	var v view
	if st.Exists {
		out.Kind, out.Tasks = st.Snapshot.State.Kind, len(st.Snapshot.State.CompletedTasks)
		out.Def = defIndex(st.Snapshot.DefinitionHash)
		v = view{run: st.Run, rev: st.Revision(), snap: st.Snapshot}
	}
	if st.LastSeq < st.RevisionSeq {
		out.Err, out.Text = errUnexpected, fmt.Sprintf("last sequence %d is before the revision %d", st.LastSeq, st.RevisionSeq)
	}
	return projectionState{output: out, view: v}, nil
}

func defIndex(h workflow.DefinitionHash) uint8 {
	if h == defs[1] {
		return 1
	}
	return 0
}

// kindOfStatus maps a status back to the state kind of the workload's
// snapshots.
func kindOfStatus(k workflow.StatusKind) workflow.StateKind {
	switch k {
	case workflow.StatusCompleted:
		return workflow.Completed
	case workflow.StatusFailed:
		return workflow.Failed
	case workflow.StatusCancelled:
		return workflow.Cancelled
	case workflow.StatusPaused:
		return workflow.Paused
	}
	return workflow.InProgress
}

// classify reduces an error to its class and the details the model
// checks.
func classify(err error) output {
	if e, ok := errors.AsType[*lifecycle.NotFoundError](err); ok {
		return output{Err: errNotFound, Deleted: e.Deleted}
	}
	if e, ok := errors.AsType[*lifecycle.AlreadyExistsError](err); ok {
		return output{Err: errAlreadyExists, Run: e.Run, Kind: kindOfStatus(e.Status.Kind)}
	}
	if e, ok := errors.AsType[*lifecycle.DefinitionMismatchError](err); ok {
		return output{Err: errDefMismatch, Def: defIndex(e.Stored)}
	}
	if e, ok := errors.AsType[*lifecycle.StaleError](err); ok {
		return output{Err: errStale, Run: e.Current.Run, Seq: e.Current.Seq}
	}
	if e, ok := errors.AsType[*lifecycle.TerminalError](err); ok {
		return output{Err: errTerminal, Kind: e.State}
	}
	if e, ok := errors.AsType[*lifecycle.SignalRefusedError](err); ok {
		c := errCannotPause
		if e.Kind == workflow.Cancel {
			c = errCannotCancel
		}
		return output{Err: c, Kind: e.State}
	}
	if e, ok := errors.AsType[*lifecycle.NotPausedError](err); ok {
		return output{Err: errNotPaused, Kind: e.State}
	}
	if errors.Is(err, lifecycle.ErrConcurrentModification) {
		return output{Err: errConcurrent}
	}
	return output{Err: errUnexpected, Text: err.Error()}
}
