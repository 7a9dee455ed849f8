package lifecycle

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// PrepareRunRequest asks to start a run of a workflow instance.
type PrepareRunRequest struct {
	InstanceID     string                  // 1 to 256 bytes of UTF-8
	DefinitionHash workflow.DefinitionHash // the workflow definition's fingerprint
	Input          []byte                  // the encoded workflow input
	FirstTask      workflow.TaskHint       // where a fresh run starts
	Policy         workflow.ConflictPolicy // what to do if the id is in use; zero is Fail
	Actor          string                  // who asks; recorded in the history
	TraceParent    string                  // optional W3C traceparent
	// Workflow optionally names the definition: the workflow, a version
	// label, its tasks. The run's snapshot.created records it when the
	// instance's history does not hold this definition's names yet, so
	// that replay and audits show "at task reserve-stock" rather than a
	// hash. When it names tasks, FirstTask must be one of them.
	Workflow *workflow.Definition
}

// Outcome says what PrepareRun did.
type Outcome uint8

const (
	// Created: no snapshot existed; a fresh run was created. Execute it.
	Created Outcome = iota + 1
	// UsedExisting: under UseExisting, the existing instance was returned
	// and nothing was written. Do not execute; report its status.
	UsedExisting
	// Replaced: under TerminateExisting, the existing snapshot was deleted,
	// its pending signals cleared and a fresh run created, in one commit.
	// Execute it.
	Replaced
)

func (o Outcome) String() string {
	switch o {
	case Created:
		return "created"
	case UsedExisting:
		return "used_existing"
	case Replaced:
		return "replaced"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Prepared is PrepareRun's result.
type Prepared struct {
	Outcome Outcome
	// Snapshot is the fresh snapshot (Created, Replaced) or a copy of the
	// existing one (UsedExisting).
	Snapshot *workflow.Snapshot
	// Status is the instance's status: in_progress for a fresh run.
	Status workflow.Status
	// Output is the final output, set only when the existing instance is
	// completed (Sayiir's completed_output).
	Output []byte
	// Run is the run to execute or the existing run; PreviousRun is the
	// run that TerminateExisting replaced.
	Run, PreviousRun ulid.ULID
	// Revision is the snapshot's revision, which the caller's next write
	// builds on: Run and the sequence of the creating commit for Created
	// and Replaced, of the last change of the existing snapshot for
	// UsedExisting.
	Revision Revision
}

// PrepareRun starts a run of an instance, honouring the conflict policy, as
// Sayiir's prepare_run but race-free: the decision is appended with the
// sequence it was made on, so two concurrent callers can never both create
// a run of one id.
//
//   - The id is validated first ([ErrInvalidInstanceID]); nothing is read.
//   - If a snapshot exists and its definition hash differs from the
//     request's, every policy fails with [*DefinitionMismatchError].
//   - Fail: [*AlreadyExistsError] if a snapshot exists.
//   - UseExisting: returns the existing status (and output, when completed)
//     and writes nothing.
//   - TerminateExisting: deletes the snapshot, clears pending cancel and
//     pause, and creates the fresh run, in one atomic commit.
//   - Otherwise a fresh run is created, in progress at the first task with
//     its hint. Under Fail, for an id this store has not seen, this costs
//     one append and no read.
//
// On a conflict it decides again on fresh state; after Config.MaxAttempts
// it returns [*ConcurrentModificationError]. Log failures are returned
// wrapped; a history that does not fold returns an error matching
// [events.ErrCorrupt] or [projection.ErrInvalidHistory] and writes nothing.
func (s *Store) PrepareRun(ctx context.Context, req PrepareRunRequest) (Prepared, error) {
	if err := s.validatePrepare(req); err != nil {
		return Prepared{}, err
	}
	if req.Actor == "" {
		req.Actor = ActorFrom(ctx)
	}
	if req.Workflow != nil && s.catalog != nil {
		// The catalog first: a run is never created of a definition whose
		// names the catalog refuses. Once per hash per store.
		if err := s.RegisterDefinition(ctx, req.DefinitionHash, req.Workflow); err != nil {
			if isDomain(err) {
				return Prepared{}, err
			}
			return Prepared{}, fmt.Errorf("lifecycle: prepare run %q: %w", req.InstanceID, err)
		}
	}
	var out Prepared
	opts := []writeOption{withRunTrace(req.TraceParent)}
	if req.Policy == workflow.Fail {
		// Fail is for new ids: create without reading first (one append);
		// the other policies are mostly used on ids that exist.
		opts = append(opts, createBlind())
	}
	rev, err := s.write(ctx, "prepare run", req.InstanceID, func(st *projection.State) (*events.Commit, error) {
		var c *events.Commit
		var err error
		out, c, err = s.decidePrepare(st, req)
		return c, err
	}, opts...)
	if err != nil {
		if isDomain(err) {
			return Prepared{}, err
		}
		return Prepared{}, fmt.Errorf("lifecycle: prepare run %q: %w", req.InstanceID, err)
	}
	if out.Outcome != UsedExisting {
		out.Revision = Revision{Run: out.Run, Seq: rev.Seq}
	}
	return out, nil
}

func (s *Store) validatePrepare(req PrepareRunRequest) error {
	if err := validateID(req.InstanceID); err != nil {
		return err
	}
	if _, err := req.Policy.MarshalText(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if len(req.Input) > s.maxPayload {
		return fmt.Errorf("%w: input of instance %q is %d bytes, more than the limit of %d (Config.MaxPayload): store large inputs elsewhere and pass a reference",
			ErrInvalidRequest, req.InstanceID, len(req.Input), s.maxPayload)
	}
	if req.Workflow != nil {
		if err := req.Workflow.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
		}
		if _, ok := req.Workflow.TaskName(req.FirstTask.ID); len(req.Workflow.Tasks) > 0 && !ok && !req.FirstTask.ID.IsZero() {
			return fmt.Errorf("%w: the first task %s of %q is none of the tasks its definition %q names", ErrInvalidRequest, req.FirstTask.ID.String()[:12], req.InstanceID, req.Workflow.Name)
		}
	}
	if req.FirstTask.ID.IsZero() {
		return fmt.Errorf("%w: PrepareRun of %q has no first task: set FirstTask (workflow.TaskHint{ID: workflow.NewTaskID(name)}), where the run starts",
			ErrInvalidRequest, req.InstanceID)
	}
	return nil
}

// decidePrepare is the pure decision of PrepareRun on state st.
func (s *Store) decidePrepare(st *projection.State, req PrepareRunRequest) (Prepared, *events.Commit, error) {
	var out Prepared
	if !st.Exists {
		c, err := s.decideFresh(st, req, &out)
		return out, c, err
	}
	snap := st.Snapshot
	if snap.DefinitionHash != req.DefinitionHash {
		return out, nil, &DefinitionMismatchError{ID: req.InstanceID, Stored: snap.DefinitionHash, Requested: req.DefinitionHash}
	}
	status := snap.State.AsStatus()
	switch req.Policy {
	case workflow.UseExisting:
		out = Prepared{Outcome: UsedExisting, Snapshot: snap.Clone(), Status: status, Run: st.Run, Revision: st.Revision()}
		if o, ok := snap.State.CompletedOutput(); ok {
			out.Output = append([]byte{}, o...)
		}
		return out, nil, nil
	case workflow.TerminateExisting:
		b, err := s.newCommit(st, "prepare_run", req.Actor)
		if err != nil {
			return out, nil, err
		}
		if err := b.add(st.Run, &events.SnapshotDeletedData{Reason: "terminate_existing"}); err != nil {
			return out, nil, err
		}
		for _, k := range workflow.SignalKinds() {
			if _, ok := st.Signals[k]; ok {
				if err := b.add(st.Run, &events.SignalClearedData{Kind: k, Reason: "terminate_existing"}); err != nil {
					return out, nil, err
				}
			}
		}
		run, err := s.newRunID()
		if err != nil {
			return out, nil, err
		}
		if err := b.add(run, createdData(st, req)); err != nil {
			return out, nil, err
		}
		out = Prepared{Outcome: Replaced, Snapshot: freshSnapshot(req, b.c.Time), Status: workflow.Status{Kind: workflow.StatusInProgress}, Run: run, PreviousRun: st.Run}
		return out, &b.c, nil
	default:
		return out, nil, &AlreadyExistsError{ID: req.InstanceID, Run: st.Run, Status: status}
	}
}

// decideFresh builds the creation commit of a fresh run on st.
func (s *Store) decideFresh(st *projection.State, req PrepareRunRequest, out *Prepared) (*events.Commit, error) {
	b, err := s.newCommit(st, "prepare_run", req.Actor)
	if err != nil {
		return nil, err
	}
	run, err := s.newRunID()
	if err != nil {
		return nil, err
	}
	if err := b.add(run, createdData(st, req)); err != nil {
		return nil, err
	}
	*out = Prepared{Outcome: Created, Snapshot: freshSnapshot(req, b.c.Time), Status: workflow.Status{Kind: workflow.StatusInProgress}, Run: run}
	return &b.c, nil
}

// createdData is the snapshot.created of a run of req; the definition's
// names go with it unless the history st holds them already.
func createdData(st *projection.State, req PrepareRunRequest) *events.SnapshotCreatedData {
	first := req.FirstTask
	first.Tags = slices.Clone(first.Tags)
	if first.Priority != nil {
		p := *first.Priority
		first.Priority = &p
	}
	d := &events.SnapshotCreatedData{DefinitionHash: req.DefinitionHash, Input: bytes.Clone(req.Input), FirstTask: first,
		Policy: req.Policy.String(), TraceParent: req.TraceParent}
	if _, known := st.Definitions[req.DefinitionHash]; req.Workflow != nil && !known {
		d.Workflow = req.Workflow.Clone()
	}
	return d
}

// freshSnapshot is the snapshot the projection derives from createdData:
// in progress at the first task, with its hint.
func freshSnapshot(req PrepareRunRequest, at time.Time) *workflow.Snapshot {
	snap := workflow.NewSnapshot(req.InstanceID, req.DefinitionHash, append([]byte(nil), req.Input...), at)
	snap.UpdatePosition(workflow.AtTaskPosition(req.FirstTask.ID), at)
	snap.SetTaskHint(req.FirstTask)
	snap.TraceParent = req.TraceParent
	return snap
}
