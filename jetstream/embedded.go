package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultStartTimeout bounds how long [StartEmbedded] waits for the server
// to be ready when ctx has no deadline. Recovering a large store after an
// unclean stop can take a while.
const DefaultStartTimeout = time.Minute

// EmbeddedConfig configures a NATS server run inside this process by
// [StartEmbedded] and [OpenEmbedded].
type EmbeddedConfig struct {
	// Dir is the store directory (the server keeps JetStream data in
	// Dir/jetstream). Required. Each server needs its own directory.
	Dir string
	// SyncInterval says when the server fsyncs stored messages. 0, the
	// default, fsyncs before every acknowledgement (the server's
	// SyncAlways): an acknowledged append survives power loss and OS
	// crashes. A positive value fsyncs only every SyncInterval: appends are
	// much faster, but those acknowledged in the last interval may be lost
	// on power loss or an OS crash (not on a process crash).
	SyncInterval time.Duration
	// Listen is "" (the default) for no network listener: only this
	// process can connect. Otherwise "host:port" accepts network clients
	// there (port 0 picks a free port, see [Embedded.ClientURL]). Without
	// User the server has no authentication: set User and Password, or
	// listen on loopback only, unless the network is trusted.
	Listen string
	// User and Password, when User is set, make the server require them of
	// every client, network and in-process alike ([Embedded.Conn] passes
	// them). Network clients pass them with [ConnectConfig]. For finer
	// permissions (a read-only user), run a server configured with its own
	// users and use [Connect] (docs/RELIABILITY.md lists the subjects).
	User, Password string
	// ServerName names the server. Empty lets the server pick one.
	ServerName string
	// MaxPayload is the largest message the server accepts, in bytes.
	// 0 is the server default, 1 MiB.
	MaxPayload int32
	// Logger receives the server's logs if set; nil discards them. Notices
	// and debug lines are logged at debug level (debug lines only if the
	// logger is enabled for it), warnings at warn, errors at error.
	Logger *slog.Logger
}

// Embedded is a NATS server with JetStream running in this process. Make
// one with [StartEmbedded]. Its methods are safe for concurrent use.
type Embedded struct {
	srv       *server.Server
	listening bool
	closeOnce sync.Once
	unlock    func() // releases the store directory's lock
	user      string
	password  string
	warnings  *recoveryLog
	dir       string // the store directory whose server file this server wrote; "" if none
}

// StartEmbedded starts a NATS server with JetStream in this process,
// storing in cfg.Dir, and waits until it accepts connections: until ctx
// is done, or [DefaultStartTimeout] if ctx has no deadline. It does not
// install signal handlers. It holds an exclusive lock on cfg.Dir until
// Close (a second embedded server on the directory gets [ErrDirInUse]),
// and on Linux it refuses, with ErrDirInUse, a directory that another
// process visibly serves (a nats-server started with -sd on it, or
// holding its files open; see docs/RELIABILITY.md for what cannot be
// seen). The safe way to share a store is one server and many clients:
// [EmbeddedConfig.Listen] and [Connect]. An invalid cfg gives an error matching
// [ErrInvalidConfig]; a server that cannot start (a bad directory, a port
// in use, JetStream failing to start) gives a wrapped error and is shut
// down. Close the returned server with [Embedded.Close].
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	opts, err := serverOptions(cfg)
	if err != nil {
		return nil, err
	}
	unlock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if pid, how := servedDir(cfg.Dir); pid != 0 {
		unlock()
		return nil, fmt.Errorf("%w: %s is served by another process (pid %d: %s); two servers on one directory lose each other's writes: "+
			"connect to that server instead (jetstream.Connect, replay --server URL), or stop it first", ErrDirInUse, cfg.Dir, pid, how)
	}
	// Holding the lock, this process is the directory's only server: a
	// server file left by one killed before it could remove it is stale.
	_ = os.Remove(filepath.Join(cfg.Dir, ServerFileName))
	srv, err := server.NewServer(opts)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("jetstream: start embedded server: %w", err)
	}
	// The server reports a failure to start (a listen address in use, a
	// store it cannot open) only through its logger's Fatalf: catch it,
	// so that the caller gets it at once rather than after the deadline.
	fatal := make(chan string, 1)
	debug := cfg.Logger != nil && cfg.Logger.Enabled(ctx, slog.LevelDebug)
	warnings := &recoveryLog{}
	srv.SetLoggerV2(serverLogger{l: cfg.Logger, fatal: fatal, warnings: warnings}, debug, false, false)
	go srv.Start()

	e := &Embedded{srv: srv, listening: !opts.DontListen, unlock: unlock, user: cfg.User, password: cfg.Password, warnings: warnings}
	start := time.Now()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultStartTimeout)
	}
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		select {
		case msg := <-fatal:
			_ = e.Close()
			return nil, fmt.Errorf("jetstream: start embedded server: %s", msg)
		default:
		}
		if err := ctx.Err(); err != nil {
			_ = e.Close()
			return nil, fmt.Errorf("jetstream: start embedded server: %w", err)
		}
		if time.Now().After(deadline) {
			_ = e.Close()
			return nil, fmt.Errorf("jetstream: start embedded server: not ready after %v: %w", time.Since(start).Round(time.Millisecond), context.DeadlineExceeded)
		}
	}
	if !srv.JetStreamEnabled() {
		_ = e.Close()
		return nil, fmt.Errorf("jetstream: start embedded server: JetStream did not start (store directory %q)", cfg.Dir)
	}
	if e.listening {
		f := ServerFile{PID: os.Getpid(), URL: srv.ClientURL(), User: cfg.User, Password: cfg.Password, Started: time.Now().UTC()}
		if err := writeServerFile(cfg.Dir, f); err != nil {
			_ = e.Close()
			return nil, fmt.Errorf("jetstream: start embedded server: write %s: %w", ServerFileName, err)
		}
		e.dir = cfg.Dir
	}
	return e, nil
}

// servedDir is servedBy, asked again after a short pause before it
// counts: a process this one forks holds copies of all its open files for
// the instant between the fork and its exec (Go closes them at exec), so a
// child being started while an embedded server of this process has the
// directory open looks, for that instant, like another server. A real
// server still holds the files after the pause.
func servedDir(dir string) (int, string) {
	if pid, _ := servedBy(dir); pid == 0 {
		return 0, ""
	}
	time.Sleep(servedRecheck)
	return servedBy(dir)
}

// servedRecheck is how long servedDir waits before asking again.
const servedRecheck = 50 * time.Millisecond

// serverOptions maps cfg onto server options.
func serverOptions(cfg EmbeddedConfig) (*server.Options, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: EmbeddedConfig.Dir is required", ErrInvalidConfig)
	}
	if cfg.SyncInterval < 0 {
		return nil, fmt.Errorf("%w: EmbeddedConfig.SyncInterval is %v, want 0 (fsync before every acknowledgement) or > 0", ErrInvalidConfig, cfg.SyncInterval)
	}
	if cfg.MaxPayload < 0 {
		return nil, fmt.Errorf("%w: EmbeddedConfig.MaxPayload is %d, want 0 (server default) or > 0", ErrInvalidConfig, cfg.MaxPayload)
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		NoSigs:     true,
		NoLog:      cfg.Logger == nil,
		MaxPayload: cfg.MaxPayload,
	}
	if cfg.Password != "" && cfg.User == "" {
		return nil, fmt.Errorf("%w: EmbeddedConfig.Password is set without a User", ErrInvalidConfig)
	}
	if cfg.User != "" {
		opts.Username, opts.Password = cfg.User, cfg.Password
	}
	if cfg.SyncInterval == 0 {
		opts.SyncAlways = true
	} else {
		opts.SyncInterval = cfg.SyncInterval
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("%w: EmbeddedConfig.Listen %q: %v", ErrInvalidConfig, cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("%w: EmbeddedConfig.Listen %q: bad port", ErrInvalidConfig, cfg.Listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, p
	}
	return opts, nil
}

// Conn returns a new in-process connection to the server (no network).
// The caller closes it. Errors are wrapped NATS errors.
func (e *Embedded) Conn() (*nats.Conn, error) {
	opts := []nats.Option{nats.InProcessServer(e.srv), nats.Name("runlog"), nats.SyncQueueLen(syncQueueLen)}
	if e.user != "" {
		opts = append(opts, nats.UserInfo(e.user, e.password))
	}
	nc, err := nats.Connect(e.srv.ClientURL(), opts...)
	if err != nil {
		return nil, fmt.Errorf("jetstream: connect to embedded server: %w", err)
	}
	return nc, nil
}

// Server returns the running server.
func (e *Embedded) Server() *server.Server { return e.srv }

// ClientURL returns the URL network clients connect to, or "" when the
// server was started without [EmbeddedConfig.Listen].
func (e *Embedded) ClientURL() string {
	if !e.listening {
		return ""
	}
	return e.srv.ClientURL()
}

// Close shuts the server down and waits until it has stopped, closing the
// connections to it. It may be called more than once and always returns
// nil; the error result is there for future use.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		if e.dir != "" {
			removeServerFile(e.dir)
		}
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		if e.unlock != nil {
			e.unlock()
		}
	})
	return nil
}

// OpenEmbedded starts a server with [StartEmbedded], connects to it in
// process and opens a store on it with [Open]. The store owns both:
// [Log.Close] closes the connection and shuts the server down. Errors
// are those of StartEmbedded and Open; on error nothing is left running.
//
// When another process serves the directory with a listening embedded
// server ([EmbeddedConfig.Listen], as `replay serve` runs one), OpenEmbedded
// connects to that server instead, with the address and credentials its
// [ServerFileName] gives ([Log.ServedBy] then says so), so that many
// programs share one store directory safely. A directory held by a
// process that does not listen still gives [ErrDirInUse].
func OpenEmbedded(ctx context.Context, ecfg EmbeddedConfig, cfg Config) (*Log, error) {
	if _, err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	emb, err := StartEmbedded(ctx, ecfg)
	if errors.Is(err, ErrDirInUse) {
		return openServed(ctx, ecfg.Dir, cfg, err)
	}
	if err != nil {
		return nil, err
	}
	nc, err := emb.Conn()
	if err != nil {
		return nil, errors.Join(err, emb.Close())
	}
	s, err := Open(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		return nil, errors.Join(err, emb.Close())
	}
	s.ownConn, s.emb = true, emb
	if d, err := s.Damage(ctx); err == nil {
		if len(d) > 0 {
			l := ecfg.Logger
			if l == nil {
				l = slog.Default()
			}
			l.Warn("jetstream: the embedded server recovered a damaged store: messages are missing; run replay verify with a digest to see which instances lost history",
				slog.String("dir", ecfg.Dir), slog.String(logKeyStream, s.cfg.Stream), slog.Any("damage", d), slog.Any("server_warnings", emb.RecoveryWarnings()))
		}
	}
	return s, nil
}

// serverLogger routes nats-server logs to slog (l may be nil: discard),
// hands the first fatal message to fatal, and keeps the file store's
// warnings (recovery of its state) in warnings.
type serverLogger struct {
	l        *slog.Logger
	fatal    chan<- string
	warnings *recoveryLog
}

// recoveryLog keeps the first warnings of the server's file store.
type recoveryLog struct {
	mu    sync.Mutex
	lines []string
}

const maxRecoveryLines = 32

func (r *recoveryLog) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) < maxRecoveryLines {
		r.lines = append(r.lines, line)
	}
}

// RecoveryWarnings returns the warnings the server's file store logged
// (up to 32), whatever the configured Logger: how it rebuilt a stream's
// state after an unclean stop, or from damaged files. An unclean stop
// (a crash, SIGKILL) is enough for a rebuild; a store that lost
// messages is told by [Log.StreamProblems].
func (e *Embedded) RecoveryWarnings() []string {
	if e.warnings == nil {
		return nil
	}
	e.warnings.mu.Lock()
	defer e.warnings.mu.Unlock()
	return slices.Clone(e.warnings.lines)
}

func (l serverLogger) logf(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if l.l != nil && l.l.Enabled(ctx, level) {
		l.l.Log(ctx, level, fmt.Sprintf(format, v...), slog.String("component", "nats-server"))
	}
}

func (l serverLogger) Noticef(format string, v ...any) { l.logf(slog.LevelDebug, format, v) }
func (l serverLogger) Warnf(format string, v ...any) {
	if l.warnings != nil && strings.HasPrefix(format, "Filestore [") {
		l.warnings.add(fmt.Sprintf(format, v...))
	}
	l.logf(slog.LevelWarn, format, v)
}
func (l serverLogger) Fatalf(format string, v ...any) {
	l.logf(slog.LevelError, format, v)
	select {
	case l.fatal <- fmt.Sprintf(format, v...):
	default:
	}
}
func (l serverLogger) Errorf(format string, v ...any) { l.logf(slog.LevelError, format, v) }
func (l serverLogger) Debugf(format string, v ...any) { l.logf(slog.LevelDebug, format, v) }
func (l serverLogger) Tracef(format string, v ...any) { l.logf(slog.LevelDebug-4, format, v) }

// EmbeddedStreams returns the names of the streams a store directory of
// an embedded server holds, sorted, read from the server's files without
// starting a server (nats-server keeps an embedded server's streams in
// DIR/jetstream/$G/streams/<stream>). A read-only tool uses it to refuse
// a directory that holds no store, or not the stream it wants, before a
// server would create one. A directory with no JetStream data gives an
// error matching [os.ErrNotExist].
func EmbeddedStreams(dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "jetstream", "$G", "streams"))
	if err != nil {
		return nil, fmt.Errorf("jetstream: streams of %s: %w", dir, err)
	}
	var names []string
	for _, en := range ents {
		// A name starting with a dot is a stream the server is deleting
		// (it renames the directory first).
		if en.IsDir() && !strings.HasPrefix(en.Name(), ".") {
			names = append(names, en.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}
