package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// TestShowAndStateClaims: a claim, its take-over and the releasing
// checkpoint are in the timeline, and state names the live claim.
func TestShowAndStateClaims(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "store")
	ctx := t.Context()
	js, err := jetstream.OpenEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := lifecycle.New(js, lifecycle.Config{Leases: js.Leases()})
	if err != nil {
		t.Fatal(err)
	}
	task := workflow.NewTaskID("charge")
	_, err = st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "job-1", DefinitionHash: workflow.DefinitionHashOf("jobs v1"), FirstTask: workflow.TaskHint{ID: task}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimTask(ctx, "job-1", task, "worker-3", time.Second); err != nil {
		t.Fatal(err)
	}
	var taken lifecycle.TaskClaim
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if taken, err = st.ClaimTask(ctx, "job-1", task, "worker-7", time.Minute); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := js.Close(); err != nil {
		t.Fatal(err)
	}

	state := mustRun(t, "state", "job-1", "--dir", dir).stdout
	if !strings.Contains(state, `claimed`) || !strings.Contains(state, `by "worker-7"`) || !strings.Contains(state, taken.ID.String()) {
		t.Errorf("state does not name worker-7's claim:\n%s", state)
	}
	var v stateView
	if err := json.Unmarshal([]byte(mustRun(t, "state", "job-1", "--dir", dir, "-o", "json").stdout), &v); err != nil {
		t.Fatal(err)
	}
	if c, ok := v.Claims[task]; !ok || c.Worker != "worker-7" || c.Claim != taken.ID.String() || c.TTLMS != 60000 {
		t.Errorf("state -o json claims: %+v", v.Claims)
	}
	show := mustRun(t, "show", "job-1", "--dir", dir).stdout
	for _, want := range []string{`claimed by "worker-3" until`, `claimed by "worker-7"`, `the lease of "worker-3"`, "taken over"} {
		if !strings.Contains(show, want) {
			t.Errorf("show lacks %q:\n%s", want, show)
		}
	}
}
