package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/runlog/runlog/audit"
)

func defineCount(fs *flag.FlagSet, o *opts) { defineSearch(fs, o) }

// countRow is one group of count's output.
type countRow struct {
	Status   string `json:"status"`
	Workflow string `json:"workflow"` // "" when the history names no workflow
	Count    int    `json:"count"`
}

// runCount counts the instances that pass list's filters, grouped by
// status and workflow.
func runCount(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("count takes no arguments, got %q (filter with the flags of list)", args[0])
	}
	q, err := parseQuery(e)
	if err != nil {
		return err
	}
	st, err := e.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.close()
	var rows []countRow
	total := 0
	if ix := e.openIndex(ctx, st); ix != nil {
		defer ix.Close()
		groups, err := ix.Count(ctx, q)
		if err != nil {
			return fmt.Errorf("count in the visibility index %s: %w", ix.Path(), err)
		}
		for _, g := range groups {
			rows = append(rows, countRow{Status: g.Status, Workflow: g.Workflow, Count: g.Count})
			total += g.Count
		}
	} else if rows, total, err = countFolded(ctx, e, st, q); err != nil {
		return err
	}
	return writeCount(e, rows, total)
}

// countFolded is count by a fold of every history (--no-index).
func countFolded(ctx context.Context, e *env, st *store, q audit.Query) ([]countRow, int, error) {
	bar := newProgress(e.stderr, "counting")
	defer bar.done()
	groups := map[countRow]int{}
	read, total := 0, 0
	for id, err := range st.AllInstances(ctx, "") {
		if err != nil {
			return nil, 0, fmt.Errorf("list instances of %s: %w", e.source(), err)
		}
		in, err := audit.DescribeNamed(ctx, st.Log, id, st.names(ctx))
		if err != nil {
			return nil, 0, fmt.Errorf("read %q: %w", id, err)
		}
		read++
		bar.note(fmt.Sprintf("%d instances read", read))
		if !q.Matches(&in) {
			continue
		}
		groups[countRow{Status: in.Status, Workflow: in.WorkflowLabel()}]++
		total++
	}
	bar.done()
	rows := make([]countRow, 0, len(groups))
	for g, n := range groups {
		g.Count = n
		rows = append(rows, g)
	}
	slices.SortFunc(rows, func(a, b countRow) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Status, b.Status), cmp.Compare(a.Workflow, b.Workflow))
	})
	return rows, total, nil
}

// writeCount writes count's groups and total.
func writeCount(e *env, rows []countRow, total int) error {
	switch e.output {
	case outJSON:
		return writeJSON(e.stdout, struct {
			Total  int        `json:"total"`
			Groups []countRow `json:"groups"`
		}{total, rows})
	case outNDJSON:
		for _, r := range rows {
			if err := writeNDJSON(e.stdout, r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tWORKFLOW\tINSTANCES")
	for _, r := range rows {
		wf := r.Workflow
		if wf == "" {
			wf = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", r.Status, wf, r.Count)
	}
	fmt.Fprintf(tw, "total\t\t%d\n", total)
	return tw.Flush()
}
