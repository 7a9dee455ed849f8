package audit

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

var order = []string{"a", "b", "c"}

// verify runs Verify. When that verifies every instance of a Scanner
// (one pass over the log), it runs it again instance by instance (the
// source's Scan hidden) and requires the same report: the two paths are
// held to each other on every history the tests build.
func verify(t *testing.T, src Source, opts VerifyOptions) *Report {
	t.Helper()
	rep, err := Verify(t.Context(), src, opts)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for _, p := range rep.Problems {
		t.Logf("problem: %s", p)
	}
	if _, ok := src.(Scanner); ok && len(opts.IDs) == 0 {
		opts.Progress = nil
		byInstance, err := Verify(t.Context(), instancesOnly{src}, opts)
		if err != nil {
			t.Fatalf("Verify instance by instance: %v", err)
		}
		scan := *rep
		scan.ReadThrough = 0 // only a scan reads through a sequence
		if !reflect.DeepEqual(&scan, byInstance) {
			t.Fatalf("one pass over the log and instance by instance differ:\n scan:     %+v\n instances: %+v", &scan, byInstance)
		}
	}
	return rep
}

// instancesOnly hides a source's Scanner methods (Scan, AllInstances and
// the counts), keeping what describes the log as a whole.
type instancesOnly struct{ Source }

func (s instancesOnly) LogInfo(ctx context.Context) (events.LogInfo, error) {
	if hs, ok := s.Source.(HeadSource); ok {
		return hs.LogInfo(ctx)
	}
	return events.LogInfo{}, errors.New("the source cannot describe its log")
}

func (s instancesOnly) Heads(ctx context.Context) (events.LogInfo, []events.InstanceHead, error) {
	if hs, ok := s.Source.(HeadSource); ok {
		return hs.Heads(ctx)
	}
	return events.LogInfo{}, nil, errors.New("the source cannot give its heads")
}

func (s instancesOnly) StreamProblems(ctx context.Context) ([]string, error) {
	if sc, ok := s.Source.(StreamChecker); ok {
		return sc.StreamProblems(ctx)
	}
	return nil, nil
}

// Both logs are every kind of source audit reads.
var (
	_ Scanner    = (*memlog.Log)(nil)
	_ HeadSource = (*memlog.Log)(nil)
)

// miscounted is a Scanner whose counts tell one instance has fewer messages
// than it has (as if some were deleted while the scan ran).
type miscounted struct {
	*memlog.Log
	id string
}

func (m miscounted) InstanceCounts(ctx context.Context) (map[string]uint64, error) {
	c, err := m.Log.InstanceCounts(ctx)
	if err == nil && c[m.id] > 1 {
		c[m.id]--
	}
	return c, err
}

// A one-pass verification finishes each instance when its last message
// is read, by the counts (memory holds only the instances still being
// read). Told fewer messages than an instance
// has, it starts again instance by instance and reports the same.
func TestVerifyOnePassFinishesEarly(t *testing.T) {
	l := cleanLog(t)
	total := 0
	for _, ms := range all(t, l) {
		total += len(ms)
	}
	early := func(src Source) (bool, *Report) {
		t.Helper()
		var calls []Progress
		rep, err := Verify(t.Context(), src, VerifyOptions{Heads: true, Progress: func(p Progress) { calls = append(calls, p) }})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range calls {
			if p.Instances > 0 && p.Messages < total {
				return true, rep
			}
		}
		return false, rep
	}
	if ok, _ := early(l); !ok {
		t.Error("no instance was finished before the last message was read")
	}
	want := verify(t, instancesOnly{l}, VerifyOptions{Heads: true})
	for _, id := range order {
		_, got := early(miscounted{l, id})
		if !reflect.DeepEqual(got, want) {
			t.Errorf("count of %q one short: %+v, want %+v", id, got, want)
		}
	}
}

func TestVerifyClean(t *testing.T) {
	l := cleanLog(t)
	msgs := all(t, l)
	var calls []Progress
	rep := verify(t, l, VerifyOptions{Heads: true, PageSize: 2, Progress: func(p Progress) { calls = append(calls, p) }})
	if !rep.OK() || rep.Damaged != 0 {
		t.Fatalf("clean history: %d problems, damaged %d, incomplete %v", len(rep.Problems), rep.Damaged, rep.Incomplete)
	}
	total := 0
	for _, ms := range msgs {
		total += len(ms)
	}
	if rep.Instances != 3 || rep.Messages != total {
		t.Errorf("report counts %d instances, %d messages; want 3, %d", rep.Instances, rep.Messages, total)
	}
	if rep.Events <= rep.Messages {
		t.Errorf("events %d: want more than the %d commits (several are multi-event)", rep.Events, rep.Messages)
	}
	if len(rep.Heads) != 3 {
		t.Fatalf("heads: %+v", rep.Heads)
	}
	for _, h := range rep.Heads {
		ms := msgs[h.Instance]
		last := ms[len(ms)-1]
		if h.Seq != last.Seq || h.Hash != workflow.Sha256(last.Data) || h.Messages != len(ms) {
			t.Errorf("head of %q = %+v, want seq %d, %d messages", h.Instance, h, last.Seq, len(ms))
		}
	}
	if len(calls) < 3 || calls[len(calls)-1].Instances != 3 || calls[len(calls)-1].Messages != total {
		t.Errorf("progress calls: %+v", calls)
	}

	// The same with explicit ids: progress knows the total.
	calls = nil
	rep = verify(t, l, VerifyOptions{IDs: []string{"c", "a", "c"}, Progress: func(p Progress) { calls = append(calls, p) }})
	if !rep.OK() || rep.Instances != 2 {
		t.Fatalf("ids c, a: %+v", rep)
	}
	if calls[0].Total != 2 || calls[0].Phase != "verify" {
		t.Errorf("progress: %+v", calls[0])
	}
}

// tamper builds a crafted copy of the clean log in which instance "a"'s
// messages are replaced by edit's result; it returns the crafted log and
// the crafted messages of "a" (with their new sequences).
func tamper(t *testing.T, edit func(a []events.Message) []events.Message) (*memlog.Log, []events.Message) {
	t.Helper()
	return tamperOn(t, "a", edit)
}

// tamperOn is tamper on another instance.
func tamperOn(t *testing.T, id string, edit func(msgs []events.Message) []events.Message) (*memlog.Log, []events.Message) {
	t.Helper()
	msgs := all(t, cleanLog(t))
	msgs[id] = edit(slices.Clone(msgs[id]))
	l := craft(t, order, msgs)
	return l, read(t, l, id)
}

// only checks that the other instances have no problem and returns a's.
func only(t *testing.T, rep *Report) []Problem {
	t.Helper()
	for _, id := range []string{"b", "c"} {
		if ps := problemsOf(rep, id); len(ps) != 0 {
			t.Errorf("instance %q has problems: %v", id, ps)
		}
	}
	if rep.Damaged != 1 {
		t.Errorf("damaged = %d, want 1", rep.Damaged)
	}
	return problemsOf(rep, "a")
}

func hasProblem(ps []Problem, kind ProblemKind, seq uint64, detail string) bool {
	for _, p := range ps {
		if p.Kind == kind && (p.Seq == seq || p.Through == seq) && strings.Contains(p.Detail, detail) {
			return true
		}
	}
	return false
}

func TestVerifyGarbageAppended(t *testing.T) {
	l, a := tamper(t, func(a []events.Message) []events.Message {
		return append(a, events.Message{Data: []byte("\x00\x01 not json")})
	})
	ps := only(t, verify(t, l, VerifyOptions{}))
	last := a[len(a)-1].Seq
	if len(ps) != 1 || !hasProblem(ps, KindDecode, last, "not a runlog commit") {
		t.Fatalf("want one decode problem at seq %d, got %v", last, ps)
	}
}

func TestVerifyGarbageFlood(t *testing.T) {
	l, a := tamper(t, func(a []events.Message) []events.Message {
		head := a[:3]
		tail := slices.Clone(a[3:])
		for i := range 500 {
			head = append(head, events.Message{Data: []byte("garbage " + strings.Repeat("x", i))})
		}
		return append(head, tail...)
	})
	ps := only(t, verify(t, l, VerifyOptions{}))
	// Inserted garbage is skipped by the chain: one merged problem.
	if len(ps) != 1 || ps[0].Kind != KindDecode || ps[0].Seq != a[3].Seq || ps[0].Through != a[502].Seq || !strings.Contains(ps[0].Detail, "499 messages after it") {
		t.Fatalf("want one decode problem spanning the garbage, got %v", ps)
	}
}

func TestVerifyUnknownEventType(t *testing.T) {
	t.Run("appended", func(t *testing.T) {
		l, a := tamper(t, func(a []events.Message) []events.Message {
			rec := decode(t, a[len(a)-1])
			c := events.Commit{ID: mustULID(t, "01JDZ8Q5N3C7K2W4X6Y8Z0A1B2"), Instance: "a", Time: rec.Commit.Time, Prev: workflow.Sha256(a[len(a)-1].Data),
				Events: []events.Event{{ID: mustULID(t, "01JDZ8Q5N3C7K2W4X6Y8Z0A1B3"), Type: events.WorkflowUnpaused, Run: rec.Commit.Run(), Data: &events.WorkflowUnpausedData{}}}}
			m := encode(t, c)
			m.Data = bytes.Replace(m.Data, []byte(`"workflow.unpaused"`), []byte(`"workflow.rewound"`), 1)
			return append(a, m)
		})
		ps := only(t, verify(t, l, VerifyOptions{}))
		last := a[len(a)-1].Seq
		if len(ps) != 1 || !hasProblem(ps, KindDecode, last, `unknown event type "workflow.rewound"`) {
			t.Fatalf("want one decode problem at seq %d, got %v", last, ps)
		}
	})
	t.Run("in place", func(t *testing.T) {
		const k = 2
		l, a := tamper(t, func(a []events.Message) []events.Message {
			a[k].Data = bytes.Replace(a[k].Data, []byte(`"checkpoint.saved"`), []byte(`"checkpoint.bogus"`), 1)
			return a
		})
		ps := only(t, verify(t, l, VerifyOptions{}))
		if !hasProblem(ps, KindDecode, a[k].Seq, "unknown event type") {
			t.Fatalf("want a decode problem at seq %d, got %v", a[k].Seq, ps)
		}
		// The next commit's prev is the original's hash: one chain problem
		// for the link over it, nothing more.
		if !hasProblem(ps, KindChain, a[k+1].Seq, "") || len(ps) != 2 {
			t.Fatalf("want the decode problem and one chain problem at seq %d, got %v", a[k+1].Seq, ps)
		}
	})
	t.Run("newer schema", func(t *testing.T) {
		l, a := tamper(t, func(a []events.Message) []events.Message {
			m := a[len(a)-1]
			m.Data = bytes.Replace(m.Data, []byte(`{"v":1,`), []byte(`{"v":2,`), 1)
			a[len(a)-1] = m
			return a
		})
		ps := only(t, verify(t, l, VerifyOptions{}))
		if len(ps) != 1 || !hasProblem(ps, KindSchema, a[len(a)-1].Seq, "upgrade") {
			t.Fatalf("want one schema problem, got %v", ps)
		}
	})
}

func TestVerifyForeignCommit(t *testing.T) {
	clean := all(t, cleanLog(t))
	l, a := tamper(t, func(a []events.Message) []events.Message {
		m := clean["b"][1]
		m.MsgID = "" // memlog de-duplicates Msg-Ids log-wide
		return append(a[:4], append([]events.Message{m}, a[4:]...)...)
	})
	ps := only(t, verify(t, l, VerifyOptions{}))
	if len(ps) != 1 || !hasProblem(ps, KindForeign, a[4].Seq, `names instance "b"`) {
		t.Fatalf("want one foreign problem at seq %d, got %v", a[4].Seq, ps)
	}
}

func TestVerifyAlteredCommit(t *testing.T) {
	const k = 3 // the first SendEvent of "a"
	l, a := tamper(t, func(a []events.Message) []events.Message {
		rec := decode(t, a[k])
		d := rec.Commit.Events[0].Data.(*events.EventSentData)
		d.Payload = []byte(`{"approved":false}`)
		m := encode(t, rec.Commit)
		if bytes.Equal(m.Data, a[k].Data) {
			t.Fatal("alteration changed nothing")
		}
		a[k] = m
		return a
	})
	ps := only(t, verify(t, l, VerifyOptions{}))
	if len(ps) != 1 {
		t.Fatalf("want one problem, got %v", ps)
	}
	p := ps[0]
	if p.Kind != KindChain || p.Seq != a[k].Seq || p.Through != a[k+1].Seq || !strings.Contains(p.Detail, "was altered") {
		t.Fatalf("want a chain problem spanning seq %d..%d naming the alteration, got %v", a[k].Seq, a[k+1].Seq, p)
	}
}

func TestVerifyRemovedCommit(t *testing.T) {
	const k = 4 // the second SendEvent of "a": nothing depends on it
	var removed events.Message
	l, a := tamper(t, func(a []events.Message) []events.Message {
		removed = a[k]
		return append(a[:k], a[k+1:]...)
	})
	ps := only(t, verify(t, l, VerifyOptions{}))
	// After the removal, a[k] is the commit that followed the removed one.
	if len(ps) != 1 || !hasProblem(ps, KindChain, a[k].Seq, "were removed") || ps[0].Seq != a[k-1].Seq {
		t.Fatalf("want one chain problem spanning seq %d..%d, got %v", a[k-1].Seq, a[k].Seq, ps)
	}
	if !strings.Contains(ps[0].Detail, short(workflow.Sha256(removed.Data))) {
		t.Errorf("the detail should name the missing hash %s: %s", short(workflow.Sha256(removed.Data)), ps[0].Detail)
	}

	t.Run("first", func(t *testing.T) {
		l, a := tamper(t, func(a []events.Message) []events.Message { return a[1:] })
		ps := only(t, verify(t, l, VerifyOptions{}))
		if !hasProblem(ps, KindChain, a[0].Seq, "first commit") {
			t.Fatalf("want a chain problem at the first commit, got %v", ps)
		}
		// The run's creation is gone: the fold refuses what follows, as one problem.
		if len(ps) != 2 || !hasProblem(ps, KindFold, a[0].Seq, "do not fold either") || ps[0].Kind != KindChain {
			t.Fatalf("want the chain problem and one fold problem, got %v", ps)
		}
	})
}

func TestVerifySwappedCommits(t *testing.T) {
	const k = 3 // the two SendEvent commits of "a" commute for the projection
	l, a := tamper(t, func(a []events.Message) []events.Message {
		a[k], a[k+1] = a[k+1], a[k]
		return a
	})
	ps := only(t, verify(t, l, VerifyOptions{}))
	if len(ps) != 1 {
		t.Fatalf("want one problem, got %v", ps)
	}
	p := ps[0]
	if p.Kind != KindReordered || p.Seq != a[k].Seq || p.Through != a[k+2].Seq || !strings.Contains(p.Detail, "3 consecutive broken links") {
		t.Fatalf("want a reordered problem spanning seq %d..%d, got %v", a[k].Seq, a[k+2].Seq, p)
	}
}

func TestVerifyMovedCommit(t *testing.T) {
	l, a := tamper(t, func(a []events.Message) []events.Message {
		moved := a[3]
		a = append(a[:3], a[4:]...)
		return append(a, moved)
	})
	ps := only(t, verify(t, l, VerifyOptions{}))
	for _, p := range ps {
		if p.Kind != KindReordered && p.Kind != KindFold {
			t.Errorf("unexpected %v", p)
		}
	}
	if !hasProblem(ps, KindReordered, a[3].Seq, "later commit") || !hasProblem(ps, KindReordered, a[len(a)-1].Seq, "earlier commit") {
		t.Fatalf("want reordered problems at seq %d and %d, got %v", a[3].Seq, a[len(a)-1].Seq, ps)
	}
}

func TestVerifyDuplicates(t *testing.T) {
	t.Run("exact copy", func(t *testing.T) {
		l, a := tamper(t, func(a []events.Message) []events.Message {
			m := a[2]
			m.MsgID = ""
			return append(a, m)
		})
		ps := only(t, verify(t, l, VerifyOptions{}))
		if len(ps) != 1 || !hasProblem(ps, KindDuplicate, a[len(a)-1].Seq, "exact copy of the message at seq") {
			t.Fatalf("want one duplicate problem, got %v", ps)
		}
	})
	t.Run("reused commit id", func(t *testing.T) {
		l, a := tamper(t, func(a []events.Message) []events.Message {
			// A new, well-chained commit that reuses the id of commit 1.
			last := decode(t, a[len(a)-1])
			first := decode(t, a[1])
			c := events.Commit{ID: first.Commit.ID, Instance: "a", Time: last.Commit.Time, Prev: workflow.Sha256(a[len(a)-1].Data),
				Events: []events.Event{{ID: mustULID(t, "01JDZ8Q5N3C7K2W4X6Y8Z0A1B4"), Type: events.EventConsumed, Run: last.Commit.Run(),
					Data: &events.EventConsumedData{Name: "note", EventID: eventIDOf(t, a, "note")}}}}
			m := encode(t, c)
			m.MsgID = ""
			return append(a, m)
		})
		ps := only(t, verify(t, l, VerifyOptions{}))
		if len(ps) != 1 || !hasProblem(ps, KindDuplicate, a[len(a)-1].Seq, "is also the id of the commit at seq "+seqString(a[1].Seq)) {
			t.Fatalf("want one duplicate problem, got %v", ps)
		}
	})
}

func TestVerifyFoldProblem(t *testing.T) {
	// A well-chained commit the projection refuses: a task completed
	// after the run was cancelled. Two more after it: one merged problem.
	l, a := tamper(t, func(a []events.Message) []events.Message {
		for i := range 3 {
			last := decode(t, a[len(a)-1])
			c := events.Commit{ID: mustULID(t, "01JDZ8Q5N3C7K2W4X6Y8Z0A1C"+string(rune('0'+i))), Instance: "a", Time: last.Commit.Time, Prev: workflow.Sha256(a[len(a)-1].Data),
				Events: []events.Event{{ID: mustULID(t, "01JDZ8Q5N3C7K2W4X6Y8Z0A1D"+string(rune('0'+i))), Type: events.TaskCompleted, Run: last.Commit.Run(),
					Data: &events.TaskCompletedData{TaskID: taskC, Output: []byte("late")}}}}
			a = append(a, encode(t, c))
		}
		return a
	})
	ps := only(t, verify(t, l, VerifyOptions{}))
	n := len(a)
	if len(ps) != 1 || ps[0].Kind != KindFold || ps[0].Seq != a[n-3].Seq || ps[0].Through != a[n-1].Seq ||
		!strings.Contains(ps[0].Detail, "terminal state") || !strings.Contains(ps[0].Detail, "2 messages after it") {
		t.Fatalf("want one fold problem spanning the three commits, got %v", ps)
	}
}

func TestVerifyHeaderMismatch(t *testing.T) {
	l, a := tamper(t, func(a []events.Message) []events.Message {
		h := make(map[string][]string)
		for k, v := range a[1].Header {
			h[k] = v
		}
		h[events.HeaderEvents] = []string{"workflow.completed"}
		a[1].Header = h
		return a
	})
	ps := only(t, verify(t, l, VerifyOptions{}))
	if len(ps) != 1 || !hasProblem(ps, KindHeader, a[1].Seq, "Runlog-Events") {
		t.Fatalf("want one header problem, got %v", ps)
	}
}

func TestVerifyAnchors(t *testing.T) {
	l := cleanLog(t)
	rep := verify(t, l, VerifyOptions{Heads: true})
	anchors := rep.Heads

	// The last commit of "a" removed: the chain alone cannot tell.
	cut, a := tamper(t, func(a []events.Message) []events.Message { return a[:len(a)-1] })
	if rep := verify(t, cut, VerifyOptions{}); !rep.OK() {
		t.Fatalf("a truncated tail is invisible to the chain, got %v", rep.Problems)
	}
	ps := only(t, verify(t, cut, VerifyOptions{Anchors: anchors}))
	if len(ps) != 1 || ps[0].Kind != KindAnchor || !strings.Contains(ps[0].Detail, "last at seq "+seqString(a[len(a)-1].Seq)) {
		t.Fatalf("want one anchor problem, got %v", ps)
	}

	// A whole instance removed.
	msgs := all(t, l)
	gone := craft(t, []string{"b", "c"}, msgs)
	rep = verify(t, gone, VerifyOptions{Anchors: anchors})
	if len(rep.Problems) != 1 || rep.Problems[0].Instance != "a" || rep.Problems[0].Kind != KindAnchor {
		t.Fatalf("want one anchor problem for the missing instance, got %v", rep.Problems)
	}
	// Anchors survive a copy into another log (new sequences).
	copied := craft(t, []string{"c", "b", "a"}, msgs)
	if rep := verify(t, copied, VerifyOptions{Anchors: anchors}); !rep.OK() {
		t.Fatalf("copy: %v", rep.Problems)
	}
}

func TestVerifyEmptyAndInvalidIDs(t *testing.T) {
	l := cleanLog(t)
	rep := verify(t, l, VerifyOptions{IDs: []string{"a", "nope"}})
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != KindEmpty || rep.Problems[0].Instance != "nope" {
		t.Fatalf("want an empty problem for %q, got %v", "nope", rep.Problems)
	}
	if _, err := Verify(t.Context(), l, VerifyOptions{IDs: []string{""}}); !errors.Is(err, workflow.ErrInvalidInstanceID) {
		t.Fatalf("empty id: %v", err)
	}
}

func TestVerifyMaxProblems(t *testing.T) {
	msgs := all(t, cleanLog(t))
	for _, id := range order {
		msgs[id] = append(msgs[id], events.Message{Data: []byte("junk")})
	}
	l := craft(t, order, msgs)
	rep := verify(t, l, VerifyOptions{MaxProblems: 2})
	if !rep.Incomplete || len(rep.Problems) != 2 || rep.Instances != 2 || rep.OK() {
		t.Fatalf("want 2 problems in 2 instances and incomplete, got %+v", rep)
	}
	if want := rep.Problems[1].Seq; rep.ReadThrough != want {
		t.Errorf("one pass over the log stopped; read through seq %d, want %d (the second problem's)", rep.ReadThrough, want)
	}
}

func TestVerifyReadError(t *testing.T) {
	l := cleanLog(t)
	l.Close()
	rep, err := Verify(t.Context(), l, VerifyOptions{IDs: []string{"a"}})
	if !errors.Is(err, memlog.ErrClosed) || rep == nil {
		t.Fatalf("want the read error, got %v", err)
	}
}

func TestVerifyCancelled(t *testing.T) {
	l := cleanLog(t)
	ctx, cancel := contextWithCancel(t)
	cancel()
	if _, err := Verify(ctx, l, VerifyOptions{}); err == nil {
		t.Fatal("want an error from a cancelled context")
	}
}

// appendCommit appends a commit chained to the last message, with one
// event of the given run.
func appendCommit(t *testing.T, msgs []events.Message, prev workflow.Hash32, run ulid.ULID, p events.Payload, n int) []events.Message {
	t.Helper()
	last := decode(t, msgs[len(msgs)-1])
	c := events.Commit{ID: mustULID(t, "01JDZ8Q5N3C7K2W4X6Y8Z0A1E"+string(rune('0'+n))), Instance: last.Commit.Instance, Time: last.Commit.Time, Prev: prev,
		Events: []events.Event{{ID: mustULID(t, "01JDZ8Q5N3C7K2W4X6Y8Z0A1F"+string(rune('0'+n))), Type: p.EventType(), Run: run, Data: p}}}
	return append(msgs, encode(t, c))
}

func TestVerifyRunReused(t *testing.T) {
	// "b" had two runs, both gone: a third that takes the first one's id.
	l, b := tamperOn(t, "b", func(b []events.Message) []events.Message {
		rec := decode(t, b[0])
		first := rec.Commit.Run()
		return appendCommit(t, b, workflow.Sha256(b[len(b)-1].Data), first, &events.SnapshotCreatedData{DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}}, 0)
	})
	rep := verify(t, l, VerifyOptions{})
	ps := problemsOf(rep, "b")
	if len(rep.Problems) != 1 || len(ps) != 1 || !hasProblem(ps, KindRun, b[len(b)-1].Seq, "the id of the run created at seq "+seqString(b[0].Seq)) {
		t.Fatalf("want one run problem, got %v", rep.Problems)
	}
}

func TestVerifySecondHistory(t *testing.T) {
	// A commit claiming to be the first of a history, after others.
	l, a := tamper(t, func(a []events.Message) []events.Message {
		rec := decode(t, a[len(a)-1])
		run := rec.Commit.Run()
		return appendCommit(t, a, workflow.Hash32{}, run, &events.SnapshotDeletedData{Reason: "x"}, 1)
	})
	ps := only(t, verify(t, l, VerifyOptions{}))
	if len(ps) != 1 || !hasProblem(ps, KindChain, a[len(a)-1].Seq, "prev is empty") || ps[0].Seq != ps[0].Through {
		t.Fatalf("want one chain problem, got %v", ps)
	}
}
