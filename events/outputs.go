package events

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/runlog/runlog/workflow"
)

// TaskOutputs is a set of task results, at most one per task, in task id
// order: the results a checkpoint adds or changes
// ([CheckpointSavedData.Completed]).
//
// On the wire it is exactly a map[workflow.TaskID][]byte: a JSON object
// from each task id (hex, in order) to its output (base64, or null), so
// the schema is that of a map (TestOutputsAreAMap holds the two to the
// same bytes both ways). In memory it is a slice because a checkpoint
// nearly always carries one result, and a map of one entry costs a fold
// more than the rest of the checkpoint: its allocation when decoded, and
// an iteration whose memory is touched for that alone
// (BENCHMARKS.md §5.14).
//
// Decoding yields it in order, the last of duplicate keys winning (as a
// map's decoding keeps the last). Encoding writes it in order; a value
// built out of order is written sorted, and one that names a task twice
// cannot be encoded (the commit is refused with [ErrInvalidCommit]).
type TaskOutputs []TaskOutput

// TaskOutput is one task's result in [TaskOutputs].
type TaskOutput struct {
	Task   workflow.TaskID
	Output []byte
}

// Get returns the output of task, ok false if t has none.
func (t TaskOutputs) Get(task workflow.TaskID) (out []byte, ok bool) {
	for _, o := range t {
		if o.Task == task {
			return o.Output, true
		}
	}
	return nil, false
}

// Sort puts t in task id order, in place.
func (t TaskOutputs) Sort() {
	slices.SortStableFunc(t, func(a, b TaskOutput) int { return bytes.Compare(a.Task[:], b.Task[:]) })
}

// ordered reports whether t is in strictly increasing task id order (so
// with no task twice).
func (t TaskOutputs) ordered() bool {
	for i := 1; i < len(t); i++ {
		if bytes.Compare(t[i-1].Task[:], t[i].Task[:]) >= 0 {
			return false
		}
	}
	return true
}

// canonical returns t in order with each task once, keeping the last
// output of a task named twice (a decoded object's duplicate keys), in
// place.
func (t TaskOutputs) canonical() TaskOutputs {
	if t.ordered() {
		return t
	}
	t.Sort() // stable: of equal tasks, the last decoded stays last
	out := t[:0]
	for i, o := range t {
		if i+1 < len(t) && t[i+1].Task == o.Task {
			continue
		}
		out = append(out, o)
	}
	clear(t[len(out):])
	return out
}

// MarshalJSON writes t as the JSON object of a map[workflow.TaskID][]byte,
// as the commit codec does.
func (t TaskOutputs) MarshalJSON() ([]byte, error) {
	e := &encoder{}
	e.outputs(t)
	return e.b, e.err
}

// UnmarshalJSON reads the JSON object of a map[workflow.TaskID][]byte (or
// null) into t, replacing what t held, as the commit codec does.
func (t *TaskOutputs) UnmarshalJSON(data []byte) error {
	l := &lexer{data: data}
	if err := l.outputs(t); err != nil {
		return err
	}
	if err := l.end(); err != nil {
		return fmt.Errorf("task outputs: %w", err)
	}
	return nil
}
