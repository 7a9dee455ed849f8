package events

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/workflow"
)

// The encoder writes exactly the bytes encoding/json writes for the wire
// structs (field order, omitempty, sorted map keys, HTML-safe string
// escaping, base64 byte strings, RFC 3339 times), without encoding/json's
// reflection: encoding is on the path of every write. The envelope is
// written here; payloads by their plans (codec.go), derived from the
// payload structs. The golden fixtures, TestEveryFieldRoundTrips and a
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
	e.sep()
	e.b = append(e.b, '"')
	e.b = append(e.b, name...)
	e.b = append(e.b, '"', ':')
	e.lastKey = name
}

// sep writes the comma before a key, unless it opens an object.
func (e *encoder) sep() {
	if n := len(e.b); n > 0 && e.b[n-1] != '{' && e.b[n-1] != '[' {
		e.b = append(e.b, ',')
	}
}

// quotedKey is key with the key already quoted ("name":).
func (e *encoder) quotedKey(quoted, name string) {
	e.sep()
	e.b = append(e.b, quoted...)
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
	n := len(e.b)
	e.b = append(e.b, `"                          "`...) // 26 characters
	_ = id.MarshalTextTo(e.b[n+1 : n+1+ulid.EncodedSize])
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

// payload writes an event's data object by its type's plan.
func (e *encoder) payload(p Payload) {
	c, addr, ok := payloadAddr(p)
	if !ok {
		e.fail(fmt.Errorf("no encoder for payload %T", p))
		return
	}
	e.value(c.plan, addr)
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
			for _, o := range d.Completed {
				n += 80 + b64(o.Output)
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
