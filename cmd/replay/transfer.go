package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/nats-io/nats.go"
	"io"
	"os"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/internal/atomicfile"
	"github.com/runlog/runlog/internal/render"
)

func defineExport(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.file, "file", "", "write to `F` (created atomically: complete or not at all) instead of stdout")
}

func defineImport(fs *flag.FlagSet, o *opts) {
	definePartitions(fs, o)
	fs.StringVar(&o.file, "file", "", "the export to import: a `file`, or - for stdin (required)")
}

func runExport(ctx context.Context, e *env, args []string) error {
	if err := validIDs(args); err != nil {
		return err
	}
	if (e.set["output"] || e.set["o"]) && e.output != outNDJSON {
		return usagef("export always writes NDJSON (the export format): drop -o %s", e.output)
	}
	st, err := e.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.close()

	var stats audit.ExportStats
	var exportErr error
	export := func(w io.Writer) error {
		bar := newProgress(e.stderr, "exporting")
		defer bar.done()
		stats, exportErr = audit.Export(ctx, st.Log, w, audit.ExportOptions{IDs: args, Now: e.now, Progress: bar.update})
		if exportErr != nil {
			exportErr = fmt.Errorf("export: %w (after %d instances, %d messages)", exportErr, stats.Instances, stats.Messages)
		}
		return exportErr
	}
	dest := "stdout"
	if e.o.file != "" && e.o.file != "-" {
		// Complete or not at all; histories are readable by their owner only.
		if err := atomicfile.Write(e.o.file, 0o600, export); err != nil {
			if exportErr != nil {
				return exportErr
			}
			return fmt.Errorf("write the export file: %w", err)
		}
		dest = e.o.file
	} else if err := export(e.stdout); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "exported %d instance%s, %d messages (%s) to %s\n", stats.Instances, render.S(stats.Instances), stats.Messages, humanBytes(int64(stats.Bytes)), dest)
	if len(args) > stats.Instances {
		return fmt.Errorf("%d of the %d instances asked for have no history (nothing exported for them; see 'replay list')", len(args)-stats.Instances, len(args))
	}
	return nil
}

// importView is import's JSON output.
type importView struct {
	OK       bool              `json:"ok"`
	Stats    audit.ImportStats `json:"stats"`
	Problems []audit.Problem   `json:"problems,omitempty"`
	Total    int               `json:"total_problems,omitempty"`
}

func runImport(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("import takes no arguments, got %q: give the file with --file", args[0])
	}
	if e.o.file == "" {
		return usagef("--file is required: the export to import, or - for stdin")
	}
	var in io.Reader = os.Stdin
	name := "stdin"
	if e.o.file != "-" {
		f, err := os.Open(e.o.file)
		if err != nil {
			return fmt.Errorf("open the export: %w", err)
		}
		defer f.Close()
		in, name = f, e.o.file
	}
	st, err := e.open(ctx, true)
	if err != nil {
		return err
	}
	defer st.close()

	bar := newProgress(e.stderr, "importing")
	stats, err := audit.Import(ctx, in, st.Log, audit.ImportOptions{Progress: bar.update})
	bar.done()
	v := importView{OK: err == nil, Stats: stats}
	var refused error
	if ue, ok := errors.AsType[*audit.UnverifiedError](err); ok {
		v.Problems, v.Total = ue.Problems, ue.Total
		kept := ""
		// A store this import created only to refuse the file is not left
		// behind.
		if dropped, derr := st.Log.DropIfNew(ctx); derr != nil {
			kept = fmt.Sprintf("; the new, empty stream could not be removed: %v", derr)
		} else if dropped {
			kept = "; the new, empty stream it had created was removed"
		}
		refused = &problemsError{msg: fmt.Sprintf("import refused, nothing written: %s does not verify (%d problem%s; 'replay verify' on the source store tells more)%s", name, ue.Total, render.S(ue.Total), kept)}
	} else if ce, ok := errors.AsType[*audit.ConflictError](err); ok {
		v.Problems, v.Total = ce.Problems, ce.Total
		refused = &problemsError{msg: fmt.Sprintf("import refused, nothing written: %s already holds another history for %d instance%s of %s (import into an empty store, or another --stream)", e.source(), ce.Total, render.S(ce.Total), name)}
	} else if errors.Is(err, nats.ErrPermissionViolation) {
		return fmt.Errorf("import %s into %s: the server refused a publish as a permissions violation: the user may not write to the stream (import publishes on its subjects: docs/REPLAY.md, 'Connecting to a store'); %d message(s) were appended before: %w", name, e.source(), stats.Appended, err)
	} else if err != nil {
		return fmt.Errorf("import %s into %s: %w (after appending %d messages; running the same import again completes it)", name, e.source(), err, stats.Appended)
	}
	switch e.output {
	case outJSON:
		if err := writeJSON(e.stdout, v); err != nil {
			return err
		}
	case outNDJSON:
		if refused != nil {
			for _, p := range v.Problems {
				if err := writeNDJSON(e.stdout, p); err != nil {
					return err
				}
			}
		} else if err := writeNDJSON(e.stdout, v); err != nil {
			return err
		}
	default:
		for _, p := range v.Problems {
			fmt.Fprintln(e.stdout, p.String())
		}
		if refused != nil && v.Total > len(v.Problems) {
			fmt.Fprintf(e.stdout, "... and %d more\n", v.Total-len(v.Problems))
		}
		if refused == nil {
			fmt.Fprintf(e.stdout, "imported %s into %s: %d instance%s, %d messages: %d appended, %d already present (%d instance%s unchanged)\n",
				name, e.source(), stats.Instances, render.S(stats.Instances), stats.Messages, stats.Appended, stats.Present, stats.Unchanged, render.S(stats.Unchanged))
		}
	}
	return refused
}
