package audit

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/runlog/runlog/internal/render"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// Change is one field that differs between two projected states, with
// short readable values: hashes and task ids cut to 12 hex characters,
// payloads as text when they are printable UTF-8 of at most 80 bytes,
// else as "<N bytes sha256:abcdef012345…>" ("<empty>" for an empty one).
// An empty From or To means the field was absent (no snapshot, no such
// task result, no pending signal, ...).
type Change struct {
	Field string `json:"field"`
	From  string `json:"from"`
	To    string `json:"to"`
}

// String returns "field: from -> to", with "-" for an absent value.
func (c Change) String() string {
	from, to := c.From, c.To
	if from == "" {
		from = "-"
	}
	if to == "" {
		to = "-"
	}
	return fmt.Sprintf("%s: %s -> %s", c.Field, from, to)
}

// Diff returns the fields that differ from a to b, in a fixed order:
//
//	instance, exists, run, runs, definition_hash, input, created_at,
//	state, position, last_completed_task, completed[<task>],
//	results[<task>], final_output, error, reason, by, at,
//	interrupted_at_task, signal.cancel, signal.pause, buffered[<name>],
//	priority, tags, deadline, retries[<task>], loops[<task>],
//	trace_parent, revision, last_seq
//
// Keys in brackets are sorted. completed[...] is the snapshot's task
// results; results[...] lists only the changes of the run's result store
// (kept after the run finishes) that completed[...] does not already
// show. Diff of a state with itself is empty.
func Diff(a, b projection.State) []Change {
	var out []Change
	ch := func(field, from, to string) {
		if from != to {
			out = append(out, Change{Field: field, From: from, To: to})
		}
	}
	sa, sb := snapshotOf(a), snapshotOf(b)
	// Tasks by name where either state's history names them.
	taskNames := render.Names(func(id workflow.TaskID) (string, bool) {
		if n, ok := b.TaskName(id); ok {
			return n, true
		}
		return a.TaskName(id)
	})
	positionOf := func(s *workflow.Snapshot) string {
		if k := s.State.Kind; k != workflow.InProgress && k != workflow.Paused {
			return ""
		}
		return render.PositionNamed(s.State.Position, taskNames)
	}
	optTask := func(id *workflow.TaskID) string {
		if id == nil {
			return ""
		}
		return render.Task(*id, taskNames)
	}
	snap := func(field string, f func(*workflow.Snapshot) string) {
		ch(field, snapField(sa, f), snapField(sb, f))
	}

	ch("instance", a.Instance, b.Instance)
	ch("exists", strconv.FormatBool(a.Exists), strconv.FormatBool(b.Exists))
	ch("run", ulidText(a.Run), ulidText(b.Run))
	ch("runs", strconv.Itoa(a.Runs), strconv.Itoa(b.Runs))
	snap("definition_hash", func(s *workflow.Snapshot) string { return short(s.DefinitionHash) })
	snap("input", func(s *workflow.Snapshot) string { return payloadText(s.InitialInput) })
	snap("created_at", func(s *workflow.Snapshot) string { return timeText(s.CreatedAt) })
	snap("state", func(s *workflow.Snapshot) string { return s.State.Kind.String() })
	snap("position", positionOf)
	snap("last_completed_task", func(s *workflow.Snapshot) string { return optTask(s.State.LastCompletedTask) })

	completed := diffMap("completed", completedOf(sa), completedOf(sb), payloadText, taskNames)
	out = append(out, completed...)
	shown := make(map[string]Change, len(completed))
	for _, c := range completed {
		shown[strings.TrimPrefix(c.Field, "completed")] = c
	}
	for _, c := range diffMap("results", a.Results, b.Results, payloadText, taskNames) {
		if s, ok := shown[strings.TrimPrefix(c.Field, "results")]; ok && s.From == c.From && s.To == c.To {
			continue
		}
		out = append(out, c)
	}

	snap("final_output", func(s *workflow.Snapshot) string {
		if s.State.Kind != workflow.Completed {
			return ""
		}
		return payloadText(s.State.FinalOutput)
	})
	snap("error", func(s *workflow.Snapshot) string { return optQuote(s.State.Error) })
	snap("reason", func(s *workflow.Snapshot) string { return optQuote(s.State.Reason) })
	snap("by", func(s *workflow.Snapshot) string { return s.State.By })
	snap("at", func(s *workflow.Snapshot) string { return timeText(s.State.At) })
	snap("interrupted_at_task", func(s *workflow.Snapshot) string { return optTask(s.State.InterruptedAtTask) })

	for _, k := range workflow.SignalKinds() {
		ch("signal."+k.String(), signalOf(a, k), signalOf(b, k))
	}
	names := slices.Collect(maps.Keys(a.Buffered))
	for n := range b.Buffered {
		if _, ok := a.Buffered[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		ch("buffered["+n+"]", bufferedText(a.Buffered[n]), bufferedText(b.Buffered[n]))
	}

	snap("priority", func(s *workflow.Snapshot) string { return priorityText(s.TaskPriority) })
	snap("tags", func(s *workflow.Snapshot) string { return strings.Join(s.TaskTags, ",") })
	snap("deadline", func(s *workflow.Snapshot) string { return deadlineText(s.TaskDeadline, nil) })
	out = append(out, diffMap("retries", retriesOf(sa), retriesOf(sb), retryText, taskNames)...)
	out = append(out, diffMap("loops", loopsOf(sa), loopsOf(sb), func(n uint32) string { return strconv.FormatUint(uint64(n), 10) }, taskNames)...)
	snap("trace_parent", func(s *workflow.Snapshot) string { return s.TraceParent })
	ch("revision", seqText(a.RevisionSeq), seqText(b.RevisionSeq))
	ch("last_seq", seqText(a.LastSeq), seqText(b.LastSeq))
	return out
}

func snapshotOf(s projection.State) *workflow.Snapshot {
	if !s.Exists {
		return nil
	}
	return s.Snapshot
}

func snapField(s *workflow.Snapshot, f func(*workflow.Snapshot) string) string {
	if s == nil {
		return ""
	}
	return f(s)
}

func completedOf(s *workflow.Snapshot) map[workflow.TaskID][]byte {
	if s == nil {
		return nil
	}
	return s.State.CompletedTasks
}

func retriesOf(s *workflow.Snapshot) map[workflow.TaskID]workflow.TaskRetryState {
	if s == nil {
		return nil
	}
	return s.TaskRetries
}

func loopsOf(s *workflow.Snapshot) map[workflow.TaskID]uint32 {
	if s == nil {
		return nil
	}
	return s.LoopIterations
}

func optQuote(s string) string {
	if s == "" {
		return ""
	}
	return quote(s)
}

func seqText(n uint64) string { return strconv.FormatUint(n, 10) }

func signalOf(s projection.State, k workflow.SignalKind) string {
	r, ok := s.Signals[k]
	if !ok {
		return ""
	}
	return signalText(r)
}

func bufferedText(q []projection.Buffered) string {
	if len(q) == 0 {
		return ""
	}
	ids := make([]string, len(q))
	for i, b := range q {
		ids[i] = b.ID.String()
	}
	s := plural(len(q), "event") + ", oldest " + ids[0] + " " + payloadText(q[0].Payload)
	if len(q) > 1 {
		s += ", newest " + ids[len(ids)-1]
	}
	if len(q) > 2 {
		// The ids name the queue exactly.
		s += ", ids sha256:" + short(workflow.Sha256([]byte(strings.Join(ids, ","))))
	}
	return s
}

// diffMap compares two maps keyed by task id, in task id order.
func diffMap[V any](field string, a, b map[workflow.TaskID]V, text func(V) string, names render.Names) []Change {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y workflow.TaskID) int { return cmp.Compare(x.String(), y.String()) })
	var out []Change
	for _, k := range keys {
		va, oka := a[k]
		vb, okb := b[k]
		from, to := "", ""
		if oka {
			from = text(va)
		}
		if okb {
			to = text(vb)
		}
		if from != to {
			out = append(out, Change{Field: fmt.Sprintf("%s[%s]", field, render.Task(k, names)), From: from, To: to})
		}
	}
	return out
}
