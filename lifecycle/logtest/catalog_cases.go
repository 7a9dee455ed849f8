package logtest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// needCatalog skips a case on a log without a definition catalog.
func needCatalog(t *testing.T, h *storeHarness) {
	t.Helper()
	if h.catalog == nil {
		t.Skip("the log brings no definition catalog (Catalog(ctx) (lifecycle.Log, error))")
	}
}

// catalogHistory folds the catalog's history of hash, checking every
// commit against the chain, and returns it with its event types.
func (h *storeHarness) catalogHistory(hash workflow.DefinitionHash) (projection.State, []events.Type) {
	h.t.Helper()
	key := lifecycle.CatalogKey(hash)
	st := projection.New(key)
	var types []events.Type
	for step, err := range st.Steps(h.catalog.Read(h.ctx, key, 0)) {
		if err != nil || step.Err != nil {
			h.t.Fatalf("catalog history of %s: %v %v", key[:12], err, step.Err)
		}
		for _, e := range step.Record.Commit.Events {
			types = append(types, e.Type)
		}
	}
	return st, types
}

var catalogCases = []storeCase{
	{"DefinitionCatalog", func(t *testing.T, h *storeHarness) {
		// Registered once per hash, in a history of its own in the
		// catalog; the same names again are a no-op, others are refused;
		// a history written without names reads by name through the
		// catalog, whether the definition was registered before or after
		// it; PrepareRun registers its Workflow.
		needCatalog(t, h)
		hash := workflow.DefinitionHashOf("catalog-conformance v1")
		def := &workflow.Definition{Name: "checkout", Version: "v1", Tasks: []string{"reserve-stock", "charge-card"}}

		// A history without names, written before the registration.
		if _, err := h.store.PrepareRun(h.ctx, lifecycle.PrepareRunRequest{InstanceID: "unnamed", DefinitionHash: hash,
			FirstTask: workflow.NewTaskHint("reserve-stock")}); err != nil {
			t.Fatal(err)
		}
		if err := h.store.RegisterDefinition(h.ctx, hash, def); err != nil {
			t.Fatalf("RegisterDefinition: %v", err)
		}
		if err := h.other().RegisterDefinition(h.ctx, hash, def.Clone()); err != nil {
			t.Fatalf("the same names again, from another store: %v", err)
		}
		changed := def.Clone()
		changed.Tasks = append(changed.Tasks, "ship")
		for _, st := range []*lifecycle.Store{h.store, h.other()} {
			err := st.RegisterDefinition(h.ctx, hash, changed)
			if !errors.Is(err, lifecycle.ErrDefinitionConflict) {
				t.Fatalf("other names for a registered hash: %v, want ErrDefinitionConflict", err)
			}
		}
		if st, types := h.catalogHistory(hash); fmt.Sprint(types) != "[definition.registered]" || st.Commits != 1 {
			t.Fatalf("catalog history %v in %d commits, want one definition.registered", types, st.Commits)
		}

		// Read by another store: the history names nothing, the catalog
		// names it.
		reader := h.other()
		st, err := reader.Load(h.ctx, "unnamed")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := st.Workflow(); ok {
			t.Fatal("Workflow known without the catalog: the history names nothing")
		}
		st.Catalog = reader.Names(h.ctx)
		if wf, ok := st.Workflow(); !ok || wf.Name != "checkout" || wf.Version != "v1" {
			t.Fatalf("Workflow through the catalog = %+v %v", wf, ok)
		}
		if n, ok := st.TaskName(workflow.NewTaskID("charge-card")); !ok || n != "charge-card" {
			t.Fatalf("TaskName through the catalog = %q %v", n, ok)
		}
		if d, ok, err := reader.Definition(h.ctx, workflow.DefinitionHashOf("never registered")); ok || err != nil || d != nil {
			t.Fatalf("Definition of an unregistered hash = %v %v %v", d, ok, err)
		}

		// PrepareRun registers its Workflow in the catalog, and refuses
		// names the catalog contradicts, writing nothing.
		h2 := workflow.DefinitionHashOf("catalog-conformance v2")
		v2 := &workflow.Definition{Name: "checkout", Version: "v2", Tasks: []string{"reserve-stock"}}
		if _, err := h.store.PrepareRun(h.ctx, lifecycle.PrepareRunRequest{InstanceID: "named-v2", DefinitionHash: h2,
			FirstTask: workflow.NewTaskHint("reserve-stock"), Workflow: v2}); err != nil {
			t.Fatal(err)
		}
		if d, ok, err := h.other().Definition(h.ctx, h2); !ok || err != nil || d.Version != "v2" {
			t.Fatalf("PrepareRun's Workflow not in the catalog: %v %v %v", d, ok, err)
		}
		_, err = h.other().PrepareRun(h.ctx, lifecycle.PrepareRunRequest{InstanceID: "contradicted", DefinitionHash: hash,
			FirstTask: workflow.NewTaskHint("ship"), Workflow: changed})
		if !errors.Is(err, lifecycle.ErrDefinitionConflict) {
			t.Fatalf("PrepareRun with names the catalog contradicts: %v, want ErrDefinitionConflict", err)
		}
		if h.lastSeq("contradicted") != 0 {
			t.Fatal("a PrepareRun refused by the catalog wrote")
		}
	}},
	{"DefinitionCatalogRace", func(t *testing.T, h *storeHarness) {
		// Stores racing to register one definition: every one succeeds,
		// one registration lands; racing with other names: one set of
		// names wins, the others are refused.
		needCatalog(t, h)
		hash := workflow.DefinitionHashOf("catalog-race")
		def := &workflow.Definition{Name: "race", Tasks: []string{"a", "b"}}
		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				d := def.Clone()
				if i%2 == 1 {
					d.Version = fmt.Sprint("v", i)
				}
				errs[i] = h.other().RegisterDefinition(h.ctx, hash, d)
			})
		}
		wg.Wait()
		st, types := h.catalogHistory(hash)
		if len(types) != 1 {
			t.Fatalf("catalog history %v, want one registration", types)
		}
		won := st.Definitions[hash]
		for i, err := range errs {
			mine := i%2 == 1 && won.Version == fmt.Sprint("v", i) || i%2 == 0 && won.Version == ""
			switch {
			case mine && err != nil:
				t.Errorf("store %d registered the names that won, got %v", i, err)
			case !mine && !errors.Is(err, lifecycle.ErrDefinitionConflict):
				t.Errorf("store %d: %v, want ErrDefinitionConflict (%q won)", i, err, won.Version)
			}
		}
	}},
	{"DefinitionCatalogBadInput", func(t *testing.T, h *storeHarness) {
		// Bad input is refused with ErrInvalidRequest and writes nothing;
		// a store without a catalog refuses with ErrInvalidConfig.
		needCatalog(t, h)
		hash := workflow.DefinitionHashOf("catalog-bad")
		for what, c := range map[string]struct {
			hash workflow.DefinitionHash
			def  *workflow.Definition
		}{
			"a zero hash":      {workflow.DefinitionHash{}, &workflow.Definition{Name: "w"}},
			"no definition":    {hash, nil},
			"no workflow name": {hash, &workflow.Definition{Tasks: []string{"a"}}},
			"a repeated task":  {hash, &workflow.Definition{Name: "w", Tasks: []string{"a", "a"}}},
			"invalid UTF-8":    {hash, &workflow.Definition{Name: "w\xff"}},
		} {
			if err := h.store.RegisterDefinition(h.ctx, c.hash, c.def); !errors.Is(err, lifecycle.ErrInvalidRequest) {
				t.Errorf("%s: %v, want ErrInvalidRequest", what, err)
			}
		}
		if _, types := h.catalogHistory(hash); len(types) != 0 {
			t.Fatalf("refused registrations wrote %v", types)
		}
		bare, err := lifecycle.New(h.log, lifecycle.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := bare.RegisterDefinition(h.ctx, hash, &workflow.Definition{Name: "w"}); !errors.Is(err, lifecycle.ErrInvalidConfig) {
			t.Fatalf("without a catalog: %v, want ErrInvalidConfig", err)
		}
	}},
}
