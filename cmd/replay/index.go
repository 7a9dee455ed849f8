package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/visibility"
)

// defineIndex defines the visibility index flags of list and count.
func defineIndex(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.indexPath, "index", "", "the visibility index `FILE` (default: DIR/visibility/STREAM.db for --dir, else a file under $XDG_CACHE_HOME/runlog, else ~/.cache/runlog)")
	fs.BoolVar(&o.noIndex, "no-index", false, "fold every history instead of using the visibility index (slower; what the index is tested against)")
}

// indexFile returns the path of the visibility index of the store the
// flags name: beside an embedded store's data, or in the user's cache for
// a server (one file per server URL and stream).
func (e *env) indexFile() (string, error) {
	if e.o.indexPath != "" {
		return e.o.indexPath, nil
	}
	if e.server == "" {
		return filepath.Join(e.dir, "visibility", e.stream+".db"), nil
	}
	dir, err := e.xdgDir("XDG_CACHE_HOME", ".cache")
	if err != nil {
		return "", fmt.Errorf("no cache directory for the visibility index: set --index, $XDG_CACHE_HOME or $HOME (%v)", err)
	}
	sum := sha256.Sum256([]byte(e.server + "\x00" + e.stream))
	return filepath.Join(dir, "runlog", "visibility", e.stream+"-"+hex.EncodeToString(sum[:6])+".db"), nil
}

// openIndex opens the visibility index of st and catches it up with the
// log, showing progress on stderr when that takes over a second. It
// returns nil, and says why on stderr, when the index cannot be used
// (the caller then folds every history): the index is derived data and
// its absence costs time, not answers.
func (e *env) openIndex(ctx context.Context, st *store) *visibility.Index {
	if e.o.noIndex {
		return nil
	}
	path, err := e.indexFile()
	if err != nil {
		fmt.Fprintf(e.stderr, "replay: not using the visibility index: %v\n", err)
		return nil
	}
	ix, err := e.openIndexFile(path)
	if err != nil {
		fmt.Fprintf(e.stderr, "replay: not using the visibility index (%v); folding every history instead (the index is derived data: delete %s and the next list rebuilds it)\n", err, path)
		return nil
	}
	bar := newProgress(e.stderr, "indexing")
	_, err = ix.CatchUp(ctx, st.Log, func(s visibility.Stats) {
		bar.note(fmt.Sprintf("indexing: %d commits folded into %s", s.Messages, path))
	})
	bar.done()
	if err != nil {
		ix.Close()
		if errors.Is(err, context.Canceled) {
			return nil
		}
		fmt.Fprintf(e.stderr, "replay: not using the visibility index (%v); folding every history instead\n", err)
		return nil
	}
	return ix
}

// openIndexFile opens the visibility index at path, with the batch size
// $RUNLOG_INDEX_BATCH sets (messages per committed batch; default
// visibility.DefaultBatch).
func (e *env) openIndexFile(path string) (*visibility.Index, error) {
	ix, err := visibility.Open(path)
	if err != nil {
		return nil, err
	}
	if v := e.getenv("RUNLOG_INDEX_BATCH"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			ix.Close()
			return nil, fmt.Errorf("RUNLOG_INDEX_BATCH=%q: want a positive number of messages", v)
		}
		ix.SetBatch(n)
	}
	return ix, nil
}

// rowFrom is an instance's list row.
func rowFrom(in *audit.Instance) listRow {
	return listRow{Instance: in.ID, Status: in.Status, Workflow: in.WorkflowLabel(), Run: ulidOrEmpty(in.Run), Runs: in.Runs, Commits: in.Commits,
		Events: in.Events, Bytes: in.Bytes, LastSeq: in.LastSeq, Updated: in.Updated, Error: in.Error}
}
