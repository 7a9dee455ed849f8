package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/workflow"
)

// SchemaVersion is the version of the wire format this package writes. A
// reader refuses versions it does not know.
const SchemaVersion = 1

// Event is one state change of an instance. Its envelope is the event's own
// id and type plus, shared with the other events of its commit, the
// instance id, the time and the schema version.
type Event struct {
	ID   ulid.ULID // unique event id
	Type Type
	Run  ulid.ULID // the run the event belongs to (zero before the first run)
	Data Payload   // type-specific body; Data.EventType() == Type

	// Filled from the commit when decoding.
	Instance string
	Time     time.Time
	Schema   int
}

// Commit is one decision: the events it yields, in order, written as one
// message with one sequence check, so they are applied all or none.
type Commit struct {
	ID       ulid.ULID       // commit id; the message's Nats-Msg-Id
	Instance string          // the instance id (not encoded)
	Time     time.Time       // when the decision was made
	Command  string          // the operation, e.g. "prepare_run"
	Actor    string          // who asked, if known
	Prev     workflow.Hash32 // Hash of the instance's previous commit; zero for the first
	Events   []Event
}

// Run returns the run id the commit leaves current: the run of its last
// event, or zero.
func (c *Commit) Run() ulid.ULID {
	if len(c.Events) == 0 {
		return ulid.ULID{}
	}
	return c.Events[len(c.Events)-1].Run
}

// Types returns the commit's event types in order.
func (c *Commit) Types() []Type {
	ts := make([]Type, len(c.Events))
	for i, e := range c.Events {
		ts[i] = e.Type
	}
	return ts
}

type wireCommit struct {
	V        int         `json:"v"`
	ID       ulid.ULID   `json:"id"`
	Instance string      `json:"instance"`
	Time     time.Time   `json:"time"`
	Command  string      `json:"command,omitempty"`
	Actor    string      `json:"actor,omitempty"`
	Prev     string      `json:"prev,omitempty"`
	Events   []wireEvent `json:"events"`
}

type wireEvent struct {
	ID   ulid.ULID       `json:"id"`
	Type Type            `json:"type"`
	Run  *ulid.ULID      `json:"run,omitempty"`
	Data json.RawMessage `json:"data"`
}

// ErrInvalidCommit is matched by errors from [Commit.Encode] for a commit
// that cannot be written (no events, a payload of the wrong type, ...).
var ErrInvalidCommit = errors.New("events: invalid commit")

// ErrInvalidText is matched, together with [ErrInvalidCommit], by errors
// from [Commit.Encode] for a string (an actor, a reason, an event name,
// a signal's text, ...) that is not valid UTF-8. JSON cannot carry such
// bytes: they would be replaced by U+FFFD, and the text stored would not
// be the text given.
var ErrInvalidText = errors.New("events: text is not valid UTF-8")

// Encode returns the message that carries c: the JSON payload and the
// headers of docs/EVENTS.md. The payload bytes are what the hash chain
// covers.
func (c *Commit) Encode() (Message, error) {
	if len(c.Events) == 0 {
		return Message{}, fmt.Errorf("%w: no events", ErrInvalidCommit)
	}
	if c.ID.IsZero() {
		return Message{}, fmt.Errorf("%w: zero commit id", ErrInvalidCommit)
	}
	if c.Instance == "" {
		return Message{}, fmt.Errorf("%w: empty instance id", ErrInvalidCommit)
	}
	if c.Time.IsZero() {
		return Message{}, fmt.Errorf("%w: zero commit time", ErrInvalidCommit)
	}
	for i, e := range c.Events {
		if e.Data == nil || e.Data.EventType() != e.Type || !Known(e.Type) {
			return Message{}, fmt.Errorf("%w: event %d has type %q and a payload that does not match", ErrInvalidCommit, i, e.Type)
		}
		if e.ID.IsZero() {
			return Message{}, fmt.Errorf("%w: event %d has a zero id", ErrInvalidCommit, i)
		}
	}
	data, err := encodeCommit(c)
	if err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrInvalidCommit, err)
	}
	// The header values share one backing array: every commit pays
	// these allocations.
	id := c.ID.String()
	vals := make([]string, 5)
	vals[0], vals[1], vals[2] = id, schemaText, eventTypes(c.Events)
	h := make(map[string][]string, 5)
	h[HeaderMsgID], h[HeaderSchema], h[HeaderEvents] = vals[0:1:1], vals[1:2:2], vals[2:3:3]
	if r := c.Run(); !r.IsZero() {
		vals[3] = r.String()
		h[HeaderRun] = vals[3:4:4]
	}
	if c.Command != "" {
		vals[4] = c.Command
		h[HeaderCommand] = vals[4:5:5]
	}
	return Message{MsgID: id, Header: h, Data: data}, nil
}

// schemaText is [SchemaVersion] as the Runlog-Schema header writes it.
var schemaText = strconv.Itoa(SchemaVersion)

// eventTypes is the Runlog-Events header of a commit of evs: their types
// in order, comma separated.
func eventTypes(evs []Event) string {
	if len(evs) == 1 {
		return string(evs[0].Type)
	}
	var b strings.Builder
	for i, e := range evs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(string(e.Type))
	}
	return b.String()
}

// Record is a decoded, stored commit.
type Record struct {
	Seq    uint64          // stream sequence of the message
	Stored time.Time       // when the log stored it
	Hash   workflow.Hash32 // SHA-256 of the payload: the next commit's Prev
	Size   int             // payload bytes
	Commit Commit
}

// ErrCorrupt is matched by every [*DecodeError].
var ErrCorrupt = errors.New("events: corrupt history")

// Causes a [*DecodeError] may wrap, for readers that tell them apart
// (audit reports each as a problem of its own kind):
var (
	// ErrNewerSchema: the commit was written with a newer schema version
	// than this reader's. Nothing is wrong with the history: upgrade.
	ErrNewerSchema = errors.New("upgrade runlog to read it")
	// ErrForeignCommit: a well-formed commit naming another instance than
	// the one it was read for: a message of another history stored there.
	ErrForeignCommit = errors.New("a message of another history was written here")
)

// DecodeError says which message could not be decoded and why.
type DecodeError struct {
	Seq   uint64 // stream sequence of the message
	Event int    // index of the event inside the commit, or -1
	Type  Type   // the event type, if known
	Err   error  // what is wrong
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "events: message seq %d", e.Seq)
	if e.Event >= 0 {
		fmt.Fprintf(&b, " event %d", e.Event)
		if e.Type != "" {
			fmt.Fprintf(&b, " (%s)", e.Type)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the cause.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrCorrupt].
func (e *DecodeError) Is(target error) bool { return target == ErrCorrupt }

// Decode decodes a stored message. instance, when not empty, is the
// instance the message was read for: a commit naming another instance is
// refused. Errors are [*DecodeError]s naming the sequence; one wraps
// [ErrNewerSchema] for a commit of a newer schema version (even one whose
// fields this reader does not know) and [ErrForeignCommit] for a commit
// of another instance.
func Decode(m Message, instance string) (Record, error) {
	return decode(m, instance, nil)
}

// DecodeHashed is [Decode] for a caller that has already computed the
// message's hash (workflow.Sha256 of m.Data), which becomes the record's
// Hash without being computed again. A wrong hash gives a wrong record:
// pass only the hash of m.Data.
func DecodeHashed(m Message, instance string, hash workflow.Hash32) (Record, error) {
	return decode(m, instance, &hash)
}

func decode(m Message, instance string, hash *workflow.Hash32) (Record, error) {
	fail := func(idx int, t Type, format string, args ...any) (Record, error) {
		return Record{}, &DecodeError{Seq: m.Seq, Event: idx, Type: t, Err: fmt.Errorf(format, args...)}
	}
	w, err := parseCommit(m.Data)
	if err == nil {
		defer putParsed(w)
	}
	if err != nil {
		// A newer schema may add fields this reader refuses: say so
		// rather than call the commit malformed.
		var probe struct {
			V int `json:"v"`
		}
		if json.Unmarshal(m.Data, &probe) == nil && probe.V > SchemaVersion {
			return fail(-1, "", "schema version %d is newer than this reader's %d: %w", probe.V, SchemaVersion, ErrNewerSchema)
		}
		return fail(-1, "", "not a runlog commit: %v", err)
	}
	switch {
	case w.V == 0:
		return fail(-1, "", "missing schema version")
	case w.V < 0:
		return fail(-1, "", "invalid schema version %d", w.V)
	case w.V > SchemaVersion:
		return fail(-1, "", "schema version %d is newer than this reader's %d: %w", w.V, SchemaVersion, ErrNewerSchema)
	case w.ID.IsZero():
		return fail(-1, "", "missing commit id")
	case w.Instance == "":
		return fail(-1, "", "missing instance id")
	case instance != "" && w.Instance != instance:
		return fail(-1, "", "commit %s names instance %q, read for %q: %w", w.ID, w.Instance, instance, ErrForeignCommit)
	case len(w.Events) == 0:
		return fail(-1, "", "commit %s has no events", w.ID)
	case w.Time.IsZero():
		return fail(-1, "", "missing commit time")
	case m.MsgID != "" && !idIs(m.MsgID, w.ID):
		return fail(-1, "", "Nats-Msg-Id %q does not match commit id %s", m.MsgID, w.ID)
	}
	rec := Record{Seq: m.Seq, Stored: m.Time, Size: len(m.Data)}
	if hash != nil {
		rec.Hash = *hash
	} else {
		rec.Hash = workflow.Sha256(m.Data)
	}
	c := &rec.Commit
	c.ID, c.Instance, c.Time, c.Command, c.Actor = w.ID, w.Instance, w.Time, w.Command, w.Actor
	if len(w.Prev) > 0 {
		var p workflow.Hash32
		if err := p.UnmarshalText(w.Prev); err != nil {
			return fail(-1, "", "prev: %v", err)
		}
		if p.IsZero() {
			return fail(-1, "", "prev is the zero hash")
		}
		c.Prev = p
	}
	c.Events = make([]Event, len(w.Events))
	for i, we := range w.Events {
		if !Known(we.Type) {
			return fail(i, we.Type, "unknown event type %q", we.Type)
		}
		if we.ID.IsZero() {
			return fail(i, we.Type, "missing event id")
		}
		if we.Err != nil {
			return fail(i, we.Type, "payload: %v", we.Err)
		}
		c.Events[i] = Event{ID: we.ID, Type: we.Type, Run: we.Run, Data: we.Data, Instance: w.Instance, Time: w.Time, Schema: w.V}
	}
	return rec, nil
}

// idIs reports whether s is id's text form, without making it a string.
func idIs(s string, id ulid.ULID) bool {
	var t [ulid.EncodedSize]byte
	_ = id.MarshalTextTo(t[:]) // fails only on a short buffer
	return s == string(t[:])
}

// IDSource makes ULIDs from a clock and an entropy source. It is safe for
// concurrent use; the ids of one source are strictly increasing.
type IDSource struct {
	mu      sync.Mutex
	now     func() time.Time
	entropy io.Reader
}

// NewIDSource returns a source using now (nil: [time.Now]) and entropy
// (nil: a cryptographically random monotonic source).
func NewIDSource(now func() time.Time, entropy io.Reader) *IDSource {
	if now == nil {
		now = time.Now
	}
	if entropy == nil {
		entropy = ulid.DefaultEntropy()
	}
	if _, ok := entropy.(ulid.MonotonicReader); !ok {
		entropy = ulid.Monotonic(entropy, 0)
	}
	return &IDSource{now: now, entropy: entropy}
}

// New returns a new id and the time it was stamped with.
func (s *IDSource) New() (ulid.ULID, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.now()
	id, err := ulid.New(ulid.Timestamp(t), s.entropy)
	if err != nil {
		return id, t, fmt.Errorf("events: new id: %w", err)
	}
	return id, t, nil
}

// Next returns a new id with the given time, for the events of one commit.
func (s *IDSource) Next(t time.Time) (ulid.ULID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, err := ulid.New(ulid.Timestamp(t), s.entropy)
	if err != nil {
		return id, fmt.Errorf("events: new id: %w", err)
	}
	return id, nil
}
