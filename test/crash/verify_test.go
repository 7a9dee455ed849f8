package crash

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// figures sums up the ledger after a verification.
type figures struct {
	instances      int // instances with a history
	messages       int // commits in those histories
	acked          int // operations acknowledged (nil error)
	ackedByKind    map[opKind]int
	ackedNoop      int // acknowledged decisions that rightly wrote nothing
	refused        int // domain refusals (nothing written)
	refusedProbe   int // ... of which fail-probes refused with ErrAlreadyExists
	unknown        int // errors of unknown outcome
	unknownLanded  int // ... of which the history holds the commit
	unknownTimeout int // ... of which ended with the operation's deadline
	lost           int // acknowledged but missing: must be 0
	auditInstances int
}

func (f figures) String() string {
	kinds := make([]string, 0, len(f.ackedByKind))
	for _, k := range slices.Sorted(maps.Keys(f.ackedByKind)) {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, f.ackedByKind[k]))
	}
	return fmt.Sprintf("%d decisions acknowledged (%s; %d of them rightly wrote nothing), %d refused (%d of them fail-probes: ErrAlreadyExists), %d unknown outcomes (%d landed, %d did not; %d ran into their deadline), %d lost; %d instances, %d commits, audit.Verify clean on %d instances",
		f.acked, strings.Join(kinds, ", "), f.ackedNoop, f.refused, f.refusedProbe, f.unknown, f.unknownLanded, f.unknown-f.unknownLanded, f.unknownTimeout, f.lost,
		f.instances, f.messages, f.auditInstances)
}

// commit is a commit of a history, with the token that names the
// operation that wrote it.
type commit struct {
	seq   uint64
	token string
	types []events.Type
	run   string // the run a snapshot.created in it starts
}

// model is an instance's state as the landed operations of its ledger
// make it.
type model struct {
	exists, cancelled bool
	runTok            string // the token of the create or terminate of the current run
	run               string // its run id
	tasks             map[string]bool
	pending           string // the token of the pending cancel signal
}

// verifyAll checks every ledger against the store, with the writers
// stopped:
//   - every acknowledged decision's commit is in its instance's history,
//     at the sequence the caller was given, with the run it was given;
//   - refused decisions wrote nothing; acknowledged no-ops wrote nothing;
//   - the history holds exactly the landed operations, in ledger order,
//     each commit whole (a TerminateExisting deletes, clears the pending
//     signal and creates, in one commit) and allowed where it lands (no
//     instance created twice under Fail);
//   - every instance folds, and its folded state is the model's;
//   - ListInstances lists exactly the instances with a history;
//   - audit.Verify finds no problem.
func verifyAll(t *testing.T, ctx context.Context, js *jetstream.Log, ws []*worker) figures {
	t.Helper()
	f := figures{ackedByKind: make(map[opKind]int)}
	cancels := make(map[workflow.TaskID]string)
	for _, w := range ws {
		for _, in := range w.insts {
			for _, o := range in.ops {
				if o.kind == opCancel {
					cancels[workflow.NewTaskID(o.token)] = o.token
				}
			}
		}
	}
	fresh, err := lifecycle.New(js, lifecycle.Config{CacheSize: -1})
	if err != nil {
		t.Fatalf("lifecycle.New: %v", err)
	}
	withHistory := make(map[string]bool)
	for _, w := range ws {
		for _, in := range w.insts {
			n := verifyInstance(t, ctx, js, fresh, in, cancels, &f)
			if n > 0 {
				withHistory[in.id] = true
				f.instances++
				f.messages += n
			}
		}
	}

	var listed []string
	for after := ""; ; {
		page, err := fresh.ListInstances(ctx, after, 500)
		if err != nil {
			t.Fatalf("ListInstances: %v", err)
		}
		if len(page) == 0 {
			break
		}
		listed = append(listed, page...)
		after = page[len(page)-1]
	}
	if want := slices.Sorted(maps.Keys(withHistory)); !slices.Equal(listed, want) {
		t.Errorf("ListInstances lists %d instances, the ledgers have %d with a history:\nlisted %q\nwant   %q", len(listed), len(want), listed, want)
	}

	rep, err := audit.Verify(ctx, js, audit.VerifyOptions{})
	if err != nil {
		t.Fatalf("audit.Verify: %v", err)
	}
	for _, p := range rep.Problems {
		t.Errorf("audit.Verify: %v", p)
	}
	if rep.Instances != len(withHistory) {
		t.Errorf("audit.Verify verified %d instances, want %d", rep.Instances, len(withHistory))
	}
	f.auditInstances = rep.Instances
	return f
}

// verifyInstance checks one instance's ledger against its history and
// returns the number of commits in it.
func verifyInstance(t *testing.T, ctx context.Context, js *jetstream.Log, fresh *lifecycle.Store, in *inst, cancels map[workflow.TaskID]string, f *figures) int {
	t.Helper()
	var hist []commit
	byToken := make(map[string]int)
	for m, err := range js.Read(ctx, in.id, 0) {
		if err != nil {
			t.Fatalf("read %q: %v", in.id, err)
		}
		rec, err := events.Decode(m, in.id)
		if err != nil {
			t.Errorf("instance %q: %v", in.id, err)
			return len(hist)
		}
		c := commit{seq: rec.Seq, types: rec.Commit.Types(), token: tokenOf(&rec.Commit, cancels)}
		for _, e := range rec.Commit.Events {
			if e.Type == events.SnapshotCreated {
				c.run = e.Run.String()
			}
		}
		if c.token == "" {
			t.Errorf("instance %q: commit at seq %d (%v) carries no operation token: not written by this test", in.id, c.seq, c.types)
		} else if at, dup := byToken[c.token]; dup {
			t.Errorf("instance %q: operation %s written twice, at seq %d and %d", in.id, c.token, hist[at].seq, c.seq)
		}
		byToken[c.token] = len(hist)
		hist = append(hist, c)
	}

	st, err := projection.Fold(in.id, js.Read(ctx, in.id, 0))
	if err != nil {
		t.Errorf("instance %q does not fold: %v", in.id, err)
		return len(hist)
	}
	loaded, err := fresh.Load(ctx, in.id)
	if err != nil {
		t.Errorf("instance %q: Load: %v", in.id, err)
	} else if loaded.LastSeq != st.LastSeq || loaded.Head != st.Head {
		t.Errorf("instance %q: Load is at seq %d, the fold at %d", in.id, loaded.LastSeq, st.LastSeq)
	}

	m := model{}
	next := 0 // index in hist of the next landed operation's commit
	for _, o := range in.ops {
		at, landed := byToken[o.token]
		where := fmt.Sprintf("instance %q: %s %s", in.id, o.kind, o.token)
		switch o.outcome {
		case acked:
			f.acked++
			f.ackedByKind[o.kind]++
			want := true
			switch {
			case o.kind == opSignal && m.exists && m.cancelled:
				want = false // cancel of a cancelled run: a no-op
			case o.kind == opCancel && !o.applied:
				want = false
				if m.exists && !m.cancelled && m.pending != "" {
					t.Errorf("%s: reported nothing to apply, but cancel %s was pending on the running instance", where, m.pending)
				}
			}
			if !want {
				f.ackedNoop++
			}
			switch {
			case want && !landed:
				f.lost++
				t.Errorf("LOST: %s was acknowledged (seq %d) but the history has no commit of it", where, o.seq)
			case !want && landed:
				t.Errorf("%s: acknowledged as a no-op, yet the history has a commit of it at seq %d", where, hist[at].seq)
			}
		case refused:
			f.refused++
			if o.kind == opProbe && errors.Is(o.err, lifecycle.ErrAlreadyExists) {
				f.refusedProbe++
			}
			if landed {
				t.Errorf("%s was refused (%v) yet the history has a commit of it at seq %d", where, o.err, hist[at].seq)
			}
		case unknown:
			f.unknown++
			if landed {
				f.unknownLanded++
			}
			if errors.Is(o.err, context.DeadlineExceeded) {
				f.unknownTimeout++
			}
		}
		if !landed {
			continue
		}
		c := hist[at]
		if at != next {
			t.Errorf("%s: its commit is commit %d of the history (seq %d), want commit %d: the history is not in the order the operations were decided", where, at, c.seq, next)
		}
		next = at + 1
		if o.outcome == acked && o.seq != 0 && o.seq != c.seq {
			t.Errorf("%s: acknowledged at seq %d, the history has it at seq %d", where, o.seq, c.seq)
		}
		if o.outcome == acked && o.run != "" && o.run != c.run {
			t.Errorf("%s: acknowledged run %s, the commit creates run %s", where, o.run, c.run)
		}
		applyOp(t, where, &m, o, c)
	}
	for _, c := range hist[next:] {
		t.Errorf("instance %q: commit at seq %d (%s) matches no operation of the ledger, in order", in.id, c.seq, c.token)
	}

	// The fold is the model.
	switch {
	case st.Exists != m.exists:
		t.Errorf("instance %q: folded Exists is %v, want %v", in.id, st.Exists, m.exists)
	case !m.exists:
	default:
		if got := string(st.Snapshot.InitialInput); got != m.runTok {
			t.Errorf("instance %q: folded run was created by %s, want %s", in.id, got, m.runTok)
		}
		if st.Run.String() != m.run {
			t.Errorf("instance %q: folded run %s, want %s", in.id, st.Run, m.run)
		}
		want := workflow.InProgress
		if m.cancelled {
			want = workflow.Cancelled
		}
		if st.Snapshot.State.Kind != want {
			t.Errorf("instance %q: folded state %s, want %s", in.id, st.Snapshot.State.Kind, want)
		}
		if len(st.Results) != len(m.tasks) {
			t.Errorf("instance %q: %d task results in the current run, want %d", in.id, len(st.Results), len(m.tasks))
		}
		for tok := range m.tasks {
			if out, ok := st.Results[workflow.NewTaskID(tok)]; !ok || string(out) != tok {
				t.Errorf("instance %q: checkpoint %s not in the folded results", in.id, tok)
			}
		}
		sig, ok := st.Signals[workflow.Cancel]
		switch {
		case m.pending == "" && ok:
			t.Errorf("instance %q: cancel %q pending, want none", in.id, sig.Reason)
		case m.pending != "" && (!ok || sig.Reason != m.pending):
			t.Errorf("instance %q: pending cancel is %q (%v), want %s", in.id, sig.Reason, ok, m.pending)
		}
	}
	return len(hist)
}

// applyOp checks that landed operation o was allowed on m and that its
// commit c is whole, and applies it to m.
func applyOp(t *testing.T, where string, m *model, o op, c commit) {
	t.Helper()
	var want []events.Type
	switch o.kind {
	case opCreate, opProbe:
		if m.exists {
			t.Errorf("%s: created over an existing snapshot (run of %s) under policy Fail: the id was created twice", where, m.runTok)
		}
		want = []events.Type{events.SnapshotCreated}
	case opTerminate:
		if m.exists {
			want = append(want, events.SnapshotDeleted)
			if m.pending != "" {
				want = append(want, events.SignalCleared)
			}
		}
		want = append(want, events.SnapshotCreated)
	case opCheckpt:
		if !m.exists || m.cancelled {
			t.Errorf("%s: checkpoint landed on an instance that is not running", where)
		}
		want = []events.Type{events.CheckpointSaved}
	case opSignal:
		if !m.exists || m.cancelled {
			t.Errorf("%s: signal stored on an instance that is not running", where)
		}
		want = []events.Type{events.SignalStored}
	case opCancel:
		if !m.exists || m.cancelled || m.pending == "" {
			t.Errorf("%s: cancel applied with no pending cancel on a running instance", where)
		}
		want = []events.Type{events.WorkflowCancelled, events.SignalCleared}
	}
	if !slices.Equal(c.types, want) {
		t.Errorf("%s: commit at seq %d holds %v, want %v (a decision is one whole commit)", where, c.seq, c.types, want)
	}
	switch o.kind {
	case opCreate, opProbe, opTerminate:
		m.exists, m.cancelled, m.runTok, m.run, m.tasks, m.pending = true, false, o.token, c.run, map[string]bool{}, ""
	case opCheckpt:
		m.tasks[o.token] = true
	case opSignal:
		m.pending = o.token
	case opCancel:
		m.cancelled, m.pending = true, ""
	}
}

// tokenOf returns the token of the operation that wrote c: the input of a
// run it creates, the output of the task it completes, the reason of the
// signal it stores, the interrupted task of the cancel it applies.
func tokenOf(c *events.Commit, cancels map[workflow.TaskID]string) string {
	for _, e := range c.Events {
		switch d := e.Data.(type) {
		case *events.SnapshotCreatedData:
			return string(d.Input)
		case *events.SignalStoredData:
			return d.Reason
		case *events.CheckpointSavedData:
			for _, o := range d.Completed {
				return string(o.Output)
			}
		case *events.WorkflowCancelledData:
			if d.InterruptedAtTask != nil {
				return cancels[*d.InterruptedAtTask]
			}
		}
	}
	return ""
}
