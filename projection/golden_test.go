package projection_test

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/runlog/runlog/internal/golden"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// fixtureHistory is the history the golden projections fold: a run with
// pending signals, replaced by TerminateExisting, then a pause request on
// the new run.
func fixtureHistory(t *testing.T) *history {
	h := newHistory(t)
	h.add(created(run1, `{"order":42}`))
	h.add(stored(run1, workflow.Cancel, "customer called"))
	h.add(stored(run1, workflow.Pause, "maintenance"))
	h.add(deleted(run1), cleared(run1, workflow.Cancel), cleared(run1, workflow.Pause), created(run2, `{"order":42,"retry":true}`))
	h.add(stored(run2, workflow.Pause, "hold"))
	h.add(deleted(run2), cleared(run2, workflow.Pause))
	h.add(created(run3, `{"order":43}`))
	return h
}

// TestGoldenStates pins the JSON of the state folded from the fixture
// history, at its end and at points in its past. Run with -update to
// accept a change.
func TestGoldenStates(t *testing.T) {
	t.Parallel()
	h := fixtureHistory(t)
	tests := []struct {
		name  string
		until projection.Until
	}{
		{"final", projection.Until{}},
		{"before_terminate", projection.Until{Seq: 30}},
		{"after_terminate", projection.Until{Seq: 40}},
		{"deleted", projection.Until{Time: t0.Add(5 * 60e9)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, err := projection.FoldUntil(inst, seqOf(h.msgs), tt.until)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.MarshalIndent(st, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", tt.name+".golden"), append(b, '\n'))
		})
	}
}
