package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"iter"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/render"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

func defineList(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.status, "status", "", "only instances in these `STATUSES`, comma separated: "+strings.Join(listStatuses(), ", "))
	fs.StringVar(&o.since, "since", "", "only instances whose last change is at or after `TIME`")
	fs.StringVar(&o.until, "until", "", "only instances whose last change is at or before `TIME`")
	fs.StringVar(&o.sortBy, "sort", "", "sort by `KEY`: id (ascending), updated or events (descending); loads every matching row into memory")
	fs.IntVar(&o.limit, "limit", 0, "print at most `N` instances (0: all)")
	fs.StringVar(&o.after, "after", "", "start after the instance `ID` (the cursor printed when --limit cuts the list)")
	defineSearch(fs, o)
}

// defineSearch defines the filters list and count share besides
// --status, --since and --until.
func defineSearch(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.workflowName, "workflow", "", "only runs of the workflow `NAME` (as the history names it; \"NAME VERSION\" for one version)")
	fs.StringVar(&o.definition, "definition", "", "only runs of the definition whose hash starts with `HEX`")
	fs.StringVar(&o.actor, "actor", "", "only instances with a commit by `ACTOR` (or a cancel or pause it requested)")
	fs.StringVar(&o.signal, "signal", "", "only instances with a pending `KIND` request: cancel or pause")
	fs.StringVar(&o.waiting, "waiting", "", "only runs parked on a `KIND`: delay or signal")
	fs.StringVar(&o.createdSince, "created-since", "", "only runs created at or after `TIME`")
	fs.StringVar(&o.eventType, "event-type", "", "only instances whose history holds an event of `TYPE` (e.g. event.sent)")
}

// search is the filters of defineSearch, parsed.
type search struct {
	workflow, definition, actor string
	signal                      workflow.SignalKind
	hasSignal                   bool
	waiting                     workflow.StatusKind
	hasWaiting                  bool
	createdSince                time.Time
	eventType                   events.Type
}

func parseSearch(e *env) (search, error) {
	o := &e.o
	f := search{workflow: o.workflowName, definition: strings.ToLower(o.definition), actor: o.actor}
	if o.definition != "" {
		if strings.Trim(f.definition, "0123456789abcdef") != "" || len(f.definition) > 64 {
			return f, usagef("--definition %q: want the start of a definition hash, in hex", o.definition)
		}
	}
	if o.signal != "" {
		k, err := workflow.ParseSignalKind(o.signal)
		if err != nil {
			return f, usagef("--signal %q: want cancel or pause", o.signal)
		}
		f.signal, f.hasSignal = k, true
	}
	switch o.waiting {
	case "":
	case "delay":
		f.waiting, f.hasWaiting = workflow.StatusWaiting, true
	case "signal":
		f.waiting, f.hasWaiting = workflow.StatusAwaitingSignal, true
	default:
		return f, usagef("--waiting %q: want delay or signal", o.waiting)
	}
	if o.createdSince != "" {
		t, err := parseTime(o.createdSince, e.now())
		if err != nil {
			return f, usagef("--created-since: %v", err)
		}
		f.createdSince = t
	}
	if o.eventType != "" {
		if !events.Known(events.Type(o.eventType)) {
			return f, usagef("--event-type %q: not an event type (docs/EVENTS.md lists them)", o.eventType)
		}
		f.eventType = events.Type(o.eventType)
	}
	return f, nil
}

// matches reports whether a row passes the filters.
func (f *search) matches(r *listRow) bool {
	switch {
	case f.workflow != "" && r.Workflow != f.workflow && r.wfName != f.workflow,
		f.definition != "" && !strings.HasPrefix(r.definition, f.definition),
		f.actor != "" && !slices.Contains(r.actors, f.actor),
		f.hasSignal && !slices.Contains(r.signals, f.signal),
		f.hasWaiting && r.statusKind != f.waiting,
		!f.createdSince.IsZero() && (r.created.IsZero() || r.created.Before(f.createdSince)),
		f.eventType != "" && !slices.Contains(r.types, f.eventType):
		return false
	}
	return true
}

// listStatuses are the statuses list filters on: the workflow statuses,
// "deleted" (the snapshot was deleted; the history remains) and
// "corrupt" (the history does not fold; run replay verify).
func listStatuses() []string {
	var out []string
	for k := workflow.StatusInProgress; k <= workflow.StatusAwaitingSignal; k++ {
		out = append(out, k.String())
	}
	return append(out, statusDeleted, statusCorrupt)
}

const (
	statusDeleted = "deleted"
	statusCorrupt = "corrupt"
	statusNone    = "none" // a history with no snapshot created (only possible in a corrupt history)
)

// statusOf names the status of a folded state.
func statusOf(s *projection.State) string {
	if st, ok := s.Status(); ok {
		return st.Kind.String()
	}
	if s.Runs > 0 {
		return statusDeleted
	}
	return statusNone
}

// listRow is one instance in list's output.
type listRow struct {
	Instance string    `json:"instance"`
	Status   string    `json:"status"`
	Workflow string    `json:"workflow,omitempty"` // the run's workflow name (and version), when the history names it
	Run      string    `json:"run,omitempty"`
	Runs     int       `json:"runs"`
	Commits  int       `json:"commits"`
	Events   int       `json:"events"`
	Bytes    int       `json:"bytes"`
	LastSeq  uint64    `json:"last_seq"`
	Updated  time.Time `json:"updated"`
	Error    string    `json:"error,omitempty"`

	// What the search filters look at (not printed).
	wfName     string                // the workflow's name alone
	definition string                // the run's definition hash, hex
	actors     []string              // every commit's actor and every signal's requester
	signals    []workflow.SignalKind // pending requests
	statusKind workflow.StatusKind   // when the snapshot exists
	created    time.Time             // the current run's creation
	types      []events.Type         // every event type of the history
}

// rowOf folds an instance's history into its list row. A history that
// does not fold gives a row with status corrupt; a read error is returned.
func rowOf(ctx context.Context, st *store, id string) (listRow, error) {
	s := projection.New(id)
	var actors []string
	var types []events.Type
	var ferr error
	for step, err := range s.Steps(st.Read(ctx, id, 0)) {
		if err != nil {
			return listRow{Instance: id}, err
		}
		if step.Err != nil {
			ferr = cmpErr(ferr, step.Err)
			continue
		}
		c := &step.Record.Commit
		if c.Actor != "" && !slices.Contains(actors, c.Actor) {
			actors = append(actors, c.Actor)
		}
		for _, ev := range c.Events {
			if !slices.Contains(types, ev.Type) {
				types = append(types, ev.Type)
			}
			if d, ok := ev.Data.(*events.SignalStoredData); ok && d.RequestedBy != "" && !slices.Contains(actors, d.RequestedBy) {
				actors = append(actors, d.RequestedBy)
			}
		}
	}
	r := listRow{Instance: id, Status: statusOf(&s), Run: ulidOrEmpty(s.Run), Runs: s.Runs, Commits: s.Commits,
		Events: s.Events, Bytes: s.Bytes, LastSeq: s.LastSeq, Updated: s.LastTime, actors: actors, types: types}
	if wf, ok := s.Workflow(); ok {
		r.Workflow, r.wfName = wf.Name, wf.Name
		if wf.Version != "" {
			r.Workflow += " " + wf.Version
		}
	}
	if snap := s.Snapshot; snap != nil {
		r.definition, r.created = snap.DefinitionHash.String(), snap.CreatedAt
	}
	if stat, ok := s.Status(); ok {
		r.statusKind = stat.Kind
	}
	for k := range s.Signals {
		r.signals = append(r.signals, k)
	}
	if ferr != nil {
		if !errors.Is(ferr, events.ErrCorrupt) && !errors.Is(ferr, projection.ErrInvalidHistory) {
			return r, ferr
		}
		r.Status, r.Error = statusCorrupt, ferr.Error()
	}
	return r, nil
}

// listFlush is the number of rows of an unsorted list written at a time.
const listFlush = 500

func runList(ctx context.Context, e *env, args []string) error {
	o := &e.o
	if len(args) > 0 {
		return usagef("list takes no arguments, got %q (filter with --status, --since, --until)", args[0])
	}
	var want []string
	if o.status != "" {
		for s := range strings.SplitSeq(o.status, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(listStatuses(), s) {
				return usagef("unknown status %q: use %s", s, strings.Join(listStatuses(), ", "))
			}
			want = append(want, s)
		}
	}
	var since, until time.Time
	var err error
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
	switch o.sortBy {
	case "", "id", "updated", "events":
	default:
		return usagef("unknown --sort %q: use id, updated or events", o.sortBy)
	}
	if o.limit < 0 {
		return usagef("--limit must not be negative")
	}
	if o.after != "" {
		if err := workflow.ValidateInstanceID(o.after); err != nil {
			return usagef("--after: %v", err)
		}
	}
	if o.sortBy != "" && o.after != "" {
		return usagef("--after pages the unsorted list; with --sort, narrow the list with --status/--since/--until and --limit")
	}
	filters, err := parseSearch(e)
	if err != nil {
		return err
	}
	match := func(r listRow) bool {
		return (len(want) == 0 || slices.Contains(want, r.Status)) &&
			(since.IsZero() || !r.Updated.Before(since)) && (until.IsZero() || !r.Updated.After(until)) && filters.matches(&r)
	}

	st, err := e.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.close()

	out := newListOutput(e)
	corrupt := 0
	emit := func(r listRow) {
		if r.Status == statusCorrupt {
			corrupt++
		}
		out.add(r)
	}
	var sorted []listRow
	n := 0
	cursor := o.after
	more := false
	next, stop := iter.Pull2(st.AllInstances(ctx, o.after))
	defer stop()
	bar := newProgress(e.stderr, "listing")
	defer bar.done()
	read := 0
	for {
		id, err, ok := next()
		if !ok {
			break
		}
		if err != nil {
			return fmt.Errorf("list instances of %s: %w", e.source(), err)
		}
		if o.limit > 0 && n == o.limit {
			more = true // another instance follows the last one shown
			break
		}
		r, err := rowOf(ctx, st, id)
		if err != nil {
			bar.done()
			return fmt.Errorf("read %q: %w", id, err)
		}
		read++
		bar.note(fmt.Sprintf("%d instance%s read, %d listed", read, render.S(read), n+len(sorted)))
		cursor = id
		if !match(r) {
			continue
		}
		if o.sortBy != "" {
			sorted = append(sorted, r)
			continue
		}
		emit(r)
		n++
		if n%listFlush == 0 {
			bar.done()
			out.flush()
		}
	}
	bar.done() // the rest goes to the terminal
	if o.sortBy != "" {
		slices.SortStableFunc(sorted, func(a, b listRow) int {
			switch o.sortBy {
			case "updated":
				return cmp.Or(b.Updated.Compare(a.Updated), cmp.Compare(a.Instance, b.Instance))
			case "events":
				return cmp.Or(cmp.Compare(b.Events, a.Events), cmp.Compare(a.Instance, b.Instance))
			}
			return cmp.Compare(a.Instance, b.Instance)
		})
		if o.limit > 0 && len(sorted) > o.limit {
			sorted = sorted[:o.limit]
		}
		for _, r := range sorted {
			emit(r)
		}
	}
	if err := out.close(); err != nil {
		return err
	}
	if more {
		fmt.Fprintf(e.stderr, "(limit of %d reached; the next page starts after %q: replay list --limit %d --after %s)\n",
			o.limit, cursor, o.limit, shellQuote(cursor))
	}
	if corrupt > 0 {
		fmt.Fprintf(e.stderr, "warning: %d instance(s) have a history that does not fold (status corrupt); run 'replay verify' for details\n", corrupt)
	}
	return nil
}

// listOutput writes list rows in the chosen format.
type listOutput struct {
	e   *env
	tw  *tabwriter.Writer
	em  *emitter
	any bool
}

func newListOutput(e *env) *listOutput {
	l := &listOutput{e: e}
	if e.output == outText {
		l.tw = tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(l.tw, "INSTANCE\tSTATUS\tWORKFLOW\tRUN\tEVENTS\tLAST SEQ\tLAST CHANGE")
	} else {
		l.em = newEmitter(e.stdout, e.output)
	}
	return l
}

func (l *listOutput) add(r listRow) {
	l.any = true
	if l.em != nil {
		l.em.add(r)
		return
	}
	run := "-"
	if r.Run != "" {
		run = r.Run[len(r.Run)-8:]
	}
	wf := r.Workflow
	if wf == "" {
		wf = "-"
	}
	fmt.Fprintf(l.tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", displayID(r.Instance), r.Status, wf, run, r.Events, r.LastSeq, fmtTime(r.Updated))
}

// flush writes the rows so far (text output is aligned per page).
func (l *listOutput) flush() {
	if l.tw != nil {
		_ = l.tw.Flush()
	}
}

func (l *listOutput) close() error {
	if l.em != nil {
		return l.em.close()
	}
	if !l.any {
		fmt.Fprintln(l.tw, "(no instances)")
	}
	return l.tw.Flush()
}

// displayID quotes an instance id that has spaces, control characters or
// quotes, so that a column stays one token.
func displayID(id string) string {
	for _, r := range id {
		if r <= ' ' || r == '"' || r == '\'' || r == '\\' || r == 0x7f {
			return fmt.Sprintf("%q", id)
		}
	}
	return id
}

// shellQuote quotes s for a shell command line when needed.
func shellQuote(s string) string {
	for _, r := range s {
		if !(r == '-' || r == '_' || r == '.' || r == '/' || r == ':' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}
