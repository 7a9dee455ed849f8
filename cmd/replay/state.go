package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/render"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

func defineState(fs *flag.FlagSet, o *opts) {
	fs.Uint64Var(&o.atSeq, "at-seq", 0, "the state after the commits up to stream sequence `N`")
	fs.StringVar(&o.at, "at", "", "the state after the commits made up to `TIME`")
}

func defineDiff(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.from, "from", "", "the earlier point: a stream sequence `SEQ` or a TIME (required)")
	fs.StringVar(&o.to, "to", "", "the later point: a sequence `SEQ` or a TIME (default: now, the whole history)")
}

// foldAt folds an instance's history up to p. It reports whether the
// instance has any history at all.
func foldAt(ctx context.Context, st *store, id string, p point) (projection.State, bool, error) {
	any := false
	var msgs iter.Seq2[events.Message, error] = func(yield func(events.Message, error) bool) {
		for m, err := range st.Read(ctx, id, 0) {
			if err == nil {
				any = true
			}
			if !yield(m, err) {
				return
			}
		}
	}
	s, err := projection.FoldUntil(id, msgs, projection.Until{Seq: p.seq, Time: p.time})
	s.Catalog = st.names(ctx)
	return s, any, err
}

// stateView is the JSON form of a folded state.
type stateView struct {
	Instance string                                         `json:"instance"`
	AtSeq    uint64                                         `json:"at_seq,omitempty"`
	At       *time.Time                                     `json:"at,omitempty"`
	Status   string                                         `json:"status"`
	Workflow *workflow.Definition                           `json:"workflow,omitempty"` // the run's definition's names, when the history or the definition catalog records them
	Exists   bool                                           `json:"exists"`
	Run      string                                         `json:"run,omitempty"`
	Runs     int                                            `json:"runs"`
	Revision uint64                                         `json:"revision"`
	LastSeq  uint64                                         `json:"last_seq"`
	LastTime *time.Time                                     `json:"last_time,omitempty"`
	Commits  int                                            `json:"commits"`
	Events   int                                            `json:"events"`
	Bytes    int                                            `json:"bytes"`
	Head     string                                         `json:"head,omitempty"`
	Signals  map[workflow.SignalKind]workflow.SignalRequest `json:"signals,omitempty"`
	Buffered map[string][]bufferedView                      `json:"buffered,omitempty"`
	Results  map[workflow.TaskID][]byte                     `json:"results,omitempty"`
	Claims   map[workflow.TaskID]claimView                  `json:"claims,omitempty"`
	Snapshot *workflow.Snapshot                             `json:"snapshot,omitempty"`
}

// claimView is a claim as the history records it: its lease may have
// been renewed (heartbeats are not in the history) or have ended.
type claimView struct {
	Claim  string    `json:"claim"`
	Worker string    `json:"worker"`
	Since  time.Time `json:"since"`
	TTLMS  int64     `json:"ttl_ms,omitempty"`
}

type bufferedView struct {
	ID      string    `json:"id"`
	Payload []byte    `json:"payload,omitempty"`
	SentAt  time.Time `json:"sent_at"`
}

func viewOf(s *projection.State, p point) stateView {
	v := stateView{Instance: s.Instance, AtSeq: p.seq, Status: audit.StatusOf(s), Exists: s.Exists, Run: ulidOrEmpty(s.Run), Runs: s.Runs,
		Revision: s.RevisionSeq, LastSeq: s.LastSeq, Commits: s.Commits, Events: s.Events, Bytes: s.Bytes,
		Signals: s.Signals, Results: s.Results, Snapshot: s.Snapshot}
	if wf, ok := s.Workflow(); ok {
		v.Workflow = wf
	}
	if !p.time.IsZero() {
		t := p.time
		v.At = &t
	}
	if !s.LastTime.IsZero() {
		t := s.LastTime.UTC()
		v.LastTime = &t
	}
	if s.Commits > 0 {
		v.Head = s.Head.String()
	}
	if len(s.Claims) > 0 {
		v.Claims = make(map[workflow.TaskID]claimView, len(s.Claims))
		for t, c := range s.Claims {
			v.Claims[t] = claimView{Claim: c.ID.String(), Worker: c.Worker, Since: c.At.UTC(), TTLMS: c.TTL.Milliseconds()}
		}
	}
	if len(s.Buffered) > 0 {
		v.Buffered = make(map[string][]bufferedView, len(s.Buffered))
		for name, q := range s.Buffered {
			for _, b := range q {
				v.Buffered[name] = append(v.Buffered[name], bufferedView{ID: b.ID.String(), Payload: b.Payload, SentAt: b.SentAt})
			}
		}
	}
	return v
}

func runState(ctx context.Context, e *env, args []string) error {
	o := &e.o
	id, err := oneID(args)
	if err != nil {
		return err
	}
	if o.atSeq > 0 && o.at != "" {
		return usagef("--at-seq and --at are exclusive: give a sequence or a time")
	}
	var p point
	if o.atSeq > 0 {
		p.seq = o.atSeq
	} else if e.set["at-seq"] {
		return usagef("--at-seq 0 is before every commit: sequences start at 1")
	}
	if o.at != "" {
		if p.time, err = parseTime(o.at, e.now()); err != nil {
			return usagef("--at: %v", err)
		}
	}
	st, err := e.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.close()

	s, any, err := foldAt(ctx, st, id, p)
	if err != nil {
		return foldError(id, err)
	}
	if !any {
		return e.notFound(id)
	}
	v := viewOf(&s, p)
	switch e.output {
	case outJSON:
		return writeJSON(e.stdout, v)
	case outNDJSON:
		return writeNDJSON(e.stdout, v)
	}
	return writeStateText(e.stdout, &s, p)
}

// foldError explains a history that does not fold.
func foldError(id string, err error) error {
	return fmt.Errorf("the history of %q does not fold: %w (see 'replay verify %s'; --at-seq before that sequence shows the state up to it)", id, err, shellQuote(id))
}

// shortHash is the first 12 hex digits of a hash, for text output.
func shortHash(h workflow.Hash32) string { return render.Short(h) }

func writeStateText(w io.Writer, s *projection.State, p point) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	line("instance", "%s", displayID(s.Instance))
	if p != (point{}) {
		line("as of", "%s", p)
	}
	line("status", "%s", audit.StatusOf(s))
	if st, ok := s.Status(); ok {
		if d := statusDetail(st); d != "" {
			line("", "%s", d)
		}
	}
	if s.Commits == 0 {
		line("history", "no commit at or before %s", p)
		return tw.Flush()
	}
	line("run", "%s (%d run%s)", ulidOrEmpty(s.Run), s.Runs, render.S(s.Runs))
	line("history", "%d commits, %d events, %s; last seq %d at %s", s.Commits, s.Events, humanBytes(int64(s.Bytes)), s.LastSeq, fmtTime(s.LastTime))
	line("revision", "%d (the last commit that changed the snapshot)", s.RevisionSeq)
	line("head", "%s", s.Head)
	if snap := s.Snapshot; snap != nil {
		names := render.Names(s.TaskName)
		if wf, ok := s.Workflow(); ok {
			v := ""
			if wf.Version != "" {
				v = " " + render.Name(wf.Version)
			}
			line("workflow", "%s%s", render.Name(wf.Name), v)
		}
		line("definition", "%s", snap.DefinitionHash)
		line("created", "%s", fmtTime(snap.CreatedAt))
		line("updated", "%s", fmtTime(snap.UpdatedAt))
		line("input", "%s", showBytes(snap.InitialInput, 80))
		st := &snap.State
		line("state", "%s", st.Kind)
		if st.Kind == workflow.InProgress || st.Kind == workflow.Paused {
			line("position", "%s", render.PositionNamed(st.Position, names))
		}
		if st.LastCompletedTask != nil {
			line("last task", "%s", render.Task(*st.LastCompletedTask, names))
		}
		if st.Kind == workflow.Completed {
			line("output", "%s", showBytes(st.FinalOutput, 80))
		}
		if st.InterruptedAtTask != nil {
			line("interrupted", "at task %s", render.Task(*st.InterruptedAtTask, names))
		}
		if snap.TaskDeadline != nil {
			line("deadline", "task %s at %s", render.Task(snap.TaskDeadline.TaskID, names), fmtTime(snap.TaskDeadline.Deadline))
		}
		if snap.TaskPriority != nil || len(snap.TaskTags) > 0 {
			line("task hint", "priority %d, tags %s", snap.CurrentTaskPriority(), strings.Join(snap.TaskTags, ","))
		}
	}
	if len(s.Results) > 0 {
		line("tasks done", "%d", len(s.Results))
		ids := slices.SortedFunc(maps.Keys(s.Results), func(a, b workflow.TaskID) int { return cmp.Compare(a.String(), b.String()) })
		for _, t := range ids {
			line("", "%s  %s", render.Task(t, s.TaskName), showBytes(s.Results[t], 70))
		}
	}
	for _, t := range slices.SortedFunc(maps.Keys(s.Claims), func(a, b workflow.TaskID) int { return cmp.Compare(a.String(), b.String()) }) {
		c := s.Claims[t]
		lease := "no expiry"
		if c.TTL > 0 {
			lease = fmt.Sprintf("lease %v from %s, renewed by heartbeats outside the history", c.TTL, fmtTime(c.At))
		}
		line("claimed", "task %s by %q since %s (%s; claim %s)", shortHash(t), c.Worker, fmtTime(c.At), lease, c.ID)
	}
	for _, k := range workflow.SignalKinds() {
		if r, ok := s.Signals[k]; ok {
			line("pending "+k.String(), "%s", render.Request(r.RequestedBy, r.Reason, r.RequestedAt, time.Time{}))
		}
	}
	if n := s.Pending(); n > 0 {
		line("buffered", "%d external event%s", n, render.S(n))
		for _, name := range slices.Sorted(maps.Keys(s.Buffered)) {
			for _, b := range s.Buffered[name] {
				line("", "%s  %s  sent %s  %s", name, b.ID, fmtTime(b.SentAt), showBytes(b.Payload, 50))
			}
		}
	}
	return tw.Flush()
}

func statusDetail(st workflow.Status) string {
	var parts []string
	if st.Error != "" {
		parts = append(parts, "error: "+st.Error)
	}
	if st.Reason != "" {
		parts = append(parts, "reason: "+st.Reason)
	}
	if st.By != "" {
		parts = append(parts, "by: "+st.By)
	}
	if st.SignalName != "" {
		parts = append(parts, fmt.Sprintf("awaiting event %q", st.SignalName))
	}
	if st.WakeAt != nil {
		parts = append(parts, "wakes at "+fmtTime(*st.WakeAt))
	}
	return strings.Join(parts, "; ")
}

func runDiff(ctx context.Context, e *env, args []string) error {
	o := &e.o
	id, err := oneID(args)
	if err != nil {
		return err
	}
	if o.from == "" {
		return usagef("--from is required: a sequence number or a time (--to defaults to now)")
	}
	from, err := parsePoint(o.from, e.now())
	if err != nil {
		return usagef("--from: %v", err)
	}
	to, err := parsePoint(o.to, e.now())
	if err != nil {
		return usagef("--to: %v", err)
	}
	st, err := e.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.close()

	a, any, err := foldAt(ctx, st, id, from)
	if err != nil {
		return foldError(id, err)
	}
	if !any {
		return e.notFound(id)
	}
	b, _, err := foldAt(ctx, st, id, to)
	if err != nil {
		return foldError(id, err)
	}
	changes := audit.Diff(a, b)
	out := diffView{Instance: id, From: pointView(from, &a), To: pointView(to, &b), Changes: changes}
	if out.Changes == nil {
		out.Changes = []audit.Change{}
	}
	switch e.output {
	case outJSON:
		return writeJSON(e.stdout, out)
	case outNDJSON:
		return writeNDJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "%s: from %s (last seq %d) to %s (last seq %d)\n", displayID(id), from, a.LastSeq, to, b.LastSeq)
	if len(changes) == 0 {
		_, err := fmt.Fprintln(e.stdout, "no change")
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIELD\tFROM\tTO")
	for _, c := range changes {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Field, orDash(c.From), orDash(c.To))
	}
	return tw.Flush()
}

type diffView struct {
	Instance string         `json:"instance"`
	From     pointJSON      `json:"from"`
	To       pointJSON      `json:"to"`
	Changes  []audit.Change `json:"changes"`
}

type pointJSON struct {
	Seq     uint64     `json:"seq,omitempty"`
	Time    *time.Time `json:"time,omitempty"`
	LastSeq uint64     `json:"last_seq"`
}

func pointView(p point, s *projection.State) pointJSON {
	v := pointJSON{Seq: p.seq, LastSeq: s.LastSeq}
	if !p.time.IsZero() {
		t := p.time
		v.Time = &t
	}
	return v
}
