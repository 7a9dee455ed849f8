package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// env is what a subcommand runs with: its writers, the parsed common
// flags, and the store once opened.
type env struct {
	cmd            *command
	stdout, stderr io.Writer
	getenv         func(string) string
	// lent, when set, is the store every command opens (serve's, for the
	// commands its web API runs); the store flags are then ignored.
	lent *jetstream.Log

	// Common flags.
	dir, server                        string
	creds, nkey, user, password, token string
	tlsca, tlscert, tlskey             string
	stream                             string
	natsContext                        string        // --context: a natscli context name
	timeout                            time.Duration // --timeout: connecting and opening
	output                             string
	fakeNow                            string // hidden: a fixed clock for tests (also $RUNLOG_FAKE_NOW)

	set map[string]bool // flags given on the command line
	o   opts            // the subcommand's own flags

	clock   time.Time    // the fixed "now" when fakeNow is set
	ctxFile *natsContext // the natscli context read, if one is named
	parts   int          // the open store's partitions (0 until opened)
}

// Output formats.
const (
	outText   = "text"
	outJSON   = "json"
	outNDJSON = "ndjson"
)

// commonFlags are the flags every subcommand shares, listed apart in help.
var commonFlags = []string{"dir", "server", "context", "creds", "nkey", "user", "password", "token", "tlsca", "tlscert", "tlskey", "stream", "timeout", "output", "o"}

// hiddenFlags are not listed in help.
var hiddenFlags = []string{"now"}

// flags returns a flag set for the subcommand with the common flags.
func (e *env) flags() *flag.FlagSet {
	fs := flag.NewFlagSet(e.cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and help are printed by run
	fs.StringVar(&e.dir, "dir", "", "embedded store `directory` (default $RUNLOG_DIR, else $XDG_DATA_HOME/runlog, else ~/.local/share/runlog)")
	fs.StringVar(&e.server, "server", "", "NATS server `URL`s, comma separated; connect instead of embedding (default $NATS_URL, else the --context's)")
	fs.StringVar(&e.natsContext, "context", "", "use the natscli context `name` (~/.config/nats/context/NAME.json: its server and credentials; default $NATS_CONTEXT)")
	fs.StringVar(&e.creds, "creds", "", "NATS credentials `file` (user JWT and NKey seed; default $NATS_CREDS)")
	fs.StringVar(&e.nkey, "nkey", "", "NKey seed `file` (default $NATS_NKEY)")
	fs.StringVar(&e.user, "user", "", "NATS user `name` (with --password; default $NATS_USER)")
	fs.StringVar(&e.password, "password", "", "NATS `password` (default $NATS_PASSWORD: keep it off the command line)")
	fs.StringVar(&e.token, "token", "", "NATS authentication `token` (default $NATS_TOKEN)")
	fs.StringVar(&e.tlsca, "tlsca", "", "PEM `file` of CAs to verify the server with (default $NATS_CA)")
	fs.StringVar(&e.tlscert, "tlscert", "", "PEM client certificate `file` (with --tlskey; default $NATS_CERT)")
	fs.StringVar(&e.tlskey, "tlskey", "", "PEM client key `file` (with --tlscert; default $NATS_KEY)")
	fs.StringVar(&e.stream, "stream", jetstream.DefaultStream, "JetStream stream `name`")
	fs.DurationVar(&e.timeout, "timeout", 30*time.Second, "how long connecting to the server (--server, $NATS_URL, a context) may take")
	e.output = outText
	if !e.cmd.ownOutput {
		fs.StringVar(&e.output, "output", outText, "output `format`: text, json or ndjson")
		fs.StringVar(&e.output, "o", outText, "output `format` (short for --output)")
	}
	fs.StringVar(&e.fakeNow, "now", "", "")
	if e.cmd.define != nil {
		e.cmd.define(fs, &e.o)
	}
	return fs
}

// parse parses args with fs, allowing flags after positional arguments
// ("show ID --detailed"); "--" ends the flags. It returns the positional
// arguments. --help prints the command's help to stdout.
func (e *env) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	args = joinedShortFlags(fs, args)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(e.stdout, help(e.cmd))
				return nil, errHelp
			}
			return nil, &usageError{msg: err.Error()}
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	e.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { e.set[f.Name] = true })
	switch e.output {
	case outText, outJSON, outNDJSON:
	default:
		return nil, usagef("unknown output format %q: use text, json or ndjson", e.output)
	}
	if e.fakeNow == "" {
		e.fakeNow = e.getenv("RUNLOG_FAKE_NOW")
	}
	if e.fakeNow != "" {
		t, err := time.Parse(time.RFC3339Nano, e.fakeNow)
		if err != nil {
			return nil, usagef("--now / $RUNLOG_FAKE_NOW %q: want an RFC 3339 time", e.fakeNow)
		}
		e.clock = t.UTC()
	}
	return pos, nil
}

// now is the current time, or the fixed clock of --now.
func (e *env) now() time.Time {
	if !e.clock.IsZero() {
		return e.clock
	}
	return time.Now().UTC()
}

// help returns a subcommand's help text.
func help(c *command) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: replay %s %s\n\n%s.\n", c.name, c.args, capitalize(c.summary))
	e := &env{cmd: c, getenv: func(string) string { return "" }}
	fs := e.flags()
	if own := flagDefaults(fs, func(name string) bool {
		return !slices.Contains(commonFlags, name) && !slices.Contains(hiddenFlags, name)
	}); own != "" {
		b.WriteString("\nFlags:\n")
		b.WriteString(own)
	}
	b.WriteString("\nStore and output flags (every command):\n")
	b.WriteString(flagDefaults(fs, func(name string) bool { return slices.Contains(commonFlags, name) && name != "o" }))
	fmt.Fprintf(&b, "\nExamples:\n  %s\n", c.example)
	b.WriteString(`
Times are RFC 3339 ("2026-01-02T15:04:05Z"), a date ("2026-01-02", UTC), or
a duration ago ("15m", "2h30m", "3d").
Exit codes: 0 ok; 1 the data says no (not found, problems, refused);
2 usage error or the store could not be opened.
`)
	return b.String()
}

// flagDefaults lists the flags of fs that keep accepts, like
// flag.PrintDefaults but with double dashes.
func flagDefaults(fs *flag.FlagSet, keep func(string) bool) string {
	var fl []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if keep(f.Name) {
			fl = append(fl, f)
		}
	})
	sort.Slice(fl, func(i, j int) bool { return fl[i].Name < fl[j].Name })
	var b strings.Builder
	for _, f := range fl {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  --%s", f.Name)
		if f.Name == "output" || f.Name == "out" {
			b.WriteString(", -o")
		}
		if name != "" {
			fmt.Fprintf(&b, " %s", name)
		}
		fmt.Fprintf(&b, "\n      %s", usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// defaultDir is the embedded store directory used without --dir.
func (e *env) defaultDir() (string, error) {
	if d := e.getenv("RUNLOG_DIR"); d != "" {
		return d, nil
	}
	d, err := e.xdgDir("XDG_DATA_HOME", ".local/share")
	if err != nil {
		return "", fmt.Errorf("no store directory: set --dir, $RUNLOG_DIR or $XDG_DATA_HOME (%v)", err)
	}
	return filepath.Join(d, "runlog"), nil
}

// xdgDir is the XDG base directory the variable names, else fallback
// under the home directory ($HOME, else the system's idea of it).
func (e *env) xdgDir(variable, fallback string) (string, error) {
	if d := e.getenv(variable); d != "" {
		return d, nil
	}
	home := e.getenv("HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		home = h
	}
	return filepath.Join(home, filepath.FromSlash(fallback)), nil
}

// source describes where the store is, for messages.
func (e *env) source() string {
	what := "stream " + e.stream
	if e.parts > 1 {
		what = fmt.Sprintf("store %s (%d partitions, streams %s … %s)", e.stream, e.parts,
			jetstream.PartitionStream(e.stream, 0, e.parts), jetstream.PartitionStream(e.stream, e.parts-1, e.parts))
	}
	if e.server != "" {
		return what + " on " + e.server
	}
	return what + " in " + e.dir
}

// store is an open store and how to release it.
type store struct {
	*jetstream.Log
	borrowed bool // serve's store, lent to a command its API runs: close leaves it open

	catalog projection.Catalog // the definition catalog's names, once looked for (names)
}

// names returns the store's definition catalog (jetstream.Log.Catalog)
// as the names of the histories that name none: show, state, diff and
// list set it as projection.State.Catalog. A store without a catalog
// (no definition was ever registered in it) names nothing.
func (s *store) names(ctx context.Context) projection.Catalog {
	if s.catalog == nil {
		s.catalog = func(workflow.DefinitionHash) (*workflow.Definition, bool) { return nil, false }
		if cat, err := s.Log.Catalog(ctx); err == nil {
			s.catalog = lifecycle.CatalogNames(ctx, cat)
		}
	}
	return s.catalog
}

func (s *store) close() {
	if !s.borrowed {
		_ = s.Log.Close()
	}
}

// notFoundError is an instance with no history.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// notFound is the error of a command asked about an instance that has no
// history.
func (e *env) notFound(id string) error {
	return &notFoundError{fmt.Sprintf("instance %q not found in %s: it has no history (see 'replay list')", id, e.source())}
}

// open opens the store the flags name. A read-only open (write false)
// never creates a store or a stream: on an embedded directory it checks
// that the stream exists before starting the server.
func (e *env) open(ctx context.Context, write bool) (*store, error) {
	if e.lent != nil {
		e.parts = e.lent.Partitions()
		return &store{Log: e.lent, borrowed: true}, nil
	}
	if e.set["dir"] && e.set["server"] {
		return nil, usagef("--dir and --server are exclusive: --dir opens an embedded store, --server connects to one")
	}
	if e.timeout <= 0 {
		return nil, usagef("--timeout %v: want a positive duration", e.timeout)
	}
	nctx, err := e.loadContext()
	if err != nil {
		return nil, &openError{err}
	}
	if !e.set["server"] && !e.set["dir"] {
		e.server = e.getenv("NATS_URL")
		if e.server == "" && nctx != nil {
			e.server = nctx.URL
		}
	}
	if e.server != "" {
		return e.connect(ctx, write)
	}
	if e.dir == "" {
		d, err := e.defaultDir()
		if err != nil {
			return nil, &openError{err}
		}
		e.dir = d
	}
	for _, f := range []string{"context", "creds", "nkey", "user", "password", "token", "tlsca", "tlscert", "tlskey", "timeout"} {
		if e.set[f] {
			return nil, usagef("--%s applies to --server connections, not to an embedded store (--dir %s)", f, e.dir)
		}
	}
	return e.embed(ctx, write)
}

func (e *env) embed(ctx context.Context, write bool) (*store, error) {
	dir := e.dir
	if !write {
		if err := checkEmbedded(dir, e.stream); err != nil {
			return nil, &openError{err}
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &openError{fmt.Errorf("create store directory: %w", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler) // damage is reported below
	st, err := jetstream.OpenEmbedded(ctx, jetstream.EmbeddedConfig{Dir: dir, Logger: quiet}, jetstream.Config{Stream: e.stream, ReadOnly: !write, Partitions: e.o.partitions})
	if errors.Is(err, jetstream.ErrDirInUse) {
		// The embedded server's own lock (or a server another process
		// runs on the directory) refused it.
		return nil, &openError{fmt.Errorf("the store in %s is in use by another process (an embedded store has one user at a time): "+
			"wait for it to finish; to share a store, run one server on it and connect every user to that server with --server "+
			"(never start a second server on a directory in use: two servers on one directory lose writes): %w", dir, err)}
	}
	if err != nil {
		return nil, &openError{fmt.Errorf("open embedded store in %s: %w", dir, err)}
	}
	if d, err := st.Damage(ctx); err == nil && len(d) > 0 {
		fmt.Fprintf(e.stderr, "replay: WARNING: the store in %s was damaged: the NATS server recovered it without some messages:\n", dir)
		for _, line := range d {
			fmt.Fprintf(e.stderr, "  - %s\n", line)
		}
		fmt.Fprintf(e.stderr, "  Histories may be cut short or missing: 'replay verify --digest FILE' against a digest taken before tells which.\n")
	}
	e.parts = st.Partitions()
	return &store{Log: st}, nil
}

// definePartitions defines --partitions, for the commands that may
// create a store.
func definePartitions(fs *flag.FlagSet, o *opts) {
	fs.Func("partitions", fmt.Sprintf("create a new store with `K` partitions (streams STREAM_P0 … STREAM_P<K-1>), 1 to %d; an existing store must have K (default: the store's own, 1 for a new one)", jetstream.MaxPartitions), func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > jetstream.MaxPartitions {
			return fmt.Errorf("want a whole number from 1 to %d", jetstream.MaxPartitions)
		}
		o.partitions = n
		return nil
	})
}

// storeArgs returns the store flags given on the command line (" --dir D",
// " --server URL", " --stream S", " --context C"), quoted for a shell,
// for hints that name further commands on the same store. Credentials are
// left out.
func (e *env) storeArgs() string {
	var b strings.Builder
	for _, f := range []struct{ name, value string }{{"dir", e.dir}, {"server", e.server}, {"context", e.natsContext}, {"stream", e.stream}} {
		if e.set[f.name] {
			b.WriteString(" --" + f.name + " " + shellQuote(f.value))
		}
	}
	return b.String()
}

// natsContext is what replay reads of a natscli context file.
type natsContext struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
	Creds    string `json:"creds"`
	NKey     string `json:"nkey"`
	Token    string `json:"token"`
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	CA       string `json:"ca"`
}

// loadContext reads the natscli context --context (or $NATS_CONTEXT)
// names, if any: $XDG_CONFIG_HOME/nats/context/NAME.json, else
// ~/.config/nats/context/NAME.json. A context never applies unless named:
// replay's default store is the embedded one.
func (e *env) loadContext() (*natsContext, error) {
	name := e.natsContext
	if name == "" {
		name = e.getenv("NATS_CONTEXT")
	}
	if name == "" {
		return nil, nil
	}
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("natscli context %q: a context is named, not a path", name)
	}
	dir := e.getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := e.getenv("HOME")
		if home == "" {
			return nil, fmt.Errorf("natscli context %q: neither $XDG_CONFIG_HOME nor $HOME is set", name)
		}
		dir = filepath.Join(home, ".config")
	}
	path := filepath.Join(dir, "nats", "context", name+".json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("natscli context %q: %w (list them with 'nats context ls')", name, err)
	}
	var c natsContext
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("natscli context %q: %s is not a context file: %w", name, path, err)
	}
	e.ctxFile = &c
	return &c, nil
}

// credentials are the connection's: each from its flag, else its NATS_*
// environment variable (as natscli reads them), else the context.
func (e *env) credentials() (jetstream.ConnectConfig, error) {
	c := e.ctxFile
	if c == nil {
		c = &natsContext{}
	}
	pick := func(flagName, flagValue, envName, fromContext string) string {
		if e.set[flagName] {
			return flagValue
		}
		if v := e.getenv(envName); v != "" {
			return v
		}
		return fromContext
	}
	cc := jetstream.ConnectConfig{Name: "runlog-replay",
		CredsFile: pick("creds", e.creds, "NATS_CREDS", c.Creds),
		NKeyFile:  pick("nkey", e.nkey, "NATS_NKEY", c.NKey),
		User:      pick("user", e.user, "NATS_USER", c.User),
		Password:  pick("password", e.password, "NATS_PASSWORD", c.Password),
		Token:     pick("token", e.token, "NATS_TOKEN", c.Token),
		TLSCA:     pick("tlsca", e.tlsca, "NATS_CA", c.CA),
		TLSCert:   pick("tlscert", e.tlscert, "NATS_CERT", c.Cert),
		TLSKey:    pick("tlskey", e.tlskey, "NATS_KEY", c.Key),
	}
	return cc, nil
}

// joinedShortFlags splits "-ojson" into "-o" "json", as natscli and most
// CLIs accept it; a word that names a flag of its own ("-out") is left
// alone, and so is everything after "--".
func joinedShortFlags(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args)+1)
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if strings.HasPrefix(a, "-o") && !strings.HasPrefix(a, "--") && len(a) > 2 && !strings.Contains(a, "=") {
			if fs.Lookup(strings.TrimPrefix(a, "-")) == nil {
				out = append(out, "-o", a[2:])
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// checkEmbedded refuses to open a directory that holds no store or not
// the stream, so that a read never creates one
// (jetstream.EmbeddedStreams reads what the directory holds).
func checkEmbedded(dir, stream string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("no runlog store at %s: seed one with 'replay demo', import one with 'replay import --file F', or point at one with --dir or --server", dir)
	case err != nil:
		return fmt.Errorf("store directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory: pass the store directory with --dir", dir)
	}
	names, err := jetstream.EmbeddedStreams(dir)
	if err != nil {
		return fmt.Errorf("no runlog store at %s (no JetStream data there): seed one with 'replay demo', or pass the right --dir", dir)
	}
	if slices.Contains(names, stream) || slices.Contains(names, jetstream.PartitionStream(stream, 0, 2)) {
		return nil // a one-stream store, or partition 0 of a partitioned one
	}
	if len(names) == 0 {
		return fmt.Errorf("no runlog store at %s (no stream there): seed one with 'replay demo', or pass the right --dir", dir)
	}
	return fmt.Errorf("the store at %s has no stream %s (it has: %s): pass the stream with --stream", dir, stream, strings.Join(names, ", "))
}

func (e *env) connect(ctx context.Context, write bool) (*store, error) {
	if e.set["dir"] {
		return nil, usagef("--dir and --server are exclusive")
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	cc, err := e.credentials()
	if err != nil {
		return nil, &openError{err}
	}
	// A read never creates the stream (ReadOnly): a missing one is an
	// error, and one that could lose history is opened and reported by
	// verify.
	st, err := jetstream.Connect(ctx, e.server, cc, jetstream.Config{Stream: e.stream, ReadOnly: !write, Partitions: e.o.partitions})
	if err != nil {
		if errors.Is(err, jetstream.ErrInvalidConfig) {
			return nil, &openError{fmt.Errorf("%w (check --creds, --nkey, --user/--password, --token and --tls* flags)", err)}
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, &openError{fmt.Errorf("the server has no stream %s: pass the right --stream, or create it by writing (replay demo, replay import): reads never create the stream", e.stream)}
		}
		return nil, &openError{fmt.Errorf("%w: check --server (default $NATS_URL), the credentials and the network", err)}
	}
	e.parts = st.Partitions()
	return &store{Log: st}, nil
}
