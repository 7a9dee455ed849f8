package events

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/workflow"
)

// The encoder writes exactly the bytes encoding/json writes for the wire
// structs (field order, omitempty, sorted map keys, HTML-safe string
// escaping, base64 byte strings, RFC 3339 times), without reflection:
// encoding is on the path of every write. The golden fixtures and a
// differential test against encoding/json hold it to that.

// encoder accumulates the payload; the first error sticks.
type encoder struct {
	b       []byte
	err     error
	lastKey string // the last key written, for errors
}

func (e *encoder) raw(s string) { e.b = append(e.b, s...) }

// str writes s as a JSON string. Invalid UTF-8 fails the encoding with
// ErrInvalidText (encoding/json would write U+FFFD, so the durable text
// would differ from the writer's).
func (e *encoder) str(s string) {
	if !utf8.ValidString(s) {
		e.fail(fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalidText, e.lastKey, s))
	}
	e.b = appendJSONString(e.b, s)
}

// key writes `,"name":` (or without the comma after an opening brace).
func (e *encoder) key(name string) {
	if n := len(e.b); n > 0 && e.b[n-1] != '{' && e.b[n-1] != '[' {
		e.b = append(e.b, ',')
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, name...)
	e.b = append(e.b, '"', ':')
	e.lastKey = name
}

func (e *encoder) bytesVal(p []byte) {
	if p == nil {
		e.raw("null")
		return
	}
	e.b = append(e.b, '"')
	e.b = base64.StdEncoding.AppendEncode(e.b, p)
	e.b = append(e.b, '"')
}

func (e *encoder) text(v interface{ MarshalText() ([]byte, error) }) {
	t, err := v.MarshalText()
	if err != nil {
		e.fail(err)
		return
	}
	e.b = appendJSONString(e.b, string(t))
}

func (e *encoder) hash(h workflow.Hash32) {
	e.b = append(e.b, '"')
	e.b = appendHex(e.b, h[:])
	e.b = append(e.b, '"')
}

func (e *encoder) ulid(id ulid.ULID) {
	e.b = append(e.b, '"')
	e.b = append(e.b, id.String()...)
	e.b = append(e.b, '"')
}

func (e *encoder) time(t time.Time) {
	if y := t.Year(); y < 0 || y > 9999 {
		e.fail(errors.New("Time.MarshalJSON: year outside of range [0,9999]"))
		return
	}
	e.b = append(e.b, '"')
	e.b = t.AppendFormat(e.b, time.RFC3339Nano)
	e.b = append(e.b, '"')
}

func (e *encoder) uint(n uint64) { e.b = strconv.AppendUint(e.b, n, 10) }
func (e *encoder) int(n int64)   { e.b = strconv.AppendInt(e.b, n, 10) }

func (e *encoder) float(f float64) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		e.fail(fmt.Errorf("json: unsupported value: %s", strconv.FormatFloat(f, 'g', -1, 64)))
		return
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	e.b = strconv.AppendFloat(e.b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(e.b)
		if n >= 4 && e.b[n-4] == 'e' && e.b[n-3] == '-' && e.b[n-2] == '0' {
			e.b[n-2] = e.b[n-1]
			e.b = e.b[:n-1]
		}
	}
}

func (e *encoder) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

func (e *encoder) strings(ss []string) {
	e.b = append(e.b, '[')
	for i, s := range ss {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.str(s)
	}
	e.b = append(e.b, ']')
}

func (e *encoder) taskIDs(ids []workflow.TaskID) {
	e.b = append(e.b, '[')
	for i, id := range ids {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.hash(id)
	}
	e.b = append(e.b, ']')
}

// sortedIDs returns the keys of a task-id map in the order encoding/json
// writes them: by their text, which for hex is the byte order.
func sortedIDs[V any](m map[workflow.TaskID]V) []workflow.TaskID {
	ids := make([]workflow.TaskID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b workflow.TaskID) int { return strings.Compare(string(a[:]), string(b[:])) })
	return ids
}

func (e *encoder) hint(h workflow.TaskHint) {
	e.raw("{")
	e.key("id")
	e.hash(h.ID)
	if h.Priority != nil {
		e.key("priority")
		e.uint(uint64(*h.Priority))
	}
	if len(h.Tags) > 0 {
		e.key("tags")
		e.strings(h.Tags)
	}
	e.raw("}")
}

func (e *encoder) position(p *workflow.Position) {
	e.raw("{")
	e.key("kind")
	e.text(p.Kind)
	if !p.TaskID.IsZero() {
		e.key("task_id")
		e.hash(p.TaskID)
	}
	if !p.NodeID.IsZero() {
		e.key("node_id")
		e.hash(p.NodeID)
	}
	if len(p.Branches) > 0 {
		e.key("branches")
		e.raw("{")
		labels := make([]string, 0, len(p.Branches))
		for k := range p.Branches {
			labels = append(labels, k)
		}
		slices.Sort(labels)
		for i, k := range labels {
			if i > 0 {
				e.raw(",")
			}
			e.str(k)
			e.raw(":{")
			r := p.Branches[k]
			e.key("task_id")
			e.hash(r.TaskID)
			e.key("output")
			e.bytesVal(r.Output)
			e.raw("}")
		}
		e.raw("}")
	}
	if !p.EnteredAt.IsZero() {
		e.key("entered_at")
		e.time(p.EnteredAt)
	}
	if p.WakeAt != nil {
		e.key("wake_at")
		e.time(*p.WakeAt)
	}
	if p.NextTaskID != nil {
		e.key("next_task_id")
		e.hash(*p.NextTaskID)
	}
	if p.SignalName != "" {
		e.key("signal_name")
		e.str(p.SignalName)
	}
	if p.Iteration != 0 {
		e.key("iteration")
		e.uint(uint64(p.Iteration))
	}
	e.raw("}")
}

func (e *encoder) retry(r workflow.TaskRetryState) {
	e.raw("{")
	e.key("attempts")
	e.uint(uint64(r.Attempts))
	e.key("policy")
	e.raw("{")
	e.key("max_retries")
	e.uint(uint64(r.Policy.MaxRetries))
	e.key("initial_delay")
	e.int(int64(r.Policy.InitialDelay))
	e.key("backoff_multiplier")
	e.float(r.Policy.BackoffMultiplier)
	if r.Policy.MaxDelay != 0 {
		e.key("max_delay")
		e.int(int64(r.Policy.MaxDelay))
	}
	e.raw("}")
	if r.LastError != "" {
		e.key("last_error")
		e.str(r.LastError)
	}
	if r.LastFailedWorker != "" {
		e.key("last_failed_worker")
		e.str(r.LastFailedWorker)
	}
	e.key("next_retry_at")
	e.time(r.NextRetryAt)
	e.raw("}")
}

// payload writes an event's data object.
func (e *encoder) payload(p Payload) {
	e.raw("{")
	switch d := p.(type) {
	case *SnapshotCreatedData:
		e.key("definition_hash")
		e.hash(d.DefinitionHash)
		if len(d.Input) > 0 {
			e.key("input")
			e.bytesVal(d.Input)
		}
		e.key("first_task")
		e.hint(d.FirstTask)
		if d.Policy != "" {
			e.key("policy")
			e.str(d.Policy)
		}
		if d.TraceParent != "" {
			e.key("trace_parent")
			e.str(d.TraceParent)
		}
	case *SnapshotDeletedData:
		if d.Reason != "" {
			e.key("reason")
			e.str(d.Reason)
		}
		if d.DiscardedEvents != 0 {
			e.key("discarded_events")
			e.int(int64(d.DiscardedEvents))
		}
	case *SignalStoredData:
		e.key("kind")
		e.text(d.Kind)
		if d.Reason != "" {
			e.key("reason")
			e.str(d.Reason)
		}
		if d.RequestedBy != "" {
			e.key("requested_by")
			e.str(d.RequestedBy)
		}
		e.key("requested_at")
		e.time(d.RequestedAt)
	case *SignalClearedData:
		e.key("kind")
		e.text(d.Kind)
		if d.Reason != "" {
			e.key("reason")
			e.str(d.Reason)
		}
	case *TaskCompletedData:
		e.key("task_id")
		e.hash(d.TaskID)
		if len(d.Output) > 0 {
			e.key("output")
			e.bytesVal(d.Output)
		}
	case *CheckpointSavedData:
		e.checkpoint(d)
	case *WorkflowCompletedData:
		if len(d.Output) > 0 {
			e.key("output")
			e.bytesVal(d.Output)
		}
	case *WorkflowFailedData:
		e.key("error")
		e.str(d.Error)
	case *WorkflowCancelledData:
		if d.Reason != "" {
			e.key("reason")
			e.str(d.Reason)
		}
		if d.By != "" {
			e.key("by")
			e.str(d.By)
		}
		e.key("at")
		e.time(d.At)
		if d.InterruptedAtTask != nil {
			e.key("interrupted_at_task")
			e.hash(*d.InterruptedAtTask)
		}
	case *WorkflowPausedData:
		if d.Reason != "" {
			e.key("reason")
			e.str(d.Reason)
		}
		if d.By != "" {
			e.key("by")
			e.str(d.By)
		}
		e.key("at")
		e.time(d.At)
	case *WorkflowUnpausedData:
	case *EventSentData:
		e.key("name")
		e.str(d.Name)
		if len(d.Payload) > 0 {
			e.key("payload")
			e.bytesVal(d.Payload)
		}
	case *EventConsumedData:
		e.key("name")
		e.str(d.Name)
		e.key("event_id")
		e.ulid(d.EventID)
	case *TaskClaimedData:
		e.key("task_id")
		e.hash(d.TaskID)
		e.key("worker")
		e.str(d.Worker)
		if d.TTLMS != 0 {
			e.key("ttl_ms")
			e.uint(d.TTLMS)
		}
		if d.TakenOver != nil {
			e.key("taken_over")
			e.raw("{")
			e.key("claim")
			e.ulid(d.TakenOver.Claim)
			e.key("worker")
			e.str(d.TakenOver.Worker)
			e.raw("}")
		}
	case *TaskClaimReleasedData:
		e.key("task_id")
		e.hash(d.TaskID)
		e.key("claim")
		e.ulid(d.Claim)
		e.key("worker")
		e.str(d.Worker)
		if d.Reason != "" {
			e.key("reason")
			e.str(d.Reason)
		}
	default:
		e.fail(fmt.Errorf("no encoder for payload %T", p))
	}
	e.raw("}")
}

func (e *encoder) checkpoint(d *CheckpointSavedData) {
	if d.Position != nil {
		e.key("position")
		e.position(d.Position)
	}
	if len(d.Completed) > 0 {
		e.key("completed")
		e.raw("{")
		for i, id := range sortedIDs(d.Completed) {
			if i > 0 {
				e.raw(",")
			}
			e.hash(id)
			e.raw(":")
			e.bytesVal(d.Completed[id])
		}
		e.raw("}")
	}
	if len(d.Removed) > 0 {
		e.key("removed")
		e.taskIDs(d.Removed)
	}
	if d.LastCompletedTask != nil {
		e.key("last_completed_task")
		e.hash(*d.LastCompletedTask)
	}
	if d.Hint != nil {
		e.key("hint")
		e.raw("{")
		if d.Hint.Priority != nil {
			e.key("priority")
			e.uint(uint64(*d.Hint.Priority))
		}
		if len(d.Hint.Tags) > 0 {
			e.key("tags")
			e.strings(d.Hint.Tags)
		}
		e.raw("}")
	}
	if d.Deadline != nil {
		e.key("deadline")
		e.raw("{")
		e.key("task_id")
		e.hash(d.Deadline.TaskID)
		e.key("deadline")
		e.time(d.Deadline.Deadline)
		e.key("timeout_ms")
		e.uint(d.Deadline.TimeoutMS)
		e.raw("}")
	}
	if d.ClearDeadline {
		e.key("clear_deadline")
		e.raw("true")
	}
	if len(d.Retries) > 0 {
		e.key("retries")
		e.raw("{")
		for i, id := range sortedIDs(d.Retries) {
			if i > 0 {
				e.raw(",")
			}
			e.hash(id)
			e.raw(":")
			e.retry(d.Retries[id])
		}
		e.raw("}")
	}
	if len(d.RemovedRetries) > 0 {
		e.key("removed_retries")
		e.taskIDs(d.RemovedRetries)
	}
	if len(d.Loops) > 0 {
		e.key("loops")
		e.raw("{")
		for i, id := range sortedIDs(d.Loops) {
			if i > 0 {
				e.raw(",")
			}
			e.hash(id)
			e.raw(":")
			e.uint(uint64(d.Loops[id]))
		}
		e.raw("}")
	}
	if len(d.RemovedLoops) > 0 {
		e.key("removed_loops")
		e.taskIDs(d.RemovedLoops)
	}
	if d.TraceParent != nil {
		e.key("trace_parent")
		e.str(*d.TraceParent)
	}
}

// sizeHint is a capacity for the encoding of c that is rarely exceeded:
// the envelope and each event's fixed part, plus the base64 of the byte
// payloads that make commits large (inputs, outputs), so that the buffer
// is allocated once.
func sizeHint(c *Commit) int {
	n := 256 + len(c.Instance) + len(c.Command) + len(c.Actor)
	b64 := func(p []byte) int { return base64.StdEncoding.EncodedLen(len(p)) }
	for _, ev := range c.Events {
		n += 256
		switch d := ev.Data.(type) {
		case *SnapshotCreatedData:
			n += b64(d.Input)
		case *CheckpointSavedData:
			for _, out := range d.Completed {
				n += 80 + b64(out)
			}
		case *TaskCompletedData:
			n += b64(d.Output)
		}
	}
	return n
}

// encodeCommit writes the commit's payload.
func encodeCommit(c *Commit) ([]byte, error) {
	e := &encoder{b: make([]byte, 0, sizeHint(c))}
	e.raw(`{"v":`)
	e.int(SchemaVersion)
	e.key("id")
	e.ulid(c.ID)
	e.key("instance")
	e.str(c.Instance)
	e.key("time")
	e.time(c.Time.UTC())
	if c.Command != "" {
		e.key("command")
		e.str(c.Command)
	}
	if c.Actor != "" {
		e.key("actor")
		e.str(c.Actor)
	}
	if !c.Prev.IsZero() {
		e.key("prev")
		e.hash(c.Prev)
	}
	e.key("events")
	e.raw("[")
	for i, ev := range c.Events {
		if i > 0 {
			e.raw(",")
		}
		e.raw(`{"id":`)
		e.ulid(ev.ID)
		e.key("type")
		e.str(string(ev.Type))
		if !ev.Run.IsZero() {
			e.key("run")
			e.ulid(ev.Run)
		}
		e.key("data")
		e.payload(ev.Data)
		e.raw("}")
	}
	e.raw("]}")
	return e.b, e.err
}

const hexDigits = "0123456789abcdef"

func appendHex(b, src []byte) []byte {
	for _, c := range src {
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return b
}

// appendJSONString is encoding/json's string encoding with HTML escaping:
// <, > and & as \u003c, \u003e, \u0026; U+2028 and U+2029 escaped;
// invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonSafe marks the ASCII bytes written as they are.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()
