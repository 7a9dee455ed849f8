package lin

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/anishathalye/porcupine"
	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// opKind names the operations of the workload.
type opKind uint8

const (
	opPrepare      opKind = iota + 1 // PrepareRun under Input.Policy with definition Input.Def
	opCheckpoint                     // SaveSnapshot of the client's snapshot plus one task, at the client's revision
	opTaskResult                     // SaveTaskResult fenced by the client's run
	opSignal                         // StoreSignal of Input.Signal
	opCheckControl                   // CheckControlSignals
	opUnpause                        // Unpause
	opDelete                         // DeleteSnapshot
	opLoadSnapshot                   // LoadSnapshot
	opLoad                           // Load (the whole projection)
)

var opNames = map[opKind]string{
	opPrepare: "PrepareRun", opCheckpoint: "SaveSnapshot", opTaskResult: "SaveTaskResult",
	opSignal: "StoreSignal", opCheckControl: "CheckControlSignals", opUnpause: "Unpause",
	opDelete: "DeleteSnapshot", opLoadSnapshot: "LoadSnapshot", opLoad: "Load",
}

func (k opKind) String() string { return opNames[k] }

// errClass is the class of an operation's error: the sentinel it
// matches, or none.
type errClass uint8

const (
	errNone errClass = iota
	errNotFound
	errAlreadyExists
	errDefMismatch
	errStale
	errTerminal
	errCannotCancel
	errCannotPause
	errNotPaused
	errConcurrent // every attempt lost: nothing was written
	errUnexpected // anything else: the test fails
)

var errNames = [...]string{"ok", "NotFound", "AlreadyExists", "DefinitionMismatch", "Stale", "Terminal",
	"CannotCancel", "CannotPause", "NotPaused", "ConcurrentModification", "UNEXPECTED"}

func (e errClass) String() string { return errNames[e] }

// input is what a client asked. Only the fields of Op are set.
type input struct {
	ID     string
	Op     opKind
	Policy workflow.ConflictPolicy // opPrepare
	Def    uint8                   // opPrepare: which definition hash (0 or 1)
	Signal workflow.SignalKind     // opSignal
	// opCheckpoint: the revision the client's snapshot was read at (which
	// may be stale), the number of task results in that snapshot, and the
	// state the checkpoint moves it to (InProgress: one more task;
	// Completed, Failed: terminal). opTaskResult: Rev.Run only.
	Rev    lifecycle.Revision
	Tasks  int
	Target workflow.StateKind
	// opCheckpoint, opTaskResult: the name of the task completed (unique
	// in the workload); not used by the model.
	taskName string
	// The actor the operation runs as, unique in the workload: it finds
	// the operation's commit in the log.
	Actor string
}

// output is what the store answered, reduced to what the model checks.
// Only the fields of the operation and error class are set.
type output struct {
	Err errClass
	// NotFound: the snapshot had been deleted (not never created).
	Deleted bool
	// PrepareRun: the outcome, the run (new or existing), the run it
	// replaced. AlreadyExists and Stale: the current run. Load and
	// LoadSnapshot: the run.
	Outcome lifecycle.Outcome
	Run     ulid.ULID
	PrevRun ulid.ULID
	// A revision the store reported: PrepareRun's Seq, a write's new
	// revision, StaleError.Current.Seq, LoadSnapshot's, Load's Revision.
	Seq uint64
	// The state kind reported (a snapshot's, or TerminalError.State,
	// SignalRefusedError.State, NotPausedError.State, the status of
	// AlreadyExistsError mapped back to a kind).
	Kind workflow.StateKind
	// The number of task results in the snapshot reported.
	Tasks int
	// Load: whether a snapshot exists and which signals are pending, the
	// definition. DefinitionMismatch: the stored definition.
	Exists        bool
	Cancel, Pause bool
	Def           uint8
	// Load: the sequence of the instance's last commit.
	LastSeq uint64
	// CheckControlSignals: what it applied.
	Control lifecycle.ControlSignal
	// The commit the operation appended (0: none) and the instance's
	// last commit before it, found in the log after the run by the
	// operation's actor (every operation runs with its own).
	Wrote, After uint64
	// errUnexpected: the error text, for the visualization.
	Text string
}

// state is the model's state of one instance id. It is a comparable value
// so that porcupine can cache visited states; fields that do not matter
// are kept zero (canonical) so that equal situations compare equal.
type state struct {
	Exists bool
	Ever   bool // a snapshot existed once (NotFoundError.Deleted)
	Run    ulid.ULID
	Def    uint8
	Kind   workflow.StateKind
	Tasks  int
	Cancel bool // a cancel is pending
	Pause  bool // a pause is pending
	// Rev is the snapshot's revision and Last the sequence of the
	// instance's last commit. The model cannot predict stream sequences:
	// it takes them from the outputs (a write's output names the commit
	// it wrote and the one before it).
	Rev  uint64
	Last uint64
}

// fresh is the state after a run is created by a commit at seq.
func (s state) fresh(run ulid.ULID, def uint8, seq uint64) state {
	return state{Exists: true, Ever: true, Run: run, Def: def, Kind: workflow.InProgress, Rev: seq, Last: seq}
}

// step is the sequential specification of the store, one operation on one
// instance: whether the store may answer out to in from state s, and the
// state after. It follows docs/STORE.md.
//
// Every operation that appends a commit says which (out.Wrote) and which
// commit was the instance's last before it (out.After): it must build on
// the model's last commit, so writes take effect in the order of the log,
// one at a time, and an operation that writes must be one the
// specification says writes, and the other way round.
func step(s state, in input, out output) (bool, state) {
	switch out.Err {
	case errUnexpected:
		// Already failed the test; accept it to keep checking the rest.
		if out.Wrote != 0 {
			s.Last = out.Wrote
		}
		return true, s
	case errConcurrent:
		// Every attempt lost the sequence check: nothing was stored.
		return out.Wrote == 0, s
	}
	if out.Wrote != 0 {
		if out.After != s.Last || out.Wrote <= s.Last {
			return false, s
		}
	}
	ok, n, wrote := decide(s, in, out)
	if !ok || wrote != (out.Wrote != 0) {
		return false, s
	}
	if wrote {
		n.Last = out.Wrote
	}
	return true, n
}

// decide is the specification of one operation: whether out is a valid
// answer, the state after, and whether the operation appends a commit.
// A commit that changes the snapshot is its new revision, out.Wrote.
func decide(s state, in input, out output) (ok bool, n state, wrote bool) {
	notFound := func() (bool, state, bool) {
		return out.Err == errNotFound && out.Deleted == s.Ever, s, false
	}
	switch in.Op {
	case opPrepare:
		if !s.Exists {
			ok := out.Err == errNone && out.Outcome == lifecycle.Created && !out.Run.IsZero() && out.Run != s.Run &&
				out.Seq == out.Wrote && out.Kind == workflow.InProgress && out.Tasks == 0
			return ok, s.fresh(out.Run, in.Def, out.Wrote), true
		}
		if in.Def != s.Def {
			return out.Err == errDefMismatch && out.Def == s.Def, s, false
		}
		switch in.Policy {
		case workflow.Fail:
			return out.Err == errAlreadyExists && out.Run == s.Run && out.Kind == s.Kind, s, false
		case workflow.UseExisting:
			ok := out.Err == errNone && out.Outcome == lifecycle.UsedExisting && out.Run == s.Run && out.Kind == s.Kind &&
				out.Tasks == s.Tasks && out.Seq == s.Rev
			return ok, s, false
		case workflow.TerminateExisting:
			// Deleted, signals cleared and created in one commit.
			ok := out.Err == errNone && out.Outcome == lifecycle.Replaced && out.PrevRun == s.Run && !out.Run.IsZero() &&
				out.Run != s.Run && out.Seq == out.Wrote && out.Kind == workflow.InProgress && out.Tasks == 0
			return ok, s.fresh(out.Run, in.Def, out.Wrote), true
		}
		return false, s, false

	case opCheckpoint, opTaskResult:
		if !s.Exists {
			return notFound()
		}
		if in.Rev.Run != s.Run {
			return out.Err == errStale && out.Run == s.Run && out.Seq == s.Rev, s, false
		}
		if s.Kind.Terminal() {
			return out.Err == errTerminal && out.Kind == s.Kind, s, false
		}
		if in.Op == opTaskResult {
			// Fenced by run only; a paused run keeps the result.
			ok := out.Err == errNone && out.Seq == out.Wrote
			s.Tasks++
			s.Rev = out.Wrote
			return ok, s, true
		}
		if in.Rev.Seq != s.Rev {
			return out.Err == errStale && out.Run == s.Run && out.Seq == s.Rev, s, false
		}
		// At the current revision the client's snapshot is the stored
		// one: in progress, with the same task results. Anything else
		// means a change that did not move the revision.
		ok := out.Err == errNone && s.Kind == workflow.InProgress && in.Tasks == s.Tasks && out.Seq == out.Wrote
		s.Kind, s.Tasks, s.Rev = in.Target, in.Tasks+1, out.Wrote
		if in.Target.Terminal() {
			s.Tasks = 0 // completed and failed snapshots drop their results
		}
		return ok, s, true

	case opSignal:
		if !s.Exists {
			return notFound()
		}
		switch {
		case s.Kind == workflow.Completed || s.Kind == workflow.Failed:
			want := errCannotCancel
			if in.Signal == workflow.Pause {
				want = errCannotPause
			}
			return out.Err == want && out.Kind == s.Kind, s, false
		case in.Signal == workflow.Pause && s.Kind == workflow.Cancelled:
			return out.Err == errCannotPause && out.Kind == s.Kind, s, false
		case in.Signal == workflow.Cancel && s.Kind == workflow.Cancelled,
			in.Signal == workflow.Pause && s.Kind == workflow.Paused:
			return out.Err == errNone, s, false // already there: nothing written
		}
		if in.Signal == workflow.Cancel {
			s.Cancel = true
		} else {
			s.Pause = true
		}
		// A signal does not change the revision.
		return out.Err == errNone, s, true

	case opCheckControl:
		if !s.Exists {
			return notFound()
		}
		switch {
		case s.Kind != workflow.InProgress:
		case s.Cancel:
			s.Kind, s.Cancel, s.Rev = workflow.Cancelled, false, out.Wrote
			return out.Err == errNone && out.Control == lifecycle.ControlCancelled, s, true
		case s.Pause:
			s.Kind, s.Pause, s.Rev = workflow.Paused, false, out.Wrote
			return out.Err == errNone && out.Control == lifecycle.ControlPaused, s, true
		}
		return out.Err == errNone && out.Control == lifecycle.ControlNone, s, false

	case opUnpause:
		if !s.Exists {
			return notFound()
		}
		if s.Kind != workflow.Paused {
			return out.Err == errNotPaused && out.Kind == s.Kind, s, false
		}
		s.Kind, s.Pause, s.Rev = workflow.InProgress, false, out.Wrote
		if s.Cancel {
			// A cancel requested while paused is applied by the unpause.
			s.Kind, s.Cancel = workflow.Cancelled, false
		}
		// The snapshot returned is the one this unpause produced.
		return out.Err == errNone && out.Kind == s.Kind && out.Tasks == s.Tasks, s, true

	case opDelete:
		if !s.Exists {
			return notFound()
		}
		// The snapshot goes with its signals; the last run is remembered.
		return out.Err == errNone, state{Ever: true, Run: s.Run, Rev: out.Wrote}, true

	case opLoadSnapshot:
		if !s.Exists {
			return notFound()
		}
		return out.Err == errNone && out.Run == s.Run && out.Kind == s.Kind && out.Tasks == s.Tasks && out.Seq == s.Rev, s, false

	case opLoad:
		ok := out.Err == errNone && out.Exists == s.Exists && out.Run == s.Run && out.Cancel == s.Cancel && out.Pause == s.Pause &&
			out.Seq == s.Rev && out.LastSeq == s.Last
		if s.Exists && (out.Kind != s.Kind || out.Tasks != s.Tasks || out.Def != s.Def) {
			ok = false
		}
		return ok, s, false
	}
	return false, s, false
}

// model is the porcupine model: one partition per instance id, the state
// above per partition.
var model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byID := map[string][]porcupine.Operation{}
		var ids []string
		for _, op := range history {
			id := op.Input.(input).ID
			if _, ok := byID[id]; !ok {
				ids = append(ids, id)
			}
			byID[id] = append(byID[id], op)
		}
		parts := make([][]porcupine.Operation, 0, len(ids))
		for _, id := range ids {
			parts = append(parts, byID[id])
		}
		return parts
	},
	Init: func() any { return state{} },
	Step: func(s, in, out any) (bool, any) {
		ok, n := step(s.(state), in.(input), out.(output))
		return ok, n
	},
	Equal: func(a, b any) bool { return a.(state) == b.(state) },
	Hash: func(v any) uint64 {
		s := v.(state)
		h := fnv.New64a()
		fmt.Fprintf(h, "%t%t%x%d%d%d%t%t%d.%d", s.Exists, s.Ever, s.Run[:], s.Def, s.Kind, s.Tasks, s.Cancel, s.Pause, s.Rev, s.Last)
		return h.Sum64()
	},
	DescribeOperation: func(in, out any) string { return describeOp(in.(input), out.(output)) },
	DescribeState:     func(s any) string { return describeState(s.(state)) },
}

func shortRun(r ulid.ULID) string {
	if r.IsZero() {
		return "-"
	}
	s := r.String()
	return s[len(s)-6:]
}

func describeOp(in input, out output) string {
	d := describeCall(in, out)
	if out.Wrote != 0 {
		d += fmt.Sprintf(" [wrote %d after %d]", out.Wrote, out.After)
	}
	return d
}

func describeCall(in input, out output) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s(", in.Op)
	switch in.Op {
	case opPrepare:
		fmt.Fprintf(&b, "%s, def%d", in.Policy, in.Def)
	case opCheckpoint:
		fmt.Fprintf(&b, "run %s rev %d tasks %d → %s", shortRun(in.Rev.Run), in.Rev.Seq, in.Tasks, in.Target)
	case opTaskResult:
		fmt.Fprintf(&b, "run %s", shortRun(in.Rev.Run))
	case opSignal:
		fmt.Fprintf(&b, "%s", in.Signal)
	}
	b.WriteString(") → ")
	if out.Err != errNone {
		fmt.Fprintf(&b, "%s", out.Err)
		switch out.Err {
		case errNotFound:
			fmt.Fprintf(&b, " deleted=%t", out.Deleted)
		case errStale:
			fmt.Fprintf(&b, " current run %s rev %d", shortRun(out.Run), out.Seq)
		case errAlreadyExists:
			fmt.Fprintf(&b, " run %s %s", shortRun(out.Run), out.Kind)
		case errTerminal, errCannotCancel, errCannotPause, errNotPaused:
			fmt.Fprintf(&b, " %s", out.Kind)
		case errDefMismatch:
			fmt.Fprintf(&b, " stored def%d", out.Def)
		case errUnexpected:
			fmt.Fprintf(&b, " %s", out.Text)
		}
		return b.String()
	}
	switch in.Op {
	case opPrepare:
		fmt.Fprintf(&b, "%s run %s rev %d", out.Outcome, shortRun(out.Run), out.Seq)
		if out.Outcome == lifecycle.Replaced {
			fmt.Fprintf(&b, " (was %s)", shortRun(out.PrevRun))
		}
		if out.Outcome == lifecycle.UsedExisting {
			fmt.Fprintf(&b, " %s tasks %d", out.Kind, out.Tasks)
		}
	case opCheckpoint, opTaskResult:
		fmt.Fprintf(&b, "rev %d", out.Seq)
	case opCheckControl:
		b.WriteString(out.Control.String())
	case opUnpause:
		fmt.Fprintf(&b, "%s tasks %d", out.Kind, out.Tasks)
	case opLoadSnapshot:
		fmt.Fprintf(&b, "run %s rev %d %s tasks %d", shortRun(out.Run), out.Seq, out.Kind, out.Tasks)
	case opLoad:
		fmt.Fprintf(&b, "exists=%t run %s rev %d last %d", out.Exists, shortRun(out.Run), out.Seq, out.LastSeq)
		if out.Exists {
			fmt.Fprintf(&b, " %s tasks %d def%d", out.Kind, out.Tasks, out.Def)
		}
		fmt.Fprintf(&b, " cancel=%t pause=%t", out.Cancel, out.Pause)
	default:
		b.WriteString("ok")
	}
	return b.String()
}

func describeState(s state) string {
	if !s.Exists {
		return fmt.Sprintf("no snapshot (ever=%t, last run %s, rev %d, last %d)", s.Ever, shortRun(s.Run), s.Rev, s.Last)
	}
	return fmt.Sprintf("run %s def%d %s tasks %d rev %d last %d cancel=%t pause=%t", shortRun(s.Run), s.Def, s.Kind, s.Tasks, s.Rev, s.Last, s.Cancel, s.Pause)
}
