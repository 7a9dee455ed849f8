package audit

import (
	"fmt"
	"strings"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/render"
	"github.com/runlog/runlog/workflow"
)

// Summarize returns a one-line, human summary of what ev changed, for
// timelines such as `replay show`. rec is the commit ev belongs to: a
// request time that differs from the commit's time is shown. Examples:
//
//	created run 01JDZ8Q5N3C7K2W4X6Y8Z0A1B2 at task 3f2a1b4c5d6e, input {"qty":3}, policy fail, definition 9b1c0e7d2a44
//	checkpoint: +2 results, position AtTask(ab12cd34ef56)
//	cancel requested by support: "customer asked"
//	signal cancel cleared (terminate_existing)
//
// Every type of [events.Types] has its own wording; an unknown payload
// gives its type. Hashes and task ids are cut to 12 hex characters,
// payloads shown as in [Change], free text quoted and cut to 80
// characters.
func Summarize(rec events.Record, ev events.Event) string { return SummarizeNamed(rec, ev, nil) }

// TaskNames gives the name of a task by its id, when known: for example
// projection.State.TaskName of the instance's state as of the commit.
type TaskNames func(workflow.TaskID) (string, bool)

// SummarizeNamed is [Summarize] with tasks shown by name where names
// knows them ("at task reserve-stock"), and the workflow a run is created
// of when its event names it.
func SummarizeNamed(rec events.Record, ev events.Event, names TaskNames) string {
	task := func(id workflow.TaskID) string { return render.Task(id, render.Names(names)) }
	switch d := ev.Data.(type) {
	case *events.SnapshotCreatedData:
		if d.Workflow != nil && names == nil {
			names = d.Workflow.TaskName // the event names its own tasks
		}
		s := "created run " + ulidText(ev.Run)
		if d.Workflow != nil {
			s += " of workflow " + render.Name(d.Workflow.Name)
			if d.Workflow.Version != "" {
				s += " " + render.Name(d.Workflow.Version)
			}
		}
		s += " at task " + render.Task(d.FirstTask.ID, render.Names(names))
		if len(d.Input) > 0 {
			s += ", input " + payloadText(d.Input)
		} else {
			s += ", no input"
		}
		if d.FirstTask.Priority != nil {
			s += fmt.Sprintf(", priority %d", *d.FirstTask.Priority)
		}
		if len(d.FirstTask.Tags) > 0 {
			s += ", tags " + strings.Join(d.FirstTask.Tags, ",")
		}
		if d.Policy != "" {
			s += ", policy " + d.Policy
		}
		return s + ", definition " + short(d.DefinitionHash)
	case *events.SnapshotDeletedData:
		s := "snapshot deleted"
		if d.Reason != "" {
			s += ": " + quote(d.Reason)
		}
		if d.DiscardedEvents > 0 {
			s += ", discarding " + plural(d.DiscardedEvents, "buffered external event")
		}
		return s
	case *events.SignalStoredData:
		return d.Kind.String() + " " + requestText(d.RequestedBy, d.Reason, d.RequestedAt, rec.Commit.Time)
	case *events.SignalClearedData:
		s := fmt.Sprintf("signal %s cleared", d.Kind)
		if d.Reason != "" {
			s += " (" + d.Reason + ")"
		}
		return s
	case *events.TaskCompletedData:
		return fmt.Sprintf("task %s completed, output %s", task(d.TaskID), payloadText(d.Output))
	case *events.CheckpointSavedData:
		return "checkpoint: " + checkpointText(d, render.Names(names))
	case *events.WorkflowCompletedData:
		if len(d.Output) == 0 {
			return "completed, no output"
		}
		return "completed, output " + payloadText(d.Output)
	case *events.WorkflowFailedData:
		return "failed: " + quote(d.Error)
	case *events.WorkflowCancelledData:
		s := "cancelled" + strings.TrimPrefix(requestText(d.By, d.Reason, d.At, rec.Commit.Time), "requested")
		if d.InterruptedAtTask != nil {
			s += ", interrupted at task " + task(*d.InterruptedAtTask)
		}
		return s
	case *events.WorkflowPausedData:
		return "paused" + strings.TrimPrefix(requestText(d.By, d.Reason, d.At, rec.Commit.Time), "requested")
	case *events.WorkflowUnpausedData:
		return "unpaused"
	case *events.EventSentData:
		s := fmt.Sprintf("external event %s sent (%s)", quote(d.Name), ulidText(ev.ID))
		if len(d.Payload) > 0 {
			s += ", payload " + payloadText(d.Payload)
		}
		return s
	case *events.EventConsumedData:
		return fmt.Sprintf("external event %s consumed (%s)", quote(d.Name), ulidText(d.EventID))
	case *events.TaskClaimedData:
		s := fmt.Sprintf("task %s claimed by %s", task(d.TaskID), quote(d.Worker))
		if d.TTLMS > 0 {
			ttl := time.Duration(d.TTLMS) * time.Millisecond
			s += fmt.Sprintf(" until %s (lease %v, renewed by heartbeats outside the history)", rec.Commit.Time.Add(ttl).UTC().Format(time.TimeOnly), ttl)
		} else {
			s += " (no expiry)"
		}
		if d.TakenOver != nil {
			s += fmt.Sprintf("; the lease of %s (claim %s) had ended: taken over", quote(d.TakenOver.Worker), ulidText(d.TakenOver.Claim))
		}
		return s
	case *events.TaskClaimReleasedData:
		s := fmt.Sprintf("claim of %s on task %s released", quote(d.Worker), task(d.TaskID))
		if d.Reason == "checkpoint" {
			s += " with the checkpoint"
		}
		return s
	case *events.DefinitionRegisteredData:
		s := "definition " + short(d.DefinitionHash) + " registered"
		if d.Workflow == nil {
			return s
		}
		s += ": workflow " + render.Name(d.Workflow.Name)
		if d.Workflow.Version != "" {
			s += " " + render.Name(d.Workflow.Version)
		}
		if len(d.Workflow.Tasks) > 0 {
			names := make([]string, len(d.Workflow.Tasks))
			for i, t := range d.Workflow.Tasks {
				names[i] = render.Name(t)
			}
			s += ", tasks " + strings.Join(names, ", ")
		}
		return s
	}
	return string(ev.Type)
}

func requestText(by, reason string, at, commit time.Time) string {
	return render.Request(by, reason, at, commit)
}

func checkpointText(d *events.CheckpointSavedData, names render.Names) string {
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	if n := len(d.Completed); n > 0 {
		add("+%s", plural(n, "result"))
	}
	if n := len(d.Removed); n > 0 {
		add("-%s", plural(n, "result"))
	}
	if d.Position != nil {
		add("position %s", render.PositionNamed(*d.Position, names))
	}
	if d.LastCompletedTask != nil {
		add("last completed %s", render.Task(*d.LastCompletedTask, names))
	}
	if d.Hint != nil {
		s := "hint"
		if d.Hint.Priority != nil {
			s += fmt.Sprintf(" priority %d", *d.Hint.Priority)
		}
		if len(d.Hint.Tags) > 0 {
			s += " tags " + strings.Join(d.Hint.Tags, ",")
		}
		if d.Hint.Priority == nil && len(d.Hint.Tags) == 0 {
			s += " cleared"
		}
		parts = append(parts, s)
	}
	if d.ClearDeadline && d.Deadline == nil {
		add("deadline cleared")
	}
	if d.Deadline != nil {
		add("deadline %s", deadlineText(d.Deadline, names))
	}
	if n := len(d.Retries); n > 0 {
		add("retries of %s set", plural(n, "task"))
	}
	if n := len(d.RemovedRetries); n > 0 {
		add("retries of %s removed", plural(n, "task"))
	}
	if n := len(d.Loops); n > 0 {
		add("loop counters of %s set", plural(n, "loop"))
	}
	if n := len(d.RemovedLoops); n > 0 {
		add("loop counters of %s removed", plural(n, "loop"))
	}
	if d.TraceParent != nil {
		if *d.TraceParent == "" {
			add("trace parent cleared")
		} else {
			add("trace parent %s", *d.TraceParent)
		}
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, ", ")
}
