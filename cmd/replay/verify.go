package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/internal/render"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/workflow"
)

func defineVerify(fs *flag.FlagSet, o *opts) {
	fs.IntVar(&o.maxProblems, "max-problems", 0, "stop after `N` problems (0: no limit); the report then says it is incomplete")
	fs.Var((*stringList)(&o.digests), "digest", "a digest `file` (repeatable): the log must still hold everything it committed to")
	fs.StringVar(&o.key, "key", "", "the public `key` (or a file holding it) that must have signed every --digest")
	fs.BoolVar(&o.checkpoints, "checkpoints", false, "also check the projection checkpoints (the STREAM_CHECKPOINTS bucket) against the histories")
}

// validIDs checks positional instance ids.
func validIDs(ids []string) error {
	for _, id := range ids {
		if err := workflow.ValidateInstanceID(id); err != nil {
			return usagef("%v", err)
		}
	}
	return nil
}

// verifyView is verify's JSON output.
type verifyView struct {
	OK bool `json:"ok"`
	*audit.Report
	// Catalog is the verification of the store's definition catalog
	// (its own stream, STREAM_DEFINITIONS), when the store has one and
	// the whole store was verified.
	Catalog *audit.Report `json:"catalog,omitempty"`
}

func runVerify(ctx context.Context, e *env, args []string) error {
	if err := validIDs(args); err != nil {
		return err
	}
	if e.o.maxProblems < 0 {
		return usagef("--max-problems must not be negative")
	}
	if e.o.key != "" && len(e.o.digests) == 0 {
		return usagef("--key checks the signature of a --digest: give one")
	}
	digests, err := readDigests(e)
	if err != nil {
		return err
	}
	st, err := e.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.close()

	bar := newProgress(e.stderr, "verifying")
	vo := audit.VerifyOptions{IDs: args, Progress: bar.update, MaxProblems: e.o.maxProblems, Digests: digests}
	if e.o.checkpoints {
		vo.Checkpoints = st.Log.Checkpoints()
	}
	var rep *audit.Report
	if len(digests) > 0 && st.Partitions() > 1 {
		rep, err = verifyPartitions(ctx, st.Log, vo)
	} else {
		rep, err = audit.Verify(ctx, st.Log, vo)
	}
	// The definition catalog is an audit log of its own: verified with
	// the store, when the whole store is.
	var catRep *audit.Report
	if err == nil && len(args) == 0 && len(digests) == 0 {
		if cat, cerr := st.Log.CatalogLog(ctx); cerr == nil {
			catRep, err = audit.Verify(ctx, cat, audit.VerifyOptions{MaxProblems: e.o.maxProblems})
			if err != nil {
				err = fmt.Errorf("definition catalog %s: %w", cat.Stream(), err)
			}
		}
	}
	bar.done()
	if rep == nil {
		rep = &audit.Report{}
	}
	if rep.Problems == nil {
		rep.Problems = []audit.Problem{}
	}
	// The problems found are printed even when the verification could not
	// finish.
	var werr error
	switch e.output {
	case outJSON:
		werr = writeJSON(e.stdout, verifyView{OK: err == nil && rep.OK() && (catRep == nil || catRep.OK()), Report: rep, Catalog: catRep})
	case outNDJSON:
		for _, p := range rep.Problems {
			if werr = writeNDJSON(e.stdout, p); werr != nil {
				break
			}
		}
	default:
		for _, p := range rep.Problems {
			if _, werr = fmt.Fprintln(e.stdout, p.String()); werr != nil {
				break
			}
		}
	}
	if catRep != nil && e.output != outJSON {
		for _, p := range catRep.Problems {
			if e.output == outNDJSON {
				werr = writeNDJSON(e.stdout, struct {
					Catalog bool `json:"catalog"`
					audit.Problem
				}{true, p})
			} else {
				_, werr = fmt.Fprintln(e.stdout, "definition catalog: "+p.String())
			}
			if werr != nil {
				break
			}
		}
	}
	if werr != nil {
		return werr
	}
	summary := fmt.Sprintf("verified %d instance%s, %d messages, %d events (%s)", rep.Instances, render.S(rep.Instances), rep.Messages, rep.Events, humanBytes(int64(rep.Bytes)))
	if len(digests) > 0 {
		summary += fmt.Sprintf(" against %d digest%s", len(digests), render.S(len(digests)))
	}
	if err != nil {
		return fmt.Errorf("%s before the verification failed: %w (the problems above were found until then)", summary, err)
	}
	if rep.Skipped > 0 {
		summary += fmt.Sprintf(", %d message%s skipped (on subjects that are not instance subjects: not runlog's)", rep.Skipped, render.S(rep.Skipped))
	}
	switch {
	case rep.Incomplete && rep.ReadThrough > 0:
		summary += fmt.Sprintf(": stopped at %d problem%s (--max-problems); the log was read through seq %d only", len(rep.Problems), render.S(len(rep.Problems)), rep.ReadThrough)
	case rep.Incomplete:
		summary += fmt.Sprintf(": stopped at %d problem%s (--max-problems); the instances after %q were not verified", len(rep.Problems), render.S(len(rep.Problems)), lastInstance(rep))
	case len(rep.Problems) > 0:
		summary += fmt.Sprintf(": %d problem%s in %d instance%s", len(rep.Problems), render.S(len(rep.Problems)), rep.Damaged, render.S(rep.Damaged))
	default:
		summary += ": no problems"
	}
	if catRep != nil {
		summary += fmt.Sprintf("; definition catalog: %d definition%s", catRep.Instances, render.S(catRep.Instances))
		if n := len(catRep.Problems); n > 0 {
			summary += fmt.Sprintf(", %d problem%s", n, render.S(n))
		} else {
			summary += ", no problems"
		}
	}
	if e.output == outText {
		fmt.Fprintln(e.stdout, summary)
	} else {
		fmt.Fprintln(e.stderr, summary)
	}
	if catRep != nil && !catRep.OK() && rep.OK() {
		return &problemsError{msg: fmt.Sprintf("%d problem%s found in the definition catalog: its history is damaged or was altered (see above)", len(catRep.Problems), render.S(len(catRep.Problems)))}
	}
	if !rep.OK() {
		if missing := missingOnly(rep); len(missing) > 0 {
			return &problemsError{msg: fmt.Sprintf("no such instance in %s: %s (it has no history; 'replay list' lists the instances)", e.source(), strings.Join(quoteAll(missing), ", "))}
		}
		return &problemsError{msg: fmt.Sprintf("%d problem%s found: the history is damaged or was altered (see above; 'replay show ID' shows the messages)", len(rep.Problems), render.S(len(rep.Problems)))}
	}
	return nil
}

// missingOnly returns the instances named that have no history, when
// that is every problem of the report: the ids are wrong, the histories
// are not damaged.
func missingOnly(rep *audit.Report) []string {
	var ids []string
	for _, p := range rep.Problems {
		if p.Kind != audit.KindEmpty {
			return nil
		}
		ids = append(ids, p.Instance)
	}
	return ids
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// verifyPartitions verifies a partitioned store against digests: a
// digest is of one partition's stream, so each partition is verified
// through its view (jetstream.Log.Partition) against the digests of its
// stream, and the reports are joined. A digest of a stream that is none of
// the store's partitions is a usage error, and nothing is verified.
func verifyPartitions(ctx context.Context, st *jetstream.Log, vo audit.VerifyOptions) (*audit.Report, error) {
	streams := st.Streams()
	byStream := map[string][]*audit.Digest{}
	for _, d := range vo.Digests {
		if !slices.Contains(streams, d.Stream) {
			return nil, usagef("--digest: the digest is of stream %s, not one of this store's partitions (%s): pass the digests of this store's partitions ('replay digest -o F' writes one per partition)",
				d.Stream, strings.Join(streams, ", "))
		}
		byStream[d.Stream] = append(byStream[d.Stream], d)
	}
	all := &audit.Report{Problems: []audit.Problem{}}
	for p, name := range streams {
		view, err := st.Partition(p)
		if err != nil {
			return all, err
		}
		o := vo
		o.Digests = byStream[name]
		if len(vo.IDs) > 0 {
			o.IDs = nil
			for _, id := range vo.IDs {
				if jetstream.PartitionOf(id, len(streams)) == p {
					o.IDs = append(o.IDs, id)
				}
			}
			if len(o.IDs) == 0 && len(o.Digests) == 0 {
				continue
			}
		}
		if vo.MaxProblems > 0 {
			o.MaxProblems = vo.MaxProblems - len(all.Problems)
		}
		rep, err := audit.Verify(ctx, view, o)
		if rep != nil {
			all.Instances += rep.Instances
			all.Messages += rep.Messages
			all.Events += rep.Events
			all.Bytes += rep.Bytes
			all.Skipped += rep.Skipped
			all.Damaged += rep.Damaged
			all.Problems = append(all.Problems, rep.Problems...)
			all.Heads = append(all.Heads, rep.Heads...)
			all.Incomplete = all.Incomplete || rep.Incomplete
			all.ReadThrough = rep.ReadThrough
		}
		if err != nil || all.Incomplete {
			return all, err
		}
	}
	return all, nil
}

func lastInstance(rep *audit.Report) string {
	if n := len(rep.Problems); n > 0 {
		return rep.Problems[n-1].Instance
	}
	return ""
}

// progress draws a one-line progress report on stderr when stderr is a
// terminal, and nothing otherwise. It is cleared before anything else is
// printed, so it never hides an error or a problem.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	on    bool
	what  string
	last  time.Time
	start time.Time
	drawn bool
}

func newProgress(w io.Writer, what string) *progress {
	return &progress{w: w, on: isTerminal(w), what: what, start: time.Now()}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progress) update(pr audit.Progress) {
	if !p.on {
		return
	}
	total := ""
	if pr.Total > 0 {
		total = fmt.Sprintf("/%d", pr.Total)
	}
	line := fmt.Sprintf("%d%s instances, %d messages, %s, %d problems, %s",
		pr.Instances, total, pr.Messages, humanBytes(int64(pr.Bytes)), pr.Problems, time.Since(p.start).Round(time.Second))
	if pr.Instance != "" {
		line += "  " + cut(displayID(pr.Instance), 30)
	}
	p.draw(line, 0)
}

// note draws line as the progress, once the work has taken over
// progressDelay (a quick command shows none).
func (p *progress) note(line string) {
	if !p.on {
		return
	}
	p.draw(line+", "+time.Since(p.start).Round(time.Second).String(), progressDelay)
}

// draw shows "what: line" in place of the last progress line, once the
// work has taken over after, at most every 100 ms.
func (p *progress) draw(line string, after time.Duration) {
	if !p.on || time.Since(p.start) < after {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, "\r\033[K%s: %s", p.what, line)
	p.drawn = true
}

// progressDelay is how long list and stats work before they show
// progress.
const progressDelay = time.Second

// done clears the progress line (before output goes to the terminal,
// and at the end).
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}
