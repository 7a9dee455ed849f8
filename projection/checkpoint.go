package projection

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/workflow"
)

// CheckpointVersion is the version of the checkpoint format
// [State.MarshalCheckpoint] writes.
const CheckpointVersion = 2

// ErrBadCheckpoint is matched by the errors of [UnmarshalCheckpoint].
var ErrBadCheckpoint = errors.New("projection: bad checkpoint")

// ErrCheckpointVersion is matched, besides [ErrBadCheckpoint], by
// [UnmarshalCheckpoint]'s error for a checkpoint of another format
// version: one written by another runlog, not a damaged one.
var ErrCheckpointVersion = errors.New("projection: checkpoint of another version")

// checkpointWire is a State as a checkpoint: every field, the past runs
// included.
type checkpointWire struct {
	V        int                                              `json:"v"`
	Instance string                                           `json:"instance"`
	Exists   bool                                             `json:"exists"`
	Snapshot *workflow.Snapshot                               `json:"snapshot"`
	Run      ulid.ULID                                        `json:"run"`
	Runs     int                                              `json:"runs"`
	Revision uint64                                           `json:"revision"`
	Signals  map[workflow.SignalKind]workflow.SignalRequest   `json:"signals"`
	Buffered map[string][]Buffered                            `json:"buffered"`
	Results  map[workflow.TaskID][]byte                       `json:"results"`
	Claims   map[workflow.TaskID]Claim                        `json:"claims,omitempty"`
	Released map[workflow.TaskID]ulid.ULID                    `json:"released,omitempty"`
	Defs     map[workflow.DefinitionHash]*workflow.Definition `json:"definitions,omitempty"`
	LastSeq  uint64                                           `json:"last_seq"`
	Head     workflow.Hash32                                  `json:"head"`
	LastTime time.Time                                        `json:"last_time"`
	Commits  int                                              `json:"commits"`
	Events   int                                              `json:"events"`
	Bytes    int                                              `json:"bytes"`
	PastRuns []ulid.ULID                                      `json:"past_runs"`
}

// MarshalCheckpoint encodes s as a projection checkpoint: the folded
// state of the instance as of s.LastSeq, whose head hash s.Head ties it to
// the history. A checkpoint is derived data, kept outside the audit chain
// to spare a long fold; whoever reads it back must check it against the
// history (the message at LastSeq must hash to Head) and may always fold
// the history instead. The encoding is canonical: two states that fold
// the same encode to the same bytes.
func (s *State) MarshalCheckpoint() ([]byte, error) {
	w := checkpointWire{V: CheckpointVersion, Instance: s.Instance, Exists: s.Exists, Snapshot: s.Snapshot, Run: s.Run, Runs: s.Runs,
		Revision: s.RevisionSeq, Signals: s.Signals, Buffered: s.Buffered, Results: s.Results, Claims: s.Claims, Released: s.Released, Defs: s.Definitions, LastSeq: s.LastSeq, Head: s.Head,
		LastTime: s.LastTime, Commits: s.Commits, Events: s.Events, Bytes: s.Bytes}
	for r := range s.pastRuns {
		w.PastRuns = append(w.PastRuns, r)
	}
	slices.SortFunc(w.PastRuns, func(a, b ulid.ULID) int { return a.Compare(b) })
	return json.Marshal(&w)
}

// UnmarshalCheckpoint decodes a checkpoint of instance written by
// [State.MarshalCheckpoint]. A checkpoint of another instance, of another
// version (also [ErrCheckpointVersion]), of no commit, or that does not
// decode gives an error matching [ErrBadCheckpoint].
func UnmarshalCheckpoint(instance string, b []byte) (State, error) {
	var w checkpointWire
	if err := json.Unmarshal(b, &w); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	switch {
	case w.V != CheckpointVersion:
		return State{}, fmt.Errorf("%w: %w: version %d, want %d", ErrBadCheckpoint, ErrCheckpointVersion, w.V, CheckpointVersion)
	case w.Instance != instance:
		return State{}, fmt.Errorf("%w: of instance %q, not %q", ErrBadCheckpoint, w.Instance, instance)
	case w.LastSeq == 0 || w.Commits <= 0 || w.Head.IsZero():
		return State{}, fmt.Errorf("%w: it covers no commit", ErrBadCheckpoint)
	case w.Exists != (w.Snapshot != nil):
		return State{}, fmt.Errorf("%w: exists is %v with snapshot %v", ErrBadCheckpoint, w.Exists, w.Snapshot != nil)
	}
	s := State{Instance: w.Instance, Exists: w.Exists, Snapshot: w.Snapshot, Run: w.Run, Runs: w.Runs, RevisionSeq: w.Revision,
		Signals: w.Signals, Buffered: w.Buffered, Results: w.Results, Claims: w.Claims, Released: w.Released, Definitions: w.Defs, LastSeq: w.LastSeq, Head: w.Head, LastTime: w.LastTime,
		Commits: w.Commits, Events: w.Events, Bytes: w.Bytes}
	if len(w.PastRuns) > 0 {
		s.pastRuns = make(map[ulid.ULID]struct{}, len(w.PastRuns))
		for _, r := range w.PastRuns {
			s.pastRuns[r] = struct{}{}
		}
	}
	return s, nil
}
