package workflow

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Definition names a workflow definition for people: the workflow's name,
// a version label, and the names of its tasks. runlog never needs it to
// run a workflow (the definition hash and the task ids do that); it is
// recorded so that a history can be read by name ("at task
// reserve-stock") rather than by hash. A task's id is the SHA-256 of its
// name ([NewTaskID]), so the names give back the ids.
type Definition struct {
	Name    string   `json:"name"`
	Version string   `json:"version,omitempty"`
	Tasks   []string `json:"tasks,omitempty"`
}

// MaxDefinitionNames bounds the names of a definition (its tasks).
const MaxDefinitionNames = 10_000

// ErrInvalidDefinition is matched by the errors of [Definition.Validate].
var ErrInvalidDefinition = errors.New("workflow: invalid definition")

// Validate checks a definition: a name, valid UTF-8 everywhere, task
// names that are not empty and not repeated, at most
// [MaxDefinitionNames] of them.
func (d *Definition) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidDefinition, fmt.Sprintf(format, args...))
	}
	switch {
	case d.Name == "":
		return bad("no workflow name")
	case !utf8.ValidString(d.Name) || !utf8.ValidString(d.Version):
		return bad("the name or version of %q is not valid UTF-8", d.Name)
	case len(d.Tasks) > MaxDefinitionNames:
		return bad("%q names %d tasks, more than %d", d.Name, len(d.Tasks), MaxDefinitionNames)
	}
	seen := make(map[string]bool, len(d.Tasks))
	for _, t := range d.Tasks {
		switch {
		case t == "":
			return bad("%q has a task with no name", d.Name)
		case !utf8.ValidString(t):
			return bad("a task name of %q is not valid UTF-8", d.Name)
		case seen[t]:
			return bad("%q names task %q twice", d.Name, t)
		}
		seen[t] = true
	}
	return nil
}

// TaskName returns the name of the task with id, if the definition names
// it.
func (d *Definition) TaskName(id TaskID) (string, bool) {
	if d == nil {
		return "", false
	}
	for _, t := range d.Tasks {
		if NewTaskID(t) == id {
			return t, true
		}
	}
	return "", false
}

// Clone returns a deep copy of d.
func (d *Definition) Clone() *Definition {
	if d == nil {
		return nil
	}
	c := *d
	c.Tasks = append([]string(nil), d.Tasks...)
	return &c
}

// NewTaskHint returns the hint of the task called name, with no priority
// or tags: Sayiir's TaskHint::new(name, ...).
func NewTaskHint(name string) TaskHint { return TaskHint{ID: NewTaskID(name)} }
