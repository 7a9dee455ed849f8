package events

import (
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/oklog/ulid/v2"
)

// parsed is a commit as read from the wire, before validation.
type parsed struct {
	V        int
	ID       ulid.ULID
	Instance string
	Time     time.Time
	Command  string
	Actor    string
	Prev     []byte // the message's own bytes, parsed at once
	Events   []parsedEvent
}

type parsedEvent struct {
	ID   ulid.ULID
	Type Type
	Run  ulid.ULID
	Data Payload
	Err  error // the payload's decoding error, if any
}

// parseCommit reads a commit payload with the lexer. A malformed envelope
// is an error; a malformed event payload is recorded on its event (so the
// error can name the event).
//
// The commit comes from a pool: the caller gives it back with putParsed
// once it has taken what it keeps (strings and payloads are its own;
// nothing may point into the parsed struct itself).
func parseCommit(data []byte) (*parsed, error) {
	l := &lexer{data: data}
	w := parsedPool.Get().(*parsed)
	err := l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "v":
			var n int64
			n, err = l.int64()
			if n > 1<<31 || n < -1<<31 {
				return l.errorf("version out of range")
			}
			w.V = int(n)
		case "id":
			err = l.text(&w.ID)
		case "instance":
			w.Instance, err = l.str()
		case "time":
			err = l.text(&w.Time)
		case "command":
			w.Command, err = l.str()
		case "actor":
			w.Actor, err = l.str()
		case "prev":
			w.Prev, err = l.strBytes()
		case "events":
			w.Events = w.Events[:0]
			err = l.array(func() error {
				e, err := parseEvent(l)
				w.Events = append(w.Events, e)
				return err
			})
		default:
			return unknownField(k)
		}
		return err
	})
	if err != nil {
		putParsed(w)
		return nil, err
	}
	if err := l.end(); err != nil {
		putParsed(w)
		return nil, err
	}
	return w, nil
}

// parsedPool holds parsed commits for reuse: every message read is
// parsed into one, for a moment.
var parsedPool = sync.Pool{New: func() any { return new(parsed) }}

// putParsed clears w, so that the pool keeps nothing alive, and gives it
// back.
func putParsed(w *parsed) {
	if cap(w.Events) > 16 {
		w.Events = nil // a rare long commit: not kept
	}
	clear(w.Events[:cap(w.Events)])
	*w = parsed{Events: w.Events[:0]}
	parsedPool.Put(w)
}

func parseEvent(l *lexer) (parsedEvent, error) {
	var e parsedEvent
	var dataStart, dataEnd = -1, -1
	var inPlace Type // the type the payload was decoded (or failed) as
	err := l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			err = l.text(&e.ID)
		case "type":
			var t string
			t, err = l.str()
			e.Type = Type(t)
		case "run":
			err = l.text(&e.Run)
		case "data":
			l.ws()
			dataStart = l.pos
			if pc, ok := registry[e.Type]; ok && e.Data == nil {
				// The type came first (as runlog writes it): decode in place.
				var addr unsafe.Pointer
				e.Data, addr = pc.new()
				inPlace = e.Type
				if l.null() {
					return nil
				}
				if e.Err = l.value(pc.plan, addr); e.Err == nil {
					dataEnd = l.pos
					return nil
				}
				l.pos = dataStart // resynchronise past the bad payload
				e.Data = nil
			}
			err = l.skip()
			dataEnd = l.pos
		default:
			return unknownField(k)
		}
		return err
	})
	if err != nil {
		return e, err
	}
	if inPlace != "" && inPlace == e.Type && (e.Err != nil || e.Data != nil) {
		return e, nil // decoded (or failed) in place
	}
	e.Err = nil
	pc, ok := registry[e.Type]
	if !ok {
		e.Data = nil
		return e, nil // reported as an unknown type
	}
	p, addr := pc.new()
	if dataStart < 0 {
		e.Err = fmt.Errorf("missing data")
	} else {
		sub := &lexer{data: l.data[:dataEnd], pos: dataStart}
		if sub.null() {
			// encoding/json leaves the payload zero
		} else {
			e.Err = sub.value(pc.plan, addr)
		}
	}
	e.Data = p
	return e, nil
}
