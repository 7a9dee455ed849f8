// Package visibility keeps a visibility index of a runlog log: what a
// search across instances knows of each instance ([audit.Instance]: its
// status, workflow, actors, event types, times), in an embedded SQLite
// database, so that "which runs failed in the last hour" or "everything
// alice cancelled" is an indexed query rather than a fold of every
// history.
//
// The index is a projection of the log and is never trusted over it. It
// records, per partition of the log, the last sequence it folded;
// [Index.CatchUp] folds the commits after it, and only those, through the
// same [audit.Describer] that [audit.Describe] uses on a whole history,
// so that an instance's row is what a fold of its history gives
// (TestIndexAgreesWithDescribe holds them to each other). It can be
// deleted at any time: the next CatchUp rebuilds it from the log. A log
// that is not the one it indexed (a stream deleted and created again, a
// different number of partitions, a sequence behind the index) is
// detected and the index rebuilt. Verification (audit.Verify, replay
// verify) never reads it.
//
// Several processes may share one index file: each catch-up commits its
// batches in write transactions that first check that no one else moved
// the index on, and starts over from where the other left it when someone
// did. A process killed at any moment leaves the index at its last
// committed batch.
//
// Why SQLite (modernc.org/sqlite, pure Go, no cgo): the queries combine
// filters on several attributes with an order and a limit, which is what
// a SQL query planner over secondary indexes does; a key-value store
// (bbolt, pebble) would need each such index written and intersected by
// hand. Measured against bbolt with the same secondary keys written by
// hand (BENCHMARKS.md §5.16): SQLite builds faster and in 2.7× less disk;
// bbolt answers a one-filter page about 1.5× faster.
package visibility

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
)

// SchemaVersion is the version of the index's tables. An index of
// another version is dropped and rebuilt from the log by [Index.CatchUp].
const SchemaVersion = 5

// A Log is what the index folds: a log of one or more partitions, each
// read in its sequence order and described. *jetstream.Log and
// *memlog.Log are Logs.
type Log interface {
	Partitions() int
	// PartitionInfo describes partition p: its name and creation time
	// tell it from another log of the same name.
	PartitionInfo(ctx context.Context, p int) (events.LogInfo, error)
	// ScanPartition reads partition p's messages after a sequence.
	ScanPartition(ctx context.Context, p int, after uint64) iter.Seq2[events.Scanned, error]
	// Read reads one instance's messages after a sequence: the index
	// folds an instance's history again when it has no fold of it in
	// memory to go on from.
	Read(ctx context.Context, instance string, after uint64) iter.Seq2[events.Message, error]
}

// Index is a visibility index in a SQLite file. Its methods are safe for
// concurrent use; several processes may open the same file.
type Index struct {
	db   *sql.DB
	path string
	mu   sync.Mutex // one catch-up at a time in this process

	// batchMessages bounds the messages folded before a batch is
	// committed (and so the memory of a catch-up).
	batchMessages int
	// folds keeps the folds of the instances last written, to go on
	// from without reading their histories again.
	folds *foldCache
	// stmts are the catch-up's statements, prepared once.
	stmts statements
	// catalogMissed is when the log's definition catalog was last
	// looked for and not found; catalogChecked when it was last read.
	catalogMissed, catalogChecked time.Time
}

// statements are the statements a catch-up runs for every instance.
type statements struct {
	lookup, upsert, actor, typ *sql.Stmt
}

// Open opens the index at path, creating the file (and its directory,
// mode 0700) if needed. An index of another [SchemaVersion] is dropped
// here: the next [Index.CatchUp] rebuilds it. Close it with
// [Index.Close].
func Open(path string) (*Index, error) {
	if path == "" {
		return nil, errors.New("visibility: open: the index path is empty")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("visibility: open %s: %w", path, err)
	}
	// WAL: readers do not wait for a writer; busy_timeout: a writer
	// waits for another process's batch rather than failing;
	// _txlock=immediate: a write transaction takes the write lock when
	// it begins, so that its check of the position and its writes are
	// one.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("visibility: open %s: %w", path, err)
	}
	ix := &Index{db: db, path: path, batchMessages: DefaultBatch, folds: newFoldCache(DefaultFoldCache)}
	if err := ix.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("visibility: open %s: %w", path, err)
	}
	if err := ix.prepare(); err != nil {
		db.Close()
		return nil, fmt.Errorf("visibility: open %s: %w", path, err)
	}
	return ix, nil
}

// DefaultBatch is the number of messages a catch-up folds before it
// commits them with the position they reach.
const DefaultBatch = 20_000

// SetBatch sets the number of messages a catch-up folds per committed
// batch (n ≤ 0: [DefaultBatch]). Smaller batches commit more often (a
// killed catch-up loses less work, and a reader sees progress sooner)
// and cost more per message.
func (ix *Index) SetBatch(n int) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if n <= 0 {
		n = DefaultBatch
	}
	ix.batchMessages = n
}

// Path returns the index file's path.
func (ix *Index) Path() string { return ix.path }

// Close closes the database.
func (ix *Index) Close() error {
	for _, st := range []*sql.Stmt{ix.stmts.lookup, ix.stmts.upsert, ix.stmts.actor, ix.stmts.typ} {
		if st != nil {
			st.Close()
		}
	}
	return ix.db.Close()
}

// prepare prepares the catch-up's statements.
func (ix *Index) prepare() error {
	var err error
	for _, s := range []struct {
		to  **sql.Stmt
		sql string
	}{
		{&ix.stmts.lookup, `SELECT last_seq FROM instances WHERE id = ?`},
		{&ix.stmts.upsert, `INSERT INTO instances (id, partition, status, wf_name, wf_label, definition, updated, created, waiting, signals, events, last_seq, summary)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, wf_name = excluded.wf_name, wf_label = excluded.wf_label,
			definition = excluded.definition, updated = excluded.updated, created = excluded.created, waiting = excluded.waiting,
			signals = excluded.signals, events = excluded.events, last_seq = excluded.last_seq, summary = excluded.summary`},
		{&ix.stmts.actor, `INSERT OR IGNORE INTO actors (actor, id) VALUES (?, ?)`},
		{&ix.stmts.typ, `INSERT OR IGNORE INTO types (type, id) VALUES (?, ?)`},
	} {
		if *s.to, err = ix.db.Prepare(s.sql); err != nil {
			return err
		}
	}
	return nil
}

const schema = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partitions (
	partition INTEGER PRIMARY KEY,
	name      TEXT NOT NULL,
	created   INTEGER NOT NULL, -- the log's creation time, unix ns: tells it from another of the same name
	seq       INTEGER NOT NULL  -- the last sequence folded
);
CREATE TABLE IF NOT EXISTS instances (
	id          TEXT PRIMARY KEY,
	partition   INTEGER NOT NULL,
	status      TEXT NOT NULL,
	wf_name     TEXT NOT NULL,    -- the run's workflow name, '' when the history names none
	wf_label    TEXT NOT NULL,    -- "name version", as audit.Instance.WorkflowLabel
	definition  TEXT NOT NULL,    -- the run's definition hash in hex, '' without a snapshot
	updated     INTEGER NOT NULL, -- the last commit's time, unix ns
	created     INTEGER,          -- the current run's creation, unix ns; NULL without a snapshot
	waiting     INTEGER,          -- the run's status kind when a snapshot exists; NULL otherwise
	signals     INTEGER NOT NULL, -- bit k set: a request of signal kind k is pending
	events      INTEGER NOT NULL,
	last_seq    INTEGER NOT NULL, -- the sequence of the instance's last commit folded
	summary     BLOB NOT NULL     -- the audit.Instance, JSON
);
CREATE INDEX IF NOT EXISTS instances_status ON instances (status, updated);
CREATE INDEX IF NOT EXISTS instances_status_id ON instances (status, id); -- a status's page by id without a sort
CREATE INDEX IF NOT EXISTS instances_group ON instances (status, wf_label); -- Count from the index alone
CREATE INDEX IF NOT EXISTS instances_updated ON instances (updated);
CREATE INDEX IF NOT EXISTS instances_wf ON instances (wf_name, updated);
CREATE INDEX IF NOT EXISTS instances_label ON instances (wf_label, updated);
CREATE TABLE IF NOT EXISTS actors (actor TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (actor, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS types (type TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (type, id)) WITHOUT ROWID;
-- The definition catalog's copy (lifecycle.Store.RegisterDefinition): the
-- names of the instances whose histories name none, resolved when read.
CREATE TABLE IF NOT EXISTS definitions (
	hash  TEXT PRIMARY KEY, -- the definition hash in hex
	name  TEXT NOT NULL,
	label TEXT NOT NULL,    -- "name version", as audit.Instance.WorkflowLabel
	def   BLOB NOT NULL     -- the workflow.Definition, JSON
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS definitions_name ON definitions (name);
CREATE INDEX IF NOT EXISTS definitions_label ON definitions (label);
CREATE INDEX IF NOT EXISTS instances_unnamed ON instances (status, definition) WHERE wf_label = ''; -- Count of the unnamed, by definition
`

// migrate creates the tables, dropping those of another schema version.
// The check and the change are one write transaction, so that two
// processes opening one file at once do not both migrate it.
func (ix *Index) migrate() error {
	tx, err := ix.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var v string
	err = tx.QueryRow(`SELECT value FROM meta WHERE key = 'schema'`).Scan(&v)
	if err == nil && v == fmt.Sprint(SchemaVersion) {
		return tx.Commit()
	}
	if err != nil && !isNoTable(err) && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	for _, t := range []string{"meta", "partitions", "instances", "actors", "types", "definitions"} {
		if _, err := tx.Exec(`DROP TABLE IF EXISTS ` + t); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(schema); err != nil {
		return err
	}
	if _, err := tx.Exec(`INSERT INTO meta (key, value) VALUES ('schema', ?)`, fmt.Sprint(SchemaVersion)); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if v != "" {
		_, _ = ix.db.Exec(`VACUUM`) // give the old tables' pages back; another reader may keep it from running: harmless
	}
	return nil
}

func isNoTable(err error) bool { return strings.Contains(err.Error(), "no such table") }

// rebuildFor empties the index and records the partitions of the log
// infos describe, unless, checked again inside the write transaction,
// the index is already of that log (another process rebuilt it first).
// It reports whether it emptied the index.
func (ix *Index) rebuildFor(ctx context.Context, infos []events.LogInfo) (bool, error) {
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	same, err := sameLog(ctx, tx, infos)
	if err != nil || same {
		return false, err
	}
	for _, t := range []string{"partitions", "instances", "actors", "types"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+t); err != nil {
			return false, err
		}
	}
	for p, info := range infos {
		if _, err := tx.ExecContext(ctx, `INSERT INTO partitions (partition, name, created, seq) VALUES (?, ?, ?, 0)`, p, info.Name, info.Created.UnixNano()); err != nil {
			return false, err
		}
	}
	return true, tx.Commit()
}

// Stats says what a [Index.CatchUp] did.
type Stats struct {
	Messages  int  // messages folded
	Instances int  // instance rows written (an instance written in two batches counts twice)
	Foreign   int  // messages that are not an instance's (another program's subjects), skipped
	Rebuilt   bool // the index was dropped and built again: it was of another log
	// Behind is the log's last sequence, per partition, when the catch-up
	// began: the index covers at least that much when CatchUp returns.
	Behind []uint64
	// Changed lists the instances whose rows were written, the first
	// [MaxChanged] of them; ChangedMore is set when there were more.
	Changed     []string
	ChangedMore bool
	// Newest is the time the log stored the newest commit folded (zero
	// when none was): now minus Newest is how far behind the index was.
	Newest time.Time
}

// MaxChanged bounds [Stats.Changed].
const MaxChanged = 1000

// CatchUp folds into the index every commit of log that it has not folded
// yet, partition by partition, and returns when it has folded at least
// every commit stored when it began. progress, when not nil, is called
// after each committed batch. A log that is not the one the index was
// built from rebuilds the index from the start. An error leaves the index
// at its last committed batch: the next CatchUp goes on from there.
func (ix *Index) CatchUp(ctx context.Context, log Log, progress func(Stats)) (Stats, error) {
	return ix.catchUp(ctx, log, progress, false)
}

// catchUp is CatchUp; throttle: the catalog is looked at no more often
// than catalogEvery (Keep's catch-ups).
func (ix *Index) catchUp(ctx context.Context, log Log, progress func(Stats), throttle bool) (Stats, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var st Stats
	n := log.Partitions()
	infos := make([]events.LogInfo, n)
	for p := range n {
		info, err := log.PartitionInfo(ctx, p)
		if err != nil {
			return st, fmt.Errorf("visibility: catch up: %w", err)
		}
		infos[p] = info
		st.Behind = append(st.Behind, info.LastSeq)
	}
	same, err := sameLog(ctx, ix.db, infos)
	if err != nil {
		return st, fmt.Errorf("visibility: catch up: %w", err)
	}
	if !same {
		if st.Rebuilt, err = ix.rebuildFor(ctx, infos); err != nil {
			return st, fmt.Errorf("visibility: catch up: rebuild: %w", err)
		}
		ix.folds.dropAll() // folds of another log
	}
	if err := ix.catchUpCatalog(ctx, log, throttle); err != nil {
		return st, fmt.Errorf("visibility: catch up: %w", err)
	}
	for p := range n {
		if err := ix.catchUpPartition(ctx, log, p, &st, progress); err != nil {
			return st, fmt.Errorf("visibility: catch up of %s: %w", infos[p].Name, err)
		}
	}
	return st, nil
}

// sameLog reports whether the index is of the log infos describe: the
// same partitions, by name and creation time, none behind the index.
func sameLog(ctx context.Context, q rowsQuerier, infos []events.LogInfo) (bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT partition, name, created, seq FROM partitions ORDER BY partition`)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var p int
		var name string
		var created int64
		var seq uint64
		if err := rows.Scan(&p, &name, &created, &seq); err != nil {
			return false, err
		}
		if p != i || i >= len(infos) || infos[i].Name != name || infos[i].Created.UnixNano() != created || seq > infos[i].LastSeq {
			return false, nil
		}
		i++
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	return i == len(infos), nil
}

// position returns the last sequence of partition p the index folded.
func (ix *Index) position(ctx context.Context, q querier, p int) (uint64, error) {
	var seq uint64
	err := q.QueryRowContext(ctx, `SELECT seq FROM partitions WHERE partition = ?`, p).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("partition %d is not in the index (another process rebuilt it: run again)", p)
	}
	return seq, err
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type rowsQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// catchUpPartition folds partition p's commits after the index's position
// into it, in batches of at most ix.batchMessages messages, each committed
// with the position it reached.
func (ix *Index) catchUpPartition(ctx context.Context, log Log, p int, st *Stats, progress func(Stats)) error {
	for {
		from, err := ix.position(ctx, ix.db, p)
		if err != nil {
			return err
		}
		if from >= st.Behind[p] {
			return nil
		}
		done, err := ix.batch(ctx, log, p, from, st)
		if err != nil {
			return err
		}
		if progress != nil {
			progress(*st)
		}
		if done {
			return nil
		}
	}
}

// batch folds one batch of partition p after from and commits it. It
// reports whether the partition's end (as of the catch-up's start) was
// reached.
func (ix *Index) batch(ctx context.Context, log Log, p int, from uint64, st *Stats) (bool, error) {
	touched := map[string]*audit.Describer{}
	var order []string
	var last uint64
	var newest time.Time
	msgs, foreign := 0, 0
	done := true
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// From the partition's start no instance of it has a row yet: a
	// rebuild looks none up.
	var lookup *sql.Stmt
	if from > 0 {
		lookup = ix.stmts.lookup
	}
	committed := false
	defer func() {
		if !committed {
			// The folds went on past what the index holds.
			for id := range touched {
				ix.folds.drop(id)
			}
		}
	}()
	for m, err := range log.ScanPartition(ctx, p, from) {
		if err != nil {
			return false, err
		}
		last = m.Seq
		msgs++
		if m.Time.After(newest) {
			newest = m.Time
		}
		if m.InstanceErr != nil {
			foreign++
		} else {
			d, ok := touched[m.Instance]
			if !ok {
				if d, err = ix.describer(ctx, log, lookup, m.Instance, from); err != nil {
					return false, err
				}
				touched[m.Instance] = d
				order = append(order, m.Instance)
			}
			if err := d.Fold(one(m.Message)); err != nil {
				return false, fmt.Errorf("fold %q at sequence %d: %w", m.Instance, m.Seq, err)
			}
		}
		if m.Seq >= st.Behind[p] {
			break
		}
		if msgs >= ix.batchMessages {
			done = false
			break
		}
	}
	if msgs == 0 {
		// The scan found nothing up to the partition's end as it was
		// (its last messages gone, or a replica behind the leader): the
		// next catch-up looks again.
		return true, nil
	}
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	now, err := ix.position(ctx, tx, p)
	if err != nil {
		return false, err
	}
	if now != from {
		// Another process committed this range first: start again from
		// where it left the index.
		return false, nil
	}
	w := &writer{upsert: tx.StmtContext(ctx, ix.stmts.upsert), actor: tx.StmtContext(ctx, ix.stmts.actor), typ: tx.StmtContext(ctx, ix.stmts.typ)}
	defer w.close()
	for _, id := range order {
		if err := w.write(ctx, p, touched[id]); err != nil {
			return false, fmt.Errorf("write %q: %w", id, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE partitions SET seq = ? WHERE partition = ?`, last, p); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	committed = true
	for _, id := range order {
		ix.folds.put(id, touched[id])
	}
	st.Messages += msgs
	st.Foreign += foreign
	if newest.After(st.Newest) {
		st.Newest = newest
	}
	st.Instances += len(order)
	for _, id := range order {
		if len(st.Changed) == MaxChanged {
			st.ChangedMore = true
			break
		}
		if !slices.Contains(st.Changed, id) {
			st.Changed = append(st.Changed, id)
		}
	}
	return done, nil
}

// one is an iterator of one message.
func one(m events.Message) iter.Seq2[events.Message, error] {
	return func(yield func(events.Message, error) bool) { yield(m, nil) }
}

// describer returns the fold of instance id as the index holds it
// (every commit up to from): the one kept in memory when it is at the
// instance's row, else a fold of its history from the log up to from
// (with no lookup statement, a partition read from its start, a new
// one).
func (ix *Index) describer(ctx context.Context, log Log, lookup *sql.Stmt, id string, from uint64) (*audit.Describer, error) {
	if lookup == nil {
		return audit.NewDescriber(id), nil
	}
	var last uint64
	err := lookup.QueryRowContext(ctx, id).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return audit.NewDescriber(id), nil
	}
	if err != nil {
		return nil, err
	}
	if d := ix.folds.get(id); d != nil && d.State.LastSeq == last {
		return d, nil
	}
	// Fold the history again, up to what the index holds.
	d := audit.NewDescriber(id)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	upTo := func(yield func(events.Message, error) bool) {
		for m, err := range log.Read(ctx, id, 0) {
			if err == nil && m.Seq > from {
				return
			}
			if !yield(m, err) {
				return
			}
		}
	}
	if err := d.Fold(upTo); err != nil {
		return nil, fmt.Errorf("fold the history of %q again: %w", id, err)
	}
	return d, nil
}

// writer writes rows in a transaction with statements prepared once.
type writer struct {
	upsert, actor, typ *sql.Stmt
}

func (w *writer) close() {
	for _, s := range []*sql.Stmt{w.upsert, w.actor, w.typ} {
		if s != nil {
			s.Close()
		}
	}
}

// write stores d's instance.
func (w *writer) write(ctx context.Context, p int, d *audit.Describer) error {
	in := d.Instance()
	summary, err := json.Marshal(&in)
	if err != nil {
		return err
	}
	c := columnsOf(&in)
	if _, err := w.upsert.ExecContext(ctx, in.ID, p, in.Status, c.wfName, in.WorkflowLabel(), c.definition, in.Updated.UnixNano(), c.created, c.waiting, c.signals, in.Events, in.LastSeq, summary); err != nil {
		return err
	}
	for _, a := range in.Actors {
		if _, err := w.actor.ExecContext(ctx, a, in.ID); err != nil {
			return err
		}
	}
	for _, t := range in.Types {
		if _, err := w.typ.ExecContext(ctx, string(t), in.ID); err != nil {
			return err
		}
	}
	return nil
}

// columns are the indexed columns of an instance that are not its fields
// as they are.
type columns struct {
	wfName, definition string
	created, waiting   sql.NullInt64
	signals            int64
}

func columnsOf(in *audit.Instance) columns {
	var c columns
	if in.Workflow != nil {
		c.wfName = in.Workflow.Name
	}
	if !in.Definition.IsZero() {
		c.definition = in.Definition.String()
	}
	if !in.Created.IsZero() {
		c.created = sql.NullInt64{Int64: in.Created.UnixNano(), Valid: true}
	}
	if in.Exists {
		c.waiting = sql.NullInt64{Int64: int64(in.StatusKind), Valid: true}
	}
	for _, k := range in.Signals {
		c.signals |= 1 << k
	}
	return c
}

// Keep keeps the index caught up with log until ctx is done: it catches
// up at once, then whenever kick delivers (a hint that a commit was
// published: jetstream.Log.NotifyCommits gives one) and at least every
// interval. A hint may come before the log has stored the commit, so a
// catch-up after one that finds nothing looks again after 0.25, 1 and
// 5 ms.
// changed, when not nil, is called after each catch-up that wrote rows;
// failed, when not nil, with each catch-up's error (Keep goes on).
func (ix *Index) Keep(ctx context.Context, log Log, kick <-chan struct{}, every time.Duration, changed func(Stats), failed func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	retry := len(hintRetries) // no hint to retry on
	for {
		s, err := ix.catchUp(ctx, log, nil, true)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if failed != nil {
				failed(err)
			}
		case s.Instances > 0 || s.Rebuilt:
			if changed != nil {
				changed(s)
			}
		case retry < len(hintRetries):
			// A hint came before its commit was stored: look again soon.
			select {
			case <-ctx.Done():
				return
			case <-time.After(hintRetries[retry]):
			}
			retry++
			continue
		}
		retry = len(hintRetries)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
			retry = 0
		}
	}
}

// hintRetries are the pauses before the catch-ups that follow a hint
// whose catch-up found nothing.
var hintRetries = []time.Duration{250 * time.Microsecond, time.Millisecond, 5 * time.Millisecond}

// Position returns, per partition, the last sequence the index folded
// (nil before the first catch-up).
func (ix *Index) Position(ctx context.Context) ([]uint64, error) {
	rows, err := ix.db.QueryContext(ctx, `SELECT seq FROM partitions ORDER BY partition`)
	if err != nil {
		return nil, fmt.Errorf("visibility: position: %w", err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var s uint64
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("visibility: position: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
