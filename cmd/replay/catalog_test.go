package main

import (
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// TestCatalogNames: a run whose history names nothing reads by name in
// show, state, list (from the index and by a fold) and count once its
// definition is in the store's definition catalog, registered after the
// run; verify verifies the catalog and reports one altered.
func TestCatalogNames(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st, err := jetstream.OpenEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := st.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := lifecycle.New(st, lifecycle.Config{Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	hash := workflow.DefinitionHashOf("checkout, unnamed")
	const id = "order 7"
	if _, err := ls.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: hash, FirstTask: workflow.NewTaskHint("reserve-stock")}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	// Before the registration: ids, no workflow.
	if r := mustRun(t, "show", id, "--dir", dir); strings.Contains(r.stdout, "reserve-stock") {
		t.Fatalf("a name before the definition was registered:\n%s", r.stdout)
	}
	mustRun(t, "list", "--dir", dir) // the index is built without the names

	st, err = jetstream.OpenEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cat, _ = st.Catalog(ctx)
	ls, _ = lifecycle.New(st, lifecycle.Config{Catalog: cat})
	def := &workflow.Definition{Name: "checkout", Version: "v4", Tasks: []string{"reserve-stock", "charge-card"}}
	if err := ls.RegisterDefinition(ctx, hash, def); err != nil {
		t.Fatal(err)
	}
	st.Close()

	checks := []struct {
		args []string
		want string
	}{
		{[]string{"show", id}, "at task reserve-stock"},
		{[]string{"state", id}, "checkout v4"},
		{[]string{"state", id}, "AtTask(reserve-stock)"},
		{[]string{"list", "--workflow", "checkout v4"}, "order 7"},
		{[]string{"list", "--workflow", "checkout", "--no-index"}, "order 7"},
		{[]string{"list"}, "checkout v4"},
		{[]string{"count"}, "checkout v4"},
		{[]string{"count", "--no-index"}, "checkout v4"},
		{[]string{"verify"}, "definition catalog: 1 definition, no problems"},
	}
	for _, c := range checks {
		r := mustRun(t, append(c.args, "--dir", dir)...)
		if !strings.Contains(r.stdout, c.want) {
			t.Errorf("replay %s: no %q in\n%s", strings.Join(c.args, " "), c.want, r.stdout)
		}
	}

	// A second registration appended behind the store's back (its chain
	// intact) is refused by the fold: verify says so and exits 1.
	st, err = jetstream.OpenEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := st.CatalogLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := lifecycle.CatalogKey(hash)
	var last events.Message
	for m, err := range cs.Read(ctx, key, 0) {
		if err != nil {
			t.Fatal(err)
		}
		last = m
	}
	rec, err := events.Decode(last, "")
	if err != nil {
		t.Fatal(err)
	}
	forged := rec.Commit
	forged.ID = ulid.Make()
	forged.Prev = workflow.Sha256(last.Data)
	forged.Events = []events.Event{{ID: ulid.Make(), Type: events.DefinitionRegistered,
		Data: &events.DefinitionRegisteredData{DefinitionHash: hash, Workflow: &workflow.Definition{Name: "not-checkout"}}}}
	msg, err := forged.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Append(ctx, key, msg, last.Seq); err != nil {
		t.Fatal(err)
	}
	st.Close()
	r := replay(t, "verify", "--dir", dir)
	if r.code != exitProblems || !strings.Contains(r.stdout, "definition catalog: ") || !strings.Contains(r.stdout, "twice") {
		t.Fatalf("verify of an altered catalog: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// The names stay those first registered.
	if r := mustRun(t, "state", id, "--dir", dir); !strings.Contains(r.stdout, "checkout v4") || strings.Contains(r.stdout, "not-checkout") {
		t.Errorf("state after the forged registration:\n%s", r.stdout)
	}
}
