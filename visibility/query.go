package visibility

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/runlog/runlog/audit"
)

// Order is the order of [Index.Search]'s results.
type Order int

const (
	// ByID: ascending instance id; [SearchOptions.After] pages through it.
	ByID Order = iota
	// ByUpdated: the last change, newest first (ties by id).
	ByUpdated
	// ByEvents: the number of events, most first (ties by id).
	ByEvents
)

// SearchOptions orders and bounds a search.
type SearchOptions struct {
	Order Order
	// Limit bounds the number of instances returned; 0 for all.
	Limit int
	// After, with ByID, starts after this instance id (the last id of
	// the previous page).
	After string
}

// where translates q into a SQL condition on the instances table and its
// arguments; it selects what [audit.Query.Matches] passes
// (TestIndexAgreesWithDescribe holds the two to each other).
func where(q *audit.Query) (string, []any) {
	var conds []string
	var args []any
	if len(q.Statuses) > 0 {
		conds = append(conds, "status IN ("+strings.TrimSuffix(strings.Repeat("?,", len(q.Statuses)), ",")+")")
		for _, s := range q.Statuses {
			args = append(args, s)
		}
	}
	if !q.Since.IsZero() {
		conds, args = append(conds, "updated >= ?"), append(args, q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		conds, args = append(conds, "updated <= ?"), append(args, q.Until.UnixNano())
	}
	if q.Workflow != "" {
		// As the history names it, or, where it names none, as the
		// definition catalog does.
		conds, args = append(conds, "(wf_name = ? OR wf_label = ? OR (wf_label = '' AND definition IN (SELECT hash FROM definitions WHERE name = ? OR label = ?)))"),
			append(args, q.Workflow, q.Workflow, q.Workflow, q.Workflow)
	}
	if q.Definition != "" {
		// The prefix is hex (Query.Check), so no LIKE wildcard.
		conds, args = append(conds, "definition <> '' AND definition LIKE ?"), append(args, strings.ToLower(q.Definition)+"%")
	}
	if q.Actor != "" {
		conds, args = append(conds, "id IN (SELECT id FROM actors WHERE actor = ?)"), append(args, q.Actor)
	}
	if q.Signal != nil {
		conds, args = append(conds, "signals & ? <> 0"), append(args, int64(1)<<*q.Signal)
	}
	if q.Waiting != nil {
		conds, args = append(conds, "waiting = ?"), append(args, int64(*q.Waiting))
	}
	if !q.CreatedSince.IsZero() {
		conds, args = append(conds, "created >= ?"), append(args, q.CreatedSince.UnixNano())
	}
	if q.EventType != "" {
		conds, args = append(conds, "id IN (SELECT id FROM types WHERE type = ?)"), append(args, string(q.EventType))
	}
	if len(conds) == 0 {
		return "1", nil
	}
	return strings.Join(conds, " AND "), args
}

// Search returns the instances that pass q, as the index has them (call
// [Index.CatchUp] first for the log's latest), in the order and within
// the bounds opts sets. An invalid q gives an error matching
// [audit.ErrInvalidQuery].
func (ix *Index) Search(ctx context.Context, q audit.Query, opts SearchOptions) ([]audit.Instance, error) {
	if err := q.Check(); err != nil {
		return nil, err
	}
	cond, args := where(&q)
	if opts.After != "" {
		if opts.Order != ByID {
			return nil, fmt.Errorf("visibility: search: After pages the order by id only")
		}
		cond, args = cond+" AND id > ?", append(args, opts.After)
	}
	order := "id"
	switch opts.Order {
	case ByUpdated:
		order = "updated DESC, id"
	case ByEvents:
		order = "events DESC, id"
	}
	query := "SELECT summary FROM instances WHERE " + cond + " ORDER BY " + order
	if opts.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", opts.Limit)
	}
	rows, err := ix.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("visibility: search: %w", err)
	}
	defer rows.Close()
	var out []audit.Instance
	for rows.Next() {
		in, err := scanSummary(rows)
		if err != nil {
			return nil, fmt.Errorf("visibility: search: %w", err)
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("visibility: search: %w", err)
	}
	if err := ix.name(ctx, out); err != nil {
		return nil, fmt.Errorf("visibility: search: %w", err)
	}
	return out, nil
}

func scanSummary(rows *sql.Rows) (audit.Instance, error) {
	var b []byte
	var in audit.Instance
	if err := rows.Scan(&b); err != nil {
		return in, err
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return in, fmt.Errorf("an instance's row does not decode (delete the index to rebuild it): %w", err)
	}
	return in, nil
}

// Get returns the index's instance id, and whether it has one.
func (ix *Index) Get(ctx context.Context, id string) (audit.Instance, bool, error) {
	var b []byte
	err := ix.db.QueryRowContext(ctx, `SELECT summary FROM instances WHERE id = ?`, id).Scan(&b)
	if err == sql.ErrNoRows {
		return audit.Instance{}, false, nil
	}
	if err != nil {
		return audit.Instance{}, false, fmt.Errorf("visibility: get %q: %w", id, err)
	}
	var in audit.Instance
	if err := json.Unmarshal(b, &in); err != nil {
		return in, false, fmt.Errorf("visibility: get %q: its row does not decode (delete the index to rebuild it): %w", id, err)
	}
	one := []audit.Instance{in}
	if err := ix.name(ctx, one); err != nil {
		return in, false, fmt.Errorf("visibility: get %q: %w", id, err)
	}
	return one[0], true, nil
}

// Group is one group of [Index.Count]: a status and a workflow label
// ("" when the history names none) with its number of instances.
type Group struct {
	Status   string
	Workflow string
	Count    int
}

// Count counts the instances that pass q by status and workflow label,
// the largest group first (then by status and workflow). An instance
// whose history names no workflow counts under the label the definition
// catalog gives its definition, if it gives one.
func (ix *Index) Count(ctx context.Context, q audit.Query) ([]Group, error) {
	if err := q.Check(); err != nil {
		return nil, err
	}
	cond, args := where(&q)
	// The named by label from the covering index; the unnamed by
	// definition (a partial index), labelled from the catalog here.
	rows, err := ix.db.QueryContext(ctx, "SELECT status, wf_label, '' AS def, COUNT(*) FROM instances WHERE wf_label <> '' AND "+cond+
		" GROUP BY status, wf_label UNION ALL SELECT status, '', definition, COUNT(*) FROM instances WHERE wf_label = '' AND "+cond+
		" GROUP BY status, definition", append(args, args...)...)
	if err != nil {
		return nil, fmt.Errorf("visibility: count: %w", err)
	}
	defer rows.Close()
	type key struct{ status, label string }
	counts := map[key]int{}
	var unnamed []struct {
		status, def string
		n           int
	}
	for rows.Next() {
		var status, label, def string
		var n int
		if err := rows.Scan(&status, &label, &def, &n); err != nil {
			return nil, fmt.Errorf("visibility: count: %w", err)
		}
		if def != "" {
			unnamed = append(unnamed, struct {
				status, def string
				n           int
			}{status, def, n})
			continue
		}
		counts[key{status, label}] += n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("visibility: count: %w", err)
	}
	rows.Close()
	for _, u := range unnamed {
		label := ""
		if err := ix.db.QueryRowContext(ctx, `SELECT label FROM definitions WHERE hash = ?`, u.def).Scan(&label); err != nil && err != sql.ErrNoRows {
			return nil, fmt.Errorf("visibility: count: %w", err)
		}
		counts[key{u.status, label}] += u.n
	}
	out := make([]Group, 0, len(counts))
	for k, n := range counts {
		out = append(out, Group{Status: k.status, Workflow: k.label, Count: n})
	}
	slices.SortFunc(out, func(a, b Group) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Status, b.Status), cmp.Compare(a.Workflow, b.Workflow))
	})
	return out, nil
}
