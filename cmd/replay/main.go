// Command replay reads runlog's event log: it lists workflow instances,
// shows an instance's history as a timeline, folds the state at any point,
// diffs two points, follows new events live, verifies that the history is
// intact (against signed digests too), and exports or imports histories.
// It is read-only except for demo and import.
//
//	replay demo                       seed the default store with example lifecycles
//	replay list                       instances with status, run, events, last change
//	replay show ID [--follow]         one instance's history as a timeline
//	replay state ID [--at-seq N]      the projected state, now or at a point
//	replay diff ID --from X --to Y    what changed between two points
//	replay verify [ID...]             hash chain, decoding and projection checks
//	replay export [ID...]             NDJSON export
//	replay import --file F            import an export (verified first)
//	replay stats                      counts by event type and status
//	replay serve                      one server for many users, the visibility index, the web UI
//	replay reindex                    rebuild the runnable-task index from the log
//	replay key new FILE               a signing key for digests
//	replay digest --key F -o D        a signed digest of the whole log
//	replay verify --digest D --key P  the log still holds what digests committed to
//	replay prove ID --digest D        an inclusion proof of one instance
//	replay verify-proof PROOF         check a proof offline
//
// Every subcommand works on an embedded store in a local directory
// (--dir, default $RUNLOG_DIR, else $XDG_DATA_HOME/runlog, else
// ~/.local/share/runlog) or on a NATS server (--server, default
// $NATS_URL). docs/REPLAY.md walks through it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK       = 0 // success
	exitFailed   = 1 // the command failed on the data: instance not found, a history that does not fold, a refused import
	exitProblems = 1 // verify found problems (the same code as exitFailed, named for what it means)
	exitUsage    = 2 // a usage error, or the store could not be opened (connection, credentials, missing store)
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand.
type command struct {
	name    string
	args    string // the positional arguments, for the usage line
	summary string
	example string
	define  func(fs *flag.FlagSet, o *opts)                        // the command's own flags
	run     func(ctx context.Context, e *env, args []string) error // args: the positional arguments
	// ownOutput: the command defines -o itself (digest: the file to
	// write) and has no --output format.
	ownOutput bool
}

// commands is the subcommand table, in the order help lists them.
var commands []*command

func init() {
	commands = []*command{
		{name: "demo", args: "[--seed N]", summary: "seed the store with example workflow lifecycles (writes)",
			example: "replay demo\n  replay demo --dir /tmp/runlog-demo --seed 1", define: defineDemo, run: runDemo},
		{name: "list", args: "[--status S] [--since T] [--until T] [--workflow NAME] [--actor A] [--signal K] [--waiting K] [--event-type T] [--created-since T] [--definition HEX] [--sort id|updated|events] [--limit N] [--after CURSOR]",
			summary: "list instances with status, run, number of events and last change",
			example: "replay list --status completed --since 24h\n  replay list --limit 50 --after order-42 -o ndjson", define: defineList, run: runList},
		{name: "count", args: "[--status S] [--workflow NAME] [--actor A] [--signal K] [--waiting K] [--event-type T] [--since T] ...",
			summary: "count instances by status and workflow, with list's filters",
			example: "replay count\n  replay count --since 1h --status failed\n  replay count --actor alice@support -o json", define: defineCount, run: runCount},
		{name: "show", args: "ID [--type T,...] [--since T] [--until T] [--reverse] [--detailed] [--follow]",
			summary: "show an instance's history as a timeline",
			example: "replay show order-42\n  replay show order-42 --type signal.stored,workflow.cancelled --detailed\n  replay show order-42 --follow", define: defineShow, run: runShow},
		{name: "state", args: "ID [--at-seq N | --at TIME]", summary: "the projected state of an instance, now or as of a point",
			example: "replay state order-42\n  replay state order-42 --at-seq 17 -o json\n  replay state order-42 --at 2h", define: defineState, run: runState},
		{name: "diff", args: "ID --from SEQ|TIME [--to SEQ|TIME]", summary: "what changed in an instance's state between two points",
			example: "replay diff order-42 --from 12 --to 20\n  replay diff order-42 --from 1h", define: defineDiff, run: runDiff},
		{name: "verify", args: "[ID...] [--max-problems N]", summary: "verify histories: decoding, hash chains, runs, projection invariants",
			example: "replay verify\n  replay verify order-42 order-43 -o json", define: defineVerify, run: runVerify},
		{name: "export", args: "[ID...] [--file F]", summary: "export histories as NDJSON (all instances when no ID is given)",
			example: "replay export > runlog.ndjson\n  replay export order-42 --file order-42.ndjson", define: defineExport, run: runExport},
		{name: "import", args: "--file F|-", summary: "import an export into the store, verified first (writes)",
			example: "replay import --file runlog.ndjson --dir /tmp/copy", define: defineImport, run: runImport},
		{name: "stats", args: "", summary: "counts by event type and by status, bytes, oldest and newest commit",
			example: "replay stats\n  replay stats -o json", run: runStats},
		{name: "feed", args: "--cloudevents --to SUBJECT [--mode binary|structured] [--name N] [--from new|TIME] [--to-server URL]",
			summary: "publish every event as a CloudEvent on a NATS subject, resuming after a restart (a long-lived bridge)",
			example: "replay feed --cloudevents --to events.runlog\n  replay feed --cloudevents --to events.runlog --mode structured --from new",
			define:  defineFeed, run: runFeed},
		{name: "serve", args: "[--http 127.0.0.1:8233] [--nats 127.0.0.1:4222]",
			summary: "serve the store to many programs at once, keep the visibility index, and serve the web timeline UI (runs until Ctrl-C)",
			example: "replay serve\n  replay serve --dir /tmp/runlog-demo --http 127.0.0.1:0 --nats 127.0.0.1:0", define: defineServe, run: runServe},
		{name: "reindex", args: "", summary: "rebuild the index of runnable tasks (dispatch) from the log (writes the index, not the log)",
			example: "replay reindex", run: runReindex},
		{name: "version", args: "", summary: "the version of replay, of Go and of the NATS server and client it is built with",
			example: "replay version\n  replay --version", run: runVersion},
		{name: "key", args: "new FILE", summary: "make a signing key for digests: the seed goes to FILE (mode 0600), the public key to stdout",
			example: "replay key new ~/.runlog/digest.nk", run: runKey},
		{name: "digest", args: "[--key FILE] [-o DIGEST]", summary: "write a signed digest of the whole log: every instance's head, a Merkle root, the stream's bounds",
			example: "replay digest --key ~/.runlog/digest.nk -o digest-$(date +%F).json\n  RUNLOG_DIGEST_KEY=key.nk replay digest > digest.json",
			define:  defineDigest, run: runDigest, ownOutput: true},
		{name: "prove", args: "ID --digest FILE [--key PUB]", summary: "print the inclusion proof of one instance in a digest (its leaf and Merkle path)",
			example: "replay prove order-42 --digest digest.json --key OD4C... > order-42.proof.json", define: defineProve, run: runProve},
		{name: "verify-proof", args: "PROOF [--key PUB]", summary: "check an inclusion proof offline: the leaf, its path to the root, the digest's signature",
			example: "replay verify-proof order-42.proof.json --key OD4C...", define: defineVerifyProof, run: runVerifyProof},
	}
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run is the whole program: it parses args, runs a subcommand, writes
// data to stdout and diagnostics to stderr, and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, stdout, stderr, os.Getenv)
}

// runWith is run with the environment read through getenv.
func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, overview())
		return exitUsage
	}
	name := args[0]
	switch name {
	case "--version", "-version":
		args = append([]string{"version"}, args[1:]...)
		name = "version"
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c := lookup(args[1]); c != nil {
				fmt.Fprint(stdout, help(c))
				return exitOK
			}
			fmt.Fprintf(stderr, "replay: unknown command %q\n\n%s", args[1], overview())
			return exitUsage
		}
		fmt.Fprint(stdout, overview())
		return exitOK
	}
	c := lookup(name)
	if c == nil {
		hint := ""
		if strings.HasPrefix(name, "-") {
			hint = " (flags go after the command: replay COMMAND [flags])"
		}
		fmt.Fprintf(stderr, "replay: unknown command %q%s\n\n%s", name, hint, overview())
		return exitUsage
	}
	e := &env{cmd: c, stdout: stdout, stderr: stderr, getenv: getenv}
	pos, err := e.parse(e.flags(), args[1:])
	if err == nil {
		err = c.run(ctx, e, pos)
	}
	return e.exit(err)
}

// exit prints err, if any, and maps it onto an exit code.
func (e *env) exit(err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if ue, ok := errors.AsType[*usageError](err); ok {
		fmt.Fprintf(e.stderr, "replay %s: %s\nusage: replay %s %s\nRun 'replay %s --help' for flags and examples.\n",
			e.cmd.name, ue.msg, e.cmd.name, e.cmd.args, e.cmd.name)
		return exitUsage
	}
	if pe, ok := errors.AsType[*problemsError](err); ok {
		fmt.Fprintf(e.stderr, "replay %s: %s\n", e.cmd.name, pe.Error())
		return exitProblems
	}
	fmt.Fprintf(e.stderr, "replay %s: %v\n", e.cmd.name, err)
	if _, ok := errors.AsType[*openError](err); ok {
		return exitUsage
	}
	return exitFailed
}

// errHelp reports that --help was asked for and printed.
var errHelp = errors.New("help printed")

// usageError is a mistake on the command line: exit 2 with a usage hint.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// openError is a failure to open the store: exit 2.
type openError struct{ err error }

func (e *openError) Error() string { return e.err.Error() }
func (e *openError) Unwrap() error { return e.err }

// problemsError reports that verify (or import) found problems: exit 1.
type problemsError struct{ msg string }

func (e *problemsError) Error() string { return e.msg }

func overview() string {
	var b strings.Builder
	b.WriteString(`replay reads runlog's event log: the history of every workflow instance.

usage: replay COMMAND [flags] [args]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-12s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Every command takes the store flags (--dir, or --server with credentials,
and --stream) and --output/-o text|json|ndjson. Run 'replay COMMAND --help'
for a command's flags and examples; docs/REPLAY.md walks through them.

Store: --dir DIR (an embedded NATS server on a local directory; default
$RUNLOG_DIR, else $XDG_DATA_HOME/runlog, else ~/.local/share/runlog), or
--server URL (default $NATS_URL). Only demo and import write.

Exit codes: 0 ok; 1 the data says no (instance not found, verify found
problems, import refused); 2 usage error or the store could not be opened.
`)
	return b.String()
}
