package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

func defineShow(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.types, "type", "", "only events of these `TYPES`, comma separated; a prefix such as \"signal\" matches signal.stored and signal.cleared")
	fs.StringVar(&o.since, "since", "", "only commits made at or after `TIME`")
	fs.StringVar(&o.until, "until", "", "only commits made at or before `TIME`")
	fs.BoolVar(&o.reverse, "reverse", false, "newest first (not with --follow)")
	fs.BoolVar(&o.detailed, "detailed", false, "print each event in full, with its payload as JSON")
	fs.BoolVar(&o.follow, "follow", false, "after the history, print new events as they are stored, until interrupted (Ctrl-C)")
}

// showEvent is one event of the timeline.
type showEvent struct {
	Seq     uint64          `json:"seq"`
	Time    time.Time       `json:"time"`   // when the commit was made
	Stored  time.Time       `json:"stored"` // when the log stored it
	Commit  string          `json:"commit,omitempty"`
	Command string          `json:"command,omitempty"`
	Actor   string          `json:"actor,omitempty"`
	Event   int             `json:"event"`  // index of the event in its commit
	Events  int             `json:"events"` // number of events in the commit
	ID      string          `json:"id,omitempty"`
	Type    events.Type     `json:"type,omitempty"`
	Run     string          `json:"run,omitempty"`
	Who     string          `json:"who,omitempty"`
	Summary string          `json:"summary"`
	Data    json.RawMessage `json:"data,omitempty"`
	Error   string          `json:"error,omitempty"`   // the message does not decode
	Refused string          `json:"refused,omitempty"` // the commit decodes but does not fold: why
}

// eventsOf turns a step of the fold into its timeline rows: one per
// event, or one row carrying the decoding error. The rows of a commit the
// projection refused say so.
func eventsOf(step *projection.Step, names audit.TaskNames) []showEvent {
	m, rec := step.Message, step.Record
	if !step.Decoded() {
		return []showEvent{{Seq: m.Seq, Time: m.Time, Stored: m.Time, Summary: "message does not decode: run 'replay verify'", Error: step.Err.Error()}}
	}
	refused := ""
	if step.Err != nil {
		refused = step.Err.Error()
	}
	c := &rec.Commit
	out := make([]showEvent, len(c.Events))
	for i := range c.Events {
		ev := &c.Events[i]
		data, err := json.Marshal(ev.Data)
		if err != nil {
			data = nil
		}
		out[i] = showEvent{Seq: rec.Seq, Time: c.Time, Stored: rec.Stored, Commit: c.ID.String(), Command: c.Command, Actor: c.Actor,
			Event: i, Events: len(c.Events), ID: ev.ID.String(), Type: ev.Type, Run: ulidOrEmpty(ev.Run), Who: who(c, ev),
			Summary: audit.SummarizeNamed(rec, *ev, names), Data: data, Refused: refused}
	}
	return out
}

// who is the person or service behind an event: the requester of a
// signal, or the commit's actor.
func who(c *events.Commit, ev *events.Event) string {
	switch d := ev.Data.(type) {
	case *events.SignalStoredData:
		if d.RequestedBy != "" {
			return d.RequestedBy
		}
	case *events.WorkflowCancelledData:
		if d.By != "" {
			return d.By
		}
	case *events.WorkflowPausedData:
		if d.By != "" {
			return d.By
		}
	}
	return c.Actor
}

// typeFilter matches event types against --type.
type typeFilter []string

func parseTypes(s string) (typeFilter, error) {
	if s == "" {
		return nil, nil
	}
	var f typeFilter
	for t := range strings.SplitSeq(s, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		ok := false
		for _, k := range events.Types() {
			if typeMatches(string(k), t) {
				ok = true
			}
		}
		if !ok {
			names := make([]string, 0, len(events.Types()))
			for _, k := range events.Types() {
				names = append(names, string(k))
			}
			return nil, fmt.Errorf("unknown event type %q: use %s (or a prefix such as signal)", t, strings.Join(names, ", "))
		}
		f = append(f, t)
	}
	return f, nil
}

func typeMatches(typ, filter string) bool { return typ == filter || strings.HasPrefix(typ, filter+".") }

// keep reports whether the row passes the type filter. Rows of messages
// that do not decode always pass.
func (f typeFilter) keep(r showEvent) bool {
	if len(f) == 0 || r.Error != "" {
		return true
	}
	return slices.ContainsFunc(f, func(t string) bool { return typeMatches(string(r.Type), t) })
}

func runShow(ctx context.Context, e *env, args []string) error {
	o := &e.o
	id, err := oneID(args)
	if err != nil {
		return err
	}
	types, err := parseTypes(o.types)
	if err != nil {
		return usagef("--type: %v", err)
	}
	var since, until time.Time
	if o.since != "" {
		if since, err = parseTime(o.since, e.now()); err != nil {
			return usagef("--since: %v", err)
		}
	}
	if o.until != "" {
		if until, err = parseTime(o.until, e.now()); err != nil {
			return usagef("--until: %v", err)
		}
	}
	if o.follow && o.reverse {
		return usagef("--reverse and --follow do not go together: following prints events as they come")
	}
	if o.follow && e.output == outJSON {
		return usagef("--follow prints an endless stream: use -o ndjson (one JSON object per line) or -o text")
	}
	keep := func(r showEvent) bool {
		return types.keep(r) && (since.IsZero() || !r.Time.Before(since)) && (until.IsZero() || !r.Time.After(until))
	}

	st, err := e.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.close()

	p := newTimeline(e)
	var held []showEvent // for --reverse
	var last uint64
	msgs, shown, bad := 0, 0, 0
	interrupted := false
	fold := projection.New(id) // the timeline reads through the fold
	fold.Catalog = st.names(ctx)
	for step, err := range fold.Steps(st.Read(ctx, id, 0)) {
		if err != nil {
			if o.follow && ctx.Err() != nil {
				interrupted = true // Ctrl-C while the history is printed: a normal end of --follow
				break
			}
			return fmt.Errorf("read %q: %w", id, err)
		}
		msgs++
		last = step.Message.Seq
		for _, r := range eventsOf(step, fold.TaskName) {
			if r.Error != "" || r.Refused != "" && r.Event == 0 {
				bad++
			}
			if !keep(r) {
				continue
			}
			shown++
			if o.reverse {
				held = append(held, r)
			} else {
				p.add(r)
			}
		}
	}
	if msgs == 0 && !o.follow {
		return e.notFound(id)
	}
	for _, r := range slices.Backward(held) {
		p.add(r)
	}
	if o.follow && !interrupted {
		if msgs == 0 {
			fmt.Fprintf(e.stderr, "instance %q has no history yet in %s; waiting for its first event (Ctrl-C to stop)\n", id, e.source())
		}
		if err := p.flush(); err != nil {
			return err
		}
		for step, err := range fold.Steps(st.Follow(ctx, id, last)) {
			if err != nil {
				if ctx.Err() != nil {
					break // interrupted: a normal end
				}
				return fmt.Errorf("follow %q: %w", id, err)
			}
			for _, r := range eventsOf(step, fold.TaskName) {
				if r.Error != "" || r.Refused != "" && r.Event == 0 {
					bad++
				}
				if keep(r) {
					p.add(r)
				}
			}
			if err := p.flush(); err != nil {
				return err
			}
		}
	} else if shown == 0 {
		p.none()
	}
	if err := p.close(); err != nil {
		return err
	}
	if bad > 0 {
		return &problemsError{msg: fmt.Sprintf("%d message(s) of %q do not decode or fold (shown with their error); run 'replay verify %s'", bad, id, shellQuote(id))}
	}
	return nil
}

// oneID checks that args is exactly one valid instance id.
func oneID(args []string) (string, error) {
	switch len(args) {
	case 0:
		return "", usagef("missing the instance ID (see 'replay list')")
	case 1:
	default:
		return "", usagef("one instance ID expected, got %d: %s", len(args), strings.Join(args, " "))
	}
	if err := workflow.ValidateInstanceID(args[0]); err != nil {
		return "", usagef("%v", err)
	}
	return args[0], nil
}

// timeline prints rows in the chosen format.
type timeline struct {
	w        io.Writer
	format   string
	detailed bool
	em       *emitter
	header   bool
}

func newTimeline(e *env) *timeline {
	t := &timeline{w: e.stdout, format: e.output, detailed: e.o.detailed}
	if e.output != outText {
		t.em = newEmitter(e.stdout, e.output)
	}
	return t
}

// Column widths of the text timeline. Fixed, so that --follow can print
// rows as they come.
const (
	wSeq  = 6
	wType = 18
	wWho  = 16
)

func (t *timeline) add(r showEvent) {
	if t.em != nil {
		t.em.add(r)
		return
	}
	if t.detailed {
		t.addDetailed(r)
		return
	}
	if !t.header {
		t.header = true
		fmt.Fprintf(t.w, "%-*s  %-24s  %-*s  %-8s  %-*s  %s\n", wSeq, "SEQ", "TIME", wType, "TYPE", "RUN", wWho, "WHO", "SUMMARY")
	}
	if r.Error != "" {
		fmt.Fprintf(t.w, "%-*d  %-24s  %-*s  %-8s  %-*s  %s\n", wSeq, r.Seq, fmtTime(r.Time), wType, "(undecodable)", "-", wWho, "-", r.Error)
		return
	}
	run := "-"
	if r.Run != "" {
		run = r.Run[len(r.Run)-8:]
	}
	w := r.Who
	if w == "" {
		w = "-"
	}
	summary := r.Summary
	if r.Refused != "" {
		summary += "  [not folded: " + r.Refused + "]"
	}
	fmt.Fprintf(t.w, "%-*d  %-24s  %-*s  %-8s  %-*s  %s\n", wSeq, r.Seq, fmtTime(r.Time), wType, r.Type, run, wWho, w, summary)
}

func (t *timeline) addDetailed(r showEvent) {
	if t.header {
		fmt.Fprintln(t.w)
	}
	t.header = true
	if r.Error != "" {
		fmt.Fprintf(t.w, "seq %d  (undecodable message)\n  stored   %s\n  error    %s\n", r.Seq, fmtTime(r.Stored), r.Error)
		return
	}
	fmt.Fprintf(t.w, "seq %d  event %d/%d  %s\n", r.Seq, r.Event+1, r.Events, r.Type)
	fmt.Fprintf(t.w, "  time     %s (stored %s)\n", fmtTime(r.Time), fmtTime(r.Stored))
	fmt.Fprintf(t.w, "  commit   %s  command %s  actor %s\n", r.Commit, orDash(r.Command), orDash(r.Actor))
	fmt.Fprintf(t.w, "  event    %s\n", r.ID)
	if r.Refused != "" {
		fmt.Fprintf(t.w, "  refused  %s (the projection did not fold this commit)\n", r.Refused)
	}
	fmt.Fprintf(t.w, "  run      %s\n", orDash(r.Run))
	if r.Who != "" && r.Who != r.Actor {
		fmt.Fprintf(t.w, "  who      %s\n", r.Who)
	}
	fmt.Fprintf(t.w, "  summary  %s\n", r.Summary)
	if len(r.Data) > 0 && string(r.Data) != "{}" {
		var b bytes.Buffer
		if err := json.Indent(&b, r.Data, "    ", "  "); err != nil {
			b.Reset()
			b.Write(r.Data)
		}
		fmt.Fprintf(t.w, "  data\n    %s\n", b.String())
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// none says that nothing matched.
func (t *timeline) none() {
	if t.em == nil {
		fmt.Fprintln(t.w, "(no events match the filters)")
	}
}

// flush makes the rows so far visible (for --follow).
func (t *timeline) flush() error {
	if f, ok := t.w.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

func (t *timeline) close() error {
	if t.em != nil {
		return t.em.close()
	}
	return nil
}
