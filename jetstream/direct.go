package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Direct gets, read by hand.
//
// A direct get's reply carries the message's stored headers followed by
// the ones the server adds (Nats-Stream, Nats-Subject, Nats-Sequence,
// Nats-Time-Stamp and, in a batched get, Nats-Num-Pending and
// Nats-Last-Sequence: nats-server's getDirectRequest appends them with
// genHeader). nats.go and jetstreamext read the first value of each, so a
// message published with a Nats-Sequence header of its own is returned
// with the publisher's sequence instead of the server's: a forged
// sequence or time, an instance that can never be written again (every
// append expects the forged sequence), a batched read that stops early on
// a forged Nats-Num-Pending, and a value that does not parse makes the
// whole instance unreadable. runlog therefore sends its direct gets
// itself and takes the server's value, the last one, of each header the
// server adds; what is left is the stored header, forged values included,
// for audits to report (see events.ServerHeaders).

// The headers the server appends to a direct get reply.
var (
	directHeaders = []string{natsjs.StreamHeader, natsjs.SubjectHeader, natsjs.SequenceHeader, natsjs.TimeStampHeaer}
	batchHeaders  = append(append([]string(nil), directHeaders...), "Nats-Num-Pending", "Nats-Last-Sequence")
)

// directMsg is one message of a direct get reply: what the server says
// of it, and the message as stored.
type directMsg struct {
	seq     uint64
	time    time.Time
	subject string
	pending uint64      // batched gets: matching messages left after this one
	header  nats.Header // the stored headers; nil when none
	data    []byte
}

// directStatus is a status reply of a direct get: 404 (no message), 204
// (end of a batch), 408, 503, ...
type directStatus struct {
	code, description string
}

func (e *directStatus) Error() string {
	if e.description == "" {
		return "direct get: status " + e.code
	}
	return "direct get: status " + e.code + " " + e.description
}

// parseDirect splits a direct get reply into the server's facts and the
// stored message. A reply without a Nats-Sequence header is a status
// (every message reply has the server's), returned as a *directStatus.
func parseDirect(m *nats.Msg, batch bool) (directMsg, error) {
	if len(m.Header[natsjs.SequenceHeader]) == 0 {
		st := &directStatus{code: m.Header.Get("Status"), description: m.Header.Get("Description")}
		if st.code == "" {
			return directMsg{}, fmt.Errorf("direct get: a reply with neither a message nor a status (%d bytes)", len(m.Data))
		}
		return directMsg{}, st
	}
	names := directHeaders
	if batch {
		names = batchHeaders
	}
	// The reply is this read's own: its header map becomes the stored
	// headers, the server's values taken out of it.
	stored := m.Header
	var server [6]string
	for i, name := range names {
		vs := stored[name]
		if len(vs) == 0 {
			return directMsg{}, fmt.Errorf("direct get: the reply has no %s header", name)
		}
		server[i] = vs[len(vs)-1]
		if len(vs) == 1 {
			delete(stored, name)
		} else {
			stored[name] = vs[: len(vs)-1 : len(vs)-1]
		}
	}
	if len(stored) == 0 {
		stored = nil
	}
	// server holds the values in the order of directHeaders and
	// batchHeaders: stream, subject, sequence, time, pending, last.
	d := directMsg{subject: server[1], header: stored, data: m.Data}
	var err error
	if d.seq, err = strconv.ParseUint(server[2], 10, 64); err != nil || d.seq == 0 {
		return directMsg{}, fmt.Errorf("direct get: bad sequence %q in the reply", server[2])
	}
	if d.time, err = time.Parse(time.RFC3339Nano, server[3]); err != nil {
		return directMsg{}, fmt.Errorf("direct get: bad time %q in the reply", server[3])
	}
	if batch {
		if d.pending, err = strconv.ParseUint(server[4], 10, 64); err != nil {
			return directMsg{}, fmt.Errorf("direct get: bad Nats-Num-Pending %q in the reply", server[4])
		}
	}
	return d, nil
}

// directRequest is the body of a direct get request (the server's
// JSApiMsgGetRequest).
type directRequest struct {
	Seq        uint64 `json:"seq,omitempty"`
	NextBySubj string `json:"next_by_subj,omitempty"`
	Batch      int    `json:"batch,omitempty"`
}

// directStatusErr turns a status reply into the error callers check:
// 404 matches natsjs.ErrMsgNotFound, 503 nats.ErrNoResponders (no server
// answers for the stream), 408 nats.ErrTimeout.
func directStatusErr(st *directStatus) error {
	switch st.code {
	case "404":
		return fmt.Errorf("%w (%v)", natsjs.ErrMsgNotFound, st)
	case "503":
		return fmt.Errorf("%w (%v)", nats.ErrNoResponders, st)
	case "408":
		return fmt.Errorf("%w (%v)", nats.ErrTimeout, st)
	}
	return st
}

// directLast returns the last message on subject (a literal subject),
// with a direct get. No message gives an error matching
// natsjs.ErrMsgNotFound.
func (s *Log) directLast(ctx context.Context, p *partition, subject string) (directMsg, error) {
	reply, err := s.nc.RequestWithContext(ctx, s.apiSubject("DIRECT.GET."+p.name+"."+subject), nil)
	if err != nil {
		return directMsg{}, err
	}
	return s.directReply(reply, false)
}

// directNext returns the first message with a sequence of at least seq
// on filter (wildcards allowed), with a direct get. No such message gives
// an error matching natsjs.ErrMsgNotFound.
func (s *Log) directNext(ctx context.Context, p *partition, seq uint64, filter string) (directMsg, error) {
	body, err := json.Marshal(directRequest{Seq: seq, NextBySubj: filter})
	if err != nil {
		return directMsg{}, err
	}
	reply, err := s.nc.RequestWithContext(ctx, s.apiSubject("DIRECT.GET."+p.name), body)
	if err != nil {
		return directMsg{}, err
	}
	return s.directReply(reply, false)
}

func (s *Log) directReply(reply *nats.Msg, batch bool) (directMsg, error) {
	d, err := parseDirect(reply, batch)
	if st, ok := errors.AsType[*directStatus](err); ok {
		return directMsg{}, directStatusErr(st)
	}
	return d, err
}

// directBatch sends one batched direct get of up to batch messages on
// filter from sequence seq, and calls fn with each message of the reply
// until the server ends the batch, the last matching message has come
// (pending 0), fn returns false (errStopped), or ctx is done (returned as
// is: a batch cut short while messages were flowing is not an error for
// the caller, who goes on from the last message). It returns how many
// messages came (-1: filter has none from seq), the pending count and
// sequence of the last one.
func (s *Log) directBatch(ctx context.Context, p *partition, filter string, seq uint64, batch int, fn func(directMsg) bool) (n int, pending, last uint64, err error) {
	body, err := json.Marshal(directRequest{Seq: seq, NextBySubj: filter, Batch: batch})
	if err != nil {
		return 0, 0, 0, err
	}
	next, end, err := s.replies.request(s.apiSubject("DIRECT.GET."+p.name), body)
	if err != nil {
		return 0, 0, 0, err
	}
	defer end()
	for {
		m, err := next(ctx)
		if err != nil {
			return n, pending, last, err
		}
		d, err := parseDirect(m, true)
		if st, ok := errors.AsType[*directStatus](err); ok {
			switch {
			case st.code == "204": // end of the batch
				return n, pending, last, nil
			case st.code == "404" && n == 0:
				return -1, 0, 0, nil
			case st.code == "404":
				return n, pending, last, nil
			}
			return n, pending, last, directStatusErr(st)
		}
		if err != nil {
			return n, pending, last, err
		}
		n++
		pending, last = d.pending, d.seq
		if !fn(d) {
			return n, pending, last, errStopped
		}
		if pending == 0 {
			return n, pending, last, nil
		}
	}
}
