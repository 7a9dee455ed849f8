package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ulidLike is a ULID (events and runs are identified by ULIDs); the
// interface keeps this command free of a direct dependency.
type ulidLike interface {
	String() string
	IsZero() bool
}

// opts holds the subcommands' own flags; each subcommand defines the ones
// it takes.
type opts struct {
	seed    int64
	seedSet bool

	status   string
	since    string
	until    string
	sortBy   string
	limit    int
	after    string
	types    string
	reverse  bool
	detailed bool
	follow   bool

	atSeq uint64
	at    string
	from  string
	to    string

	maxProblems int
	file        string

	key      string // digest: the signing key file; verify, prove, verify-proof: the public key
	unsigned bool   // digest: no signature
	publish  bool   // digest: also to the digest stream

	partitions int // demo, import: the partitions of a store they create
	workers    int // demo: the worker pool's size (0: no pool)

	checkpoints bool     // verify: the projection checkpoints too
	digests     []string // verify, prove: --digest files

	workflowName string // list, count: --workflow
	definition   string // list, count: --definition (a hash prefix)
	actor        string // list, count: --actor
	signal       string // list, count: --signal cancel|pause
	waiting      string // list, count: --waiting delay|signal
	createdSince string // list, count: --created-since
	eventType    string // list, count: --event-type
	indexPath    string // list, count: --index
	noIndex      bool   // list, count: --no-index

	httpAddr   string        // serve: --http
	natsAddr   string        // serve: --nats
	indexEvery time.Duration // serve: --index-every

	cloudEvents bool   // feed: CloudEvents (the one format)
	feedTo      string // feed: the subject
	feedServer  string // feed: the NATS server to publish on (default the store's)
	feedMode    string // feed: binary or structured
	feedName    string // feed: the subscription's name
}

// parseTime accepts an RFC 3339 time, a date (UTC midnight), or a duration
// ago ("15m", "2h30m", "3d", "1d12h") counted back from now.
func parseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC(), nil
	}
	if d, err := parseAgo(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02) or a duration ago (15m, 2h, 3d)", s)
}

// parseAgo parses a non-negative Go duration that may start with a number
// of days ("3d", "1d12h").
func parseAgo(s string) (time.Duration, error) {
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad days")
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration")
	}
	return days + d, nil
}

// point is a position in an instance's history: a stream sequence or a
// time. The zero point is "now" (the whole history).
type point struct {
	seq  uint64
	time time.Time
}

func (p point) String() string {
	switch {
	case p.seq > 0:
		return fmt.Sprintf("seq %d", p.seq)
	case !p.time.IsZero():
		return p.time.Format(time.RFC3339Nano)
	}
	return "now"
}

// parsePoint accepts a sequence number (digits) or a time (see parseTime);
// "now" or "" is the end of the history.
func parsePoint(s string, now time.Time) (point, error) {
	if s == "" || s == "now" {
		return point{}, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n == 0 {
			return point{}, fmt.Errorf("sequence 0 is before every commit: sequences start at 1")
		}
		return point{seq: n}, nil
	}
	t, err := parseTime(s, now)
	if err != nil {
		return point{}, fmt.Errorf("%q is neither a sequence number nor a time: use a number, RFC 3339, a date or a duration ago (15m)", s)
	}
	return point{time: t}, nil
}

// shortRun is the run column of the timeline: the last 8 characters of
// the run's ULID (its random part; the first 10 are its time).
func shortRun(id ulidLike) string {
	if id.IsZero() {
		return "-"
	}
	s := id.String()
	return s[len(s)-8:]
}

// ulidOrEmpty returns the ULID's text, or "" for the zero ULID.
func ulidOrEmpty(id ulidLike) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

// fmtTime formats a time for text output: UTC, millisecond precision.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// showBytes renders a payload for text output: as is if it is printable
// UTF-8, quoted if it has control characters, else its length; cut to max
// runes (0: no limit).
func showBytes(b []byte, max int) string {
	if len(b) == 0 {
		return "(empty)"
	}
	if !utf8.Valid(b) {
		return fmt.Sprintf("(%d bytes of binary data)", len(b))
	}
	s := string(b)
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return fmt.Sprintf("%q", cut(s, max))
		}
	}
	return cut(s, max)
}

func cut(s string, max int) string {
	if max <= 0 || utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max-1]) + "…"
}

// humanBytes formats a byte count.
func humanBytes(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1024*1024:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	case n < 1024*1024*1024:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1024*1024))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1024*1024*1024))
}

// jsonArray writes a JSON array one element at a time, so that long
// outputs are never held in memory.
type jsonArray struct {
	w   io.Writer
	n   int
	err error
}

func (a *jsonArray) add(v any) {
	if a.err != nil {
		return
	}
	b, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		a.err = err
		return
	}
	sep := ",\n  "
	if a.n == 0 {
		sep = "[\n  "
	}
	a.n++
	_, a.err = fmt.Fprintf(a.w, "%s%s", sep, b)
}

func (a *jsonArray) close() error {
	if a.err != nil {
		return a.err
	}
	if a.n == 0 {
		_, a.err = io.WriteString(a.w, "[]\n")
	} else {
		_, a.err = io.WriteString(a.w, "\n]\n")
	}
	return a.err
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// writeNDJSON writes v as one line of JSON.
func writeNDJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// emitter writes a stream of records as a JSON array (json) or one per
// line (ndjson).
type emitter struct {
	ndjson bool
	w      io.Writer
	arr    jsonArray
	err    error
}

func newEmitter(w io.Writer, format string) *emitter {
	return &emitter{ndjson: format == outNDJSON, w: w, arr: jsonArray{w: w}}
}

func (m *emitter) add(v any) {
	if m.ndjson {
		if m.err == nil {
			m.err = writeNDJSON(m.w, v)
		}
		return
	}
	m.arr.add(v)
}

func (m *emitter) close() error {
	if m.ndjson {
		return m.err
	}
	return m.arr.close()
}
