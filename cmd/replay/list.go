package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"iter"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/render"
	"github.com/runlog/runlog/visibility"
	"github.com/runlog/runlog/workflow"
)

func defineList(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.sortBy, "sort", "", "sort by `KEY`: id (ascending), updated or events (descending); loads every matching row into memory")
	fs.IntVar(&o.limit, "limit", 0, "print at most `N` instances (0: all)")
	fs.StringVar(&o.after, "after", "", "start after the instance `ID` (the cursor printed when --limit cuts the list)")
	defineSearch(fs, o)
}

// defineSearch defines the filters list and count share.
func defineSearch(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.status, "status", "", "only instances in these `STATUSES`, comma separated: "+strings.Join(audit.Statuses(), ", "))
	fs.StringVar(&o.since, "since", "", "only instances whose last change is at or after `TIME`")
	fs.StringVar(&o.until, "until", "", "only instances whose last change is at or before `TIME`")
	fs.StringVar(&o.workflowName, "workflow", "", "only runs of the workflow `NAME` (as the history names it; \"NAME VERSION\" for one version)")
	fs.StringVar(&o.definition, "definition", "", "only runs of the definition whose hash starts with `HEX`")
	fs.StringVar(&o.actor, "actor", "", "only instances with a commit by `ACTOR` (or a cancel or pause it requested)")
	fs.StringVar(&o.signal, "signal", "", "only instances with a pending `KIND` request: cancel or pause")
	fs.StringVar(&o.waiting, "waiting", "", "only runs parked on a `KIND`: delay or signal")
	fs.StringVar(&o.createdSince, "created-since", "", "only runs created at or after `TIME`")
	fs.StringVar(&o.eventType, "event-type", "", "only instances whose history holds an event of `TYPE` (e.g. event.sent)")
	defineIndex(fs, o)
}

// parseQuery reads the filters of list and count into an audit.Query.
func parseQuery(e *env) (audit.Query, error) {
	o := &e.o
	q := audit.Query{Workflow: o.workflowName, Definition: o.definition, Actor: o.actor}
	if o.status != "" {
		for s := range strings.SplitSeq(o.status, ",") {
			q.Statuses = append(q.Statuses, strings.TrimSpace(s))
		}
	}
	times := []struct {
		flag, value string
		to          *time.Time
	}{{"since", o.since, &q.Since}, {"until", o.until, &q.Until}, {"created-since", o.createdSince, &q.CreatedSince}}
	for _, t := range times {
		if t.value == "" {
			continue
		}
		v, err := parseTime(t.value, e.now())
		if err != nil {
			return q, usagef("--%s: %v", t.flag, err)
		}
		*t.to = v
	}
	if o.signal != "" {
		k, err := workflow.ParseSignalKind(o.signal)
		if err != nil {
			return q, usagef("--signal %q: want cancel or pause", o.signal)
		}
		q.Signal = &k
	}
	switch o.waiting {
	case "":
	case "delay":
		k := workflow.StatusWaiting
		q.Waiting = &k
	case "signal":
		k := workflow.StatusAwaitingSignal
		q.Waiting = &k
	default:
		return q, usagef("--waiting %q: want delay or signal", o.waiting)
	}
	q.EventType = events.Type(o.eventType)
	if err := q.Check(); err != nil {
		return q, usagef("%s", strings.TrimPrefix(err.Error(), audit.ErrInvalidQuery.Error()+": "))
	}
	return q, nil
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
}

// rowOf describes an instance (audit.Describe) as its list row. A
// history that does not fold gives a row with status corrupt; a read
// error is returned.
func rowOf(ctx context.Context, st *store, id string) (listRow, audit.Instance, error) {
	in, err := audit.DescribeNamed(ctx, st.Log, id, st.names(ctx))
	return rowFrom(&in), in, err
}

// listFlush is the number of rows of an unsorted list written at a time.
const listFlush = 500

func runList(ctx context.Context, e *env, args []string) error {
	o := &e.o
	if len(args) > 0 {
		return usagef("list takes no arguments, got %q (filter with --status, --since, --until)", args[0])
	}
	q, err := parseQuery(e)
	if err != nil {
		return err
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

	st, err := e.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.close()

	out := newListOutput(e)
	corrupt := 0
	emit := func(r listRow) {
		if r.Status == audit.StatusCorrupt {
			corrupt++
		}
		out.add(r)
	}
	if ix := e.openIndex(ctx, st); ix != nil {
		defer ix.Close()
		return listIndexed(ctx, e, ix, q, out, emit, &corrupt)
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
		r, in, err := rowOf(ctx, st, id)
		if err != nil {
			bar.done()
			return fmt.Errorf("read %q: %w", id, err)
		}
		read++
		bar.note(fmt.Sprintf("%d instance%s read, %d listed", read, render.S(read), n+len(sorted)))
		cursor = id
		if !q.Matches(&in) {
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

// listIndexed is list answered by the visibility index (caught up with
// the log): by id, or sorted, at most --limit rows.
func listIndexed(ctx context.Context, e *env, ix *visibility.Index, q audit.Query, out *listOutput, emit func(listRow), corrupt *int) error {
	o := &e.o
	so := visibility.SearchOptions{After: o.after}
	switch o.sortBy {
	case "updated":
		so.Order = visibility.ByUpdated
	case "events":
		so.Order = visibility.ByEvents
	}
	if o.limit > 0 {
		so.Limit = o.limit + 1 // one more tells whether a next page exists
	}
	found, err := ix.Search(ctx, q, so)
	if err != nil {
		return fmt.Errorf("search the visibility index %s: %w", ix.Path(), err)
	}
	more := o.limit > 0 && len(found) > o.limit
	if more {
		found = found[:o.limit]
	}
	for i := range found {
		emit(rowFrom(&found[i]))
		if (i+1)%listFlush == 0 {
			out.flush()
		}
	}
	if err := out.close(); err != nil {
		return err
	}
	if more && o.sortBy == "" {
		cursor := found[len(found)-1].ID
		fmt.Fprintf(e.stderr, "(limit of %d reached; the next page starts after %q: replay list --limit %d --after %s)\n",
			o.limit, cursor, o.limit, shellQuote(cursor))
	}
	if *corrupt > 0 {
		fmt.Fprintf(e.stderr, "warning: %d instance(s) have a history that does not fold (status corrupt); run 'replay verify' for details\n", *corrupt)
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
