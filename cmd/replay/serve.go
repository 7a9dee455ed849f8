package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/visibility"
)

//go:embed web
var webFiles embed.FS

func defineServe(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.httpAddr, "http", "127.0.0.1:8233", "serve the web UI and its API on `HOST:PORT` (loopback only: the UI has no login; port 0 picks one)")
	fs.StringVar(&o.natsAddr, "nats", "127.0.0.1:4222", "the NATS server's client `HOST:PORT` (port 0 picks one); other programs connect there with the credentials in DIR/"+jetstream.ServerFileName)
	fs.DurationVar(&o.indexEvery, "index-every", time.Second, "catch the visibility index up at least this often (it also does on every commit it hears of)")
	definePartitions(fs, o)
}

// serveAPI lists the commands the web API runs, and the flags of theirs
// it refuses (the store is serve's; output is JSON; nothing follows).
var serveAPI = map[string]bool{"list": true, "count": true, "show": true, "state": true, "diff": true, "verify": true, "stats": true}

var serveRefusedFlags = map[string]bool{"dir": true, "server": true, "context": true, "creds": true, "nkey": true, "user": true, "password": true,
	"token": true, "tlsca": true, "tlscert": true, "tlskey": true, "stream": true, "timeout": true, "now": true, "output": true, "o": true,
	"follow": true, "index": true, "no-index": true, "file": true, "digest": true, "key": true}

// runServe runs the store's NATS server for other programs (every other
// replay command and jetstream.OpenEmbedded on the directory connect to
// it), keeps the visibility index caught up, and serves the web UI.
func runServe(ctx context.Context, e *env, args []string) error {
	o := &e.o
	if len(args) > 0 {
		return usagef("serve takes no arguments, got %q", args[0])
	}
	if e.set["server"] {
		return usagef("serve runs the embedded store's server: it takes --dir, not --server (a NATS server is already running there; point the other commands at it)")
	}
	if err := loopbackOnly("--http", o.httpAddr); err != nil {
		return err
	}
	if err := loopbackOnly("--nats", o.natsAddr); err != nil {
		return err
	}
	if o.indexEvery <= 0 {
		return usagef("--index-every %v: want a positive duration", o.indexEvery)
	}
	if e.dir == "" {
		d, err := e.defaultDir()
		if err != nil {
			return &openError{err}
		}
		e.dir = d
	}
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return &openError{fmt.Errorf("create store directory: %w", err)}
	}
	password := make([]byte, 24)
	if _, err := rand.Read(password); err != nil {
		return err
	}
	quiet := slog.New(slog.DiscardHandler)
	emb, err := jetstream.StartEmbedded(ctx, jetstream.EmbeddedConfig{Dir: e.dir, Listen: o.natsAddr, User: "runlog", Password: hex.EncodeToString(password), Logger: quiet})
	if errors.Is(err, jetstream.ErrDirInUse) {
		holder := ""
		if f, ferr := jetstream.ReadServerFile(e.dir); ferr == nil {
			holder = fmt.Sprintf(" (replay serve, pid %d, at %s)", f.PID, f.URL)
		}
		return &openError{fmt.Errorf("%s is already served%s or in use by another process: connect to it instead (every replay command on --dir %s does): %w", e.dir, holder, shellQuote(e.dir), err)}
	}
	if err != nil {
		return &openError{fmt.Errorf("start the store's server in %s: %w", e.dir, err)}
	}
	defer emb.Close()
	nc, err := emb.Conn()
	if err != nil {
		return &openError{err}
	}
	defer nc.Close()
	st, err := jetstream.Open(ctx, nc, jetstream.Config{Stream: e.stream, Partitions: o.partitions, Logger: quiet})
	if err != nil {
		return &openError{fmt.Errorf("open the store in %s: %w", e.dir, err)}
	}
	defer st.Close()
	e.parts = st.Partitions()

	path, err := e.indexFile()
	if err != nil {
		return err
	}
	ix, err := e.openIndexFile(path)
	if err != nil {
		return err
	}
	defer ix.Close()

	metrics, err := newServeMetrics()
	if err != nil {
		return err
	}
	defer metrics.close()
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return &openError{fmt.Errorf("--http %s: %w", o.httpAddr, err)}
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	auth, err := newWebAuth(port)
	if err != nil {
		ln.Close()
		return err
	}
	web := "http://" + ln.Addr().String() + "/"
	removeServeFile, err := writeServeFile(e.dir, serveFile{PID: os.Getpid(), URL: web, Token: auth.token})
	if err != nil {
		ln.Close()
		return fmt.Errorf("write %s: %w", serveFileName, err)
	}
	defer removeServeFile()
	sv := &serveState{e: e, st: st, ix: ix, hub: newHub(), metrics: metrics}
	hs := &http.Server{Handler: securityHeaders(auth.wrap(sv.routes())), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(e.stdout, "replay serve: NATS at %s (credentials in %s)\n", emb.ClientURL(), jetstream.ServerFileName)
	fmt.Fprintf(e.stdout, "replay serve: web UI at %s?token=%s (metrics at /metrics; the token is in %s)\n", web, auth.token, serveFileName)
	fmt.Fprintf(e.stdout, "replay serve: store %s, index %s; every replay command on --dir %s now connects here. Ctrl-C stops.\n", e.dir, path, shellQuote(e.dir))

	var wg sync.WaitGroup
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	wg.Go(func() { sv.indexLoop(loopCtx, o.indexEvery) })
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sv.hub.close() // ends the event streams, which Shutdown would wait for
	_ = hs.Shutdown(shut)
	stopLoop()
	wg.Wait()
	fmt.Fprintln(e.stderr, "replay serve: stopped")
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// loopbackOnly refuses an address that is not on loopback.
func loopbackOnly(flagName, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("%s %q: want HOST:PORT (e.g. 127.0.0.1:8233)", flagName, addr)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return usagef("%s %q: serve listens on loopback only (127.0.0.1, ::1 or localhost): it has no login. To share the store on a network, run a NATS server with its own users (docs/RELIABILITY.md) and point every program at it with --server", flagName, addr)
	}
	return nil
}

// serveState is a running replay serve.
type serveState struct {
	e       *env
	st      *jetstream.Log
	ix      *visibility.Index
	hub     *hub
	metrics *serveMetrics
}

// indexLoop keeps the index caught up with the log, on each commit it
// hears of and at least every interval, and tells the event streams what
// changed.
func (sv *serveState) indexLoop(ctx context.Context, every time.Duration) {
	hints, stop, err := sv.st.NotifyCommits()
	if err != nil {
		fmt.Fprintf(sv.e.stderr, "replay serve: index: %v: catching up every %v only\n", err, every)
	} else {
		defer stop()
	}
	sv.ix.Keep(ctx, sv.st, hints, every, func(s visibility.Stats) {
		sv.metrics.caughtUp(s)
		sv.hub.publish(changeEvent{Instances: s.Changed, More: s.ChangedMore || s.Rebuilt})
	}, func(err error) {
		sv.metrics.catchUpFailed()
		fmt.Fprintf(sv.e.stderr, "replay serve: index: %v (retrying)\n", err)
	})
}

// changeEvent is the data of an event stream's "change" event.
type changeEvent struct {
	Instances []string `json:"instances"`
	More      bool     `json:"more"` // more changed than listed: refetch everything
}

func (sv *serveState) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFiles, "web")
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(static, "index.html")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(b)
	})
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /api/events", sv.events)
	mux.HandleFunc("GET /api/{command}", sv.measured(sv.api))
	mux.Handle("GET /metrics", sv.metrics.handler())
	return mux
}

// securityHeaders keeps the page to its own origin.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// measured records each API request's command, status and duration.
func (sv *serveState) measured(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h(rec, r)
		command := r.PathValue("command")
		if !serveAPI[command] {
			command = "other" // bounded label values
		}
		sv.metrics.request(command, rec.code, time.Since(start))
	}
}

// statusRecorder keeps the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// api runs a read command on serve's store and answers what
// `replay COMMAND -o json` prints: the query's id parameters are its
// arguments, every other parameter a flag.
func (sv *serveState) api(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("command")
	c := lookup(name)
	if c == nil || !serveAPI[name] {
		apiError(w, http.StatusNotFound, fmt.Sprintf("no API command %q: use one of list, count, show, state, diff, verify, stats", name))
		return
	}
	q := r.URL.Query()
	args := slices.Clone(q["id"])
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "id" {
			continue
		}
		if serveRefusedFlags[k] {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("parameter %q is not for the API: the store, the output and the index are serve's", k))
			return
		}
		for _, v := range q[k] {
			args = append(args, "--"+k+"="+v)
		}
	}
	args = append(args, "-o", "json")
	var out, diag bytes.Buffer
	e := &env{cmd: c, stdout: &out, stderr: &diag, getenv: sv.e.getenv, lent: sv.st}
	pos, err := e.parse(e.flags(), args)
	e.dir = sv.e.dir // the store's directory: its index file, its name in messages
	if err == nil {
		err = c.run(r.Context(), e, pos)
	}
	var ue *usageError
	var nf *notFoundError
	var pe *problemsError
	switch {
	case err == nil, errors.As(err, &pe) && out.Len() > 0:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(out.Bytes())
	case errors.As(err, &ue):
		apiError(w, http.StatusBadRequest, ue.msg)
	case errors.As(err, &nf), errors.As(err, &pe):
		apiError(w, http.StatusNotFound, err.Error())
	default:
		apiError(w, http.StatusInternalServerError, err.Error())
	}
}

func apiError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// events streams the index's changes as server-sent events.
func (sv *serveState) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		apiError(w, http.StatusInternalServerError, "streaming is not supported")
		return
	}
	ch, done := sv.hub.subscribe()
	defer done()
	sv.metrics.streams.Add(r.Context(), 1)
	defer sv.metrics.streams.Add(context.WithoutCancel(r.Context()), -1)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, "retry: 2000\n: connected\n\n")
	fl.Flush()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keep.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case ev, ok := <-ch:
			if !ok {
				return
			}
			b, _ := json.Marshal(ev)
			fmt.Fprintf(w, "event: change\ndata: %s\n\n", b)
		}
		fl.Flush()
	}
}

// hub fans change events out to the event streams. A stream too slow to
// take one is sent "more" instead when it catches up.
type hub struct {
	mu     sync.Mutex
	subs   map[chan changeEvent]struct{}
	closed bool
}

func newHub() *hub { return &hub{subs: map[chan changeEvent]struct{}{}} }

func (h *hub) subscribe() (<-chan changeEvent, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := make(chan changeEvent, 16)
	if h.closed {
		close(ch)
		return ch, func() {}
	}
	h.subs[ch] = struct{}{}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[ch]; ok {
			delete(h.subs, ch)
			close(ch)
		}
	}
}

func (h *hub) publish(ev changeEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- ev:
		default: // full: this stream will refetch everything
			select {
			case <-ch:
			default:
			}
			ch <- changeEvent{More: true}
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}
