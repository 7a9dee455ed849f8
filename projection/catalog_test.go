package projection_test

import (
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

func registered(hash workflow.DefinitionHash, def *workflow.Definition) events.Event {
	return events.Event{Type: events.DefinitionRegistered, Data: &events.DefinitionRegisteredData{DefinitionHash: hash, Workflow: def}}
}

func inRun(run ulid.ULID, e events.Event) events.Event { e.Run = run; return e }

// A catalog history holds one definition.registered, under the key of its
// hash; anywhere else it is refused. State.Catalog names what the history
// does not, and the fold never reads it.
func TestFoldDefinitionRegistered(t *testing.T) {
	t.Parallel()
	hash := workflow.DefinitionHashOf("catalog")
	def := &workflow.Definition{Name: "checkout", Version: "v1", Tasks: []string{"reserve-stock"}}

	h := newHistory(t)
	h.instance = hash.String()
	h.add(registered(hash, def))
	st := fold(t, h)
	if got := st.Definitions[hash]; got == nil || got.Name != "checkout" {
		t.Fatalf("Definitions = %v", st.Definitions)
	}
	for name, c := range map[string]struct {
		instance string
		setup    func(h *history)
		ev       events.Event
		says     string
	}{
		"twice":               {hash.String(), func(h *history) { h.add(registered(hash, def)) }, registered(hash, def), "twice"},
		"under another key":   {"order-42", func(*history) {}, registered(hash, def), "catalog history of"},
		"in an instance":      {hash.String(), func(h *history) { h.add(created(run1, "x")) }, inRun(run1, registered(hash, def)), "instance's history"},
		"a zero hash":         {workflow.Hash32{}.String(), func(*history) {}, registered(workflow.Hash32{}, def), "catalog history of"},
		"without names":       {hash.String(), func(*history) {}, registered(hash, nil), "without its names"},
		"an invalid workflow": {hash.String(), func(*history) {}, registered(hash, &workflow.Definition{}), "no workflow name"},
	} {
		h := newHistory(t)
		h.instance = c.instance
		c.setup(h)
		st := fold(t, h)
		err := st.Apply(h.next(c.ev))
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.says)
		}
	}

	// An instance of that definition whose history names nothing.
	h = newHistory(t)
	h.add(events.Event{Type: events.SnapshotCreated, Run: run1, Data: &events.SnapshotCreatedData{DefinitionHash: hash,
		FirstTask: workflow.NewTaskHint("reserve-stock")}})
	st = fold(t, h)
	if _, ok := st.Workflow(); ok {
		t.Fatal("Workflow known without a catalog")
	}
	asked := 0
	st.Catalog = func(h workflow.DefinitionHash) (*workflow.Definition, bool) {
		asked++
		return def, h == hash
	}
	if n, ok := st.TaskName(workflow.NewTaskID("reserve-stock")); !ok || n != "reserve-stock" {
		t.Fatalf("TaskName through the catalog = %q %v", n, ok)
	}
	if err := st.Apply(h.next(stored(run1, workflow.Cancel, "r"))); err != nil || asked != 1 {
		t.Fatalf("Apply with a catalog: %v, catalog asked %d times (once, by TaskName)", err, asked)
	}
	var _ projection.Catalog = st.Catalog
}
