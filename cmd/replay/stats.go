package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/internal/render"
	"github.com/runlog/runlog/projection"
)

// statsView is stats' output.
type statsView struct {
	Instances int            `json:"instances"`
	Messages  int            `json:"messages"`
	Commits   int            `json:"commits"`
	Events    int            `json:"events"`
	Bytes     int64          `json:"bytes"` // payload bytes of every message
	Oldest    *time.Time     `json:"oldest,omitempty"`
	Newest    *time.Time     `json:"newest,omitempty"`
	ByType    map[string]int `json:"by_type"`
	ByStatus  map[string]int `json:"by_status"`
	Corrupt   []string       `json:"corrupt,omitempty"` // instances whose history does not decode or fold
}

func runStats(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("stats takes no arguments, got %q", args[0])
	}
	st, err := e.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.close()

	v := statsView{ByType: map[string]int{}, ByStatus: map[string]int{}}
	var oldest, newest time.Time
	bar := newProgress(e.stderr, "stats")
	defer bar.done()
	for id, err := range st.AllInstances(ctx, "") {
		if err != nil {
			bar.done()
			return fmt.Errorf("list instances of %s: %w", e.source(), err)
		}
		v.Instances++
		bar.note(fmt.Sprintf("%d instance%s, %d messages, %s", v.Instances, render.S(v.Instances), v.Messages, humanBytes(v.Bytes)))
		s := projection.New(id)
		var ferr error
		// The one fold loop (projection.State.Steps): every message is
		// counted; the first that does not decode or fold marks the
		// instance corrupt.
		for step, err := range s.Steps(st.Read(ctx, id, 0)) {
			if err != nil {
				return fmt.Errorf("read %q: %w", id, err)
			}
			m, rec := step.Message, step.Record
			v.Messages++
			v.Bytes += int64(len(m.Data))
			ferr = cmpErr(ferr, step.Err)
			if !step.Decoded() {
				continue
			}
			v.Commits++
			t := rec.Commit.Time
			if oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
			if t.After(newest) {
				newest = t
			}
			for _, ev := range rec.Commit.Events {
				v.Events++
				v.ByType[string(ev.Type)]++
			}
		}
		if ferr != nil {
			v.ByStatus[audit.StatusCorrupt]++
			v.Corrupt = append(v.Corrupt, id)
		} else {
			v.ByStatus[audit.StatusOf(&s)]++
		}
	}
	bar.done()
	if !oldest.IsZero() {
		o, n := oldest.UTC(), newest.UTC()
		v.Oldest, v.Newest = &o, &n
	}
	switch e.output {
	case outJSON:
		err = writeJSON(e.stdout, v)
	case outNDJSON:
		err = writeNDJSON(e.stdout, v)
	default:
		err = writeStatsText(e, &v)
	}
	if err != nil {
		return err
	}
	if len(v.Corrupt) > 0 {
		fmt.Fprintf(e.stderr, "warning: %d instance(s) have a history that does not decode or fold; run 'replay verify' for details\n", len(v.Corrupt))
	}
	return nil
}

// cmpErr keeps the first error.
func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func writeStatsText(e *env, v *statsView) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "store\t%s\n", e.source())
	fmt.Fprintf(tw, "instances\t%d\n", v.Instances)
	fmt.Fprintf(tw, "commits\t%d (%d messages)\n", v.Commits, v.Messages)
	fmt.Fprintf(tw, "events\t%d\n", v.Events)
	fmt.Fprintf(tw, "bytes\t%d (%s of commit payloads)\n", v.Bytes, humanBytes(v.Bytes))
	if v.Oldest != nil {
		fmt.Fprintf(tw, "oldest commit\t%s\n", fmtTime(*v.Oldest))
		fmt.Fprintf(tw, "newest commit\t%s\n", fmtTime(*v.Newest))
	}
	if len(v.ByStatus) > 0 {
		fmt.Fprintf(tw, "\nSTATUS\tINSTANCES\n")
		for _, k := range sortedByCount(v.ByStatus) {
			fmt.Fprintf(tw, "%s\t%d\n", k, v.ByStatus[k])
		}
	}
	if len(v.ByType) > 0 {
		fmt.Fprintf(tw, "\nEVENT TYPE\tEVENTS\n")
		for _, k := range sortedByCount(v.ByType) {
			fmt.Fprintf(tw, "%s\t%d\n", k, v.ByType[k])
		}
	}
	if len(v.Corrupt) > 0 {
		fmt.Fprintf(tw, "\ncorrupt\t%d: %v\n", len(v.Corrupt), v.Corrupt)
	}
	return tw.Flush()
}

// sortedByCount returns the keys, largest count first, then by name.
func sortedByCount(m map[string]int) []string {
	return slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		if a < b {
			return -1
		}
		return 1
	})
}
