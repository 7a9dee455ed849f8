package visibility

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// catalogLog is a log that brings its definition catalog
// (jetstream.Log, memlog.Log): the index names the instances whose
// histories name nothing by what the catalog holds.
type catalogLog interface {
	Catalog(ctx context.Context) (lifecycle.Log, error)
}

// catalogRetry is how long the index waits before it looks again for a
// catalog that was not there (a store no one registered a definition in).
const catalogRetry = time.Second

// catalogEvery is how often at most [Index.Keep]'s catch-ups look at the
// catalog (a stream info): they come at every commit while replay serve
// runs, and definitions are registered rarely. [Index.CatchUp] always
// looks.
const catalogEvery = 250 * time.Millisecond

// catchUpCatalog copies the definitions of log's catalog that the index
// does not hold yet into its definitions table. Rows are never rewritten
// for them: a search resolves the names of an instance whose history
// names none at read time, so a definition registered after its
// instances were indexed names them at once. A log without a catalog, or
// whose catalog cannot be opened, leaves the table as it is (the names
// are for people; the catalog is looked for again after catalogRetry).
func (ix *Index) catchUpCatalog(ctx context.Context, log Log, throttle bool) error {
	c, ok := log.(catalogLog)
	if !ok || time.Since(ix.catalogMissed) < catalogRetry || throttle && time.Since(ix.catalogChecked) < catalogEvery {
		return nil
	}
	ix.catalogChecked = time.Now()
	lc, err := c.Catalog(ctx)
	cat, ok := lc.(Log)
	if err != nil || !ok {
		ix.catalogMissed = time.Now()
		return nil
	}
	info, err := cat.PartitionInfo(ctx, 0)
	if err != nil {
		return fmt.Errorf("definition catalog: %w", err)
	}
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var ident string
	var seq uint64
	_ = tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'catalog'`).Scan(&ident)
	_ = tx.QueryRowContext(ctx, `SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'catalog_seq'`).Scan(&seq)
	want := fmt.Sprintf("%s %d", info.Name, info.Created.UnixNano())
	if ident != want || seq > info.LastSeq {
		// Another catalog (or none before): start over.
		if _, err := tx.ExecContext(ctx, `DELETE FROM definitions`); err != nil {
			return err
		}
		seq = 0
	}
	if seq >= info.LastSeq && ident == want {
		return nil
	}
	ins, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO definitions (hash, name, label, def) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for m, err := range cat.ScanPartition(sctx, 0, seq) {
		if err != nil {
			return fmt.Errorf("definition catalog: %w", err)
		}
		seq = m.Seq
		if m.InstanceErr == nil {
			// Each catalog history holds one commit: its first, folded
			// on its own (a second one does not chain to nothing, and is
			// refused with the rest of what does not fold).
			st := projection.New(m.Instance)
			if _, err := st.ApplyMessage(m.Message); err == nil {
				for h, d := range st.Definitions {
					b, err := json.Marshal(d)
					if err != nil {
						return err
					}
					in := audit.Instance{Workflow: d}
					if _, err := ins.ExecContext(ctx, h.String(), d.Name, in.WorkflowLabel(), b); err != nil {
						return err
					}
				}
			}
		}
		if seq >= info.LastSeq {
			break
		}
	}
	for k, v := range map[string]string{"catalog": want, "catalog_seq": fmt.Sprint(seq)} {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, k, v); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// definitions returns the definitions the index holds for the hashes.
func (ix *Index) definitions(ctx context.Context, hashes map[workflow.DefinitionHash]bool) (map[workflow.DefinitionHash]*workflow.Definition, error) {
	out := make(map[workflow.DefinitionHash]*workflow.Definition, len(hashes))
	for h := range hashes {
		var b []byte
		err := ix.db.QueryRowContext(ctx, `SELECT def FROM definitions WHERE hash = ?`, h.String()).Scan(&b)
		if err == sql.ErrNoRows {
			continue
		}
		if err != nil {
			return nil, err
		}
		var d workflow.Definition
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("a definition's row does not decode (delete the index to rebuild it): %w", err)
		}
		out[h] = &d
	}
	return out, nil
}

// name gives the instances whose histories name no workflow the names
// the catalog holds for their definitions.
func (ix *Index) name(ctx context.Context, ins []audit.Instance) error {
	need := map[workflow.DefinitionHash]bool{}
	for i := range ins {
		if ins[i].Workflow == nil && !ins[i].Definition.IsZero() {
			need[ins[i].Definition] = true
		}
	}
	if len(need) == 0 {
		return nil
	}
	defs, err := ix.definitions(ctx, need)
	if err != nil {
		return err
	}
	for i := range ins {
		if d, ok := defs[ins[i].Definition]; ok && ins[i].Workflow == nil {
			ins[i].Workflow = d
		}
	}
	return nil
}

// Names returns the index's copy of the definition catalog as a
// projection.Catalog (for an audit.Describer, say). A definition it
// cannot read is unknown.
func (ix *Index) Names(ctx context.Context) projection.Catalog {
	return func(h workflow.DefinitionHash) (*workflow.Definition, bool) {
		defs, err := ix.definitions(ctx, map[workflow.DefinitionHash]bool{h: true})
		d, ok := defs[h]
		return d, ok && err == nil
	}
}
