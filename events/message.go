package events

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Message is one stored message of an instance's history as the event log
// holds it: the raw bytes of one commit, before decoding. A log fills Seq
// and Time when it stores the message; Append ignores them.
type Message struct {
	Seq    uint64              // stream sequence, > 0 once stored
	Time   time.Time           // when the log stored it
	MsgID  string              // Nats-Msg-Id: the commit id
	Header map[string][]string // message headers (see docs/EVENTS.md)
	Data   []byte              // the commit, JSON encoded
	// AfterSeq is the sequence the append of this message expected as the
	// instance's last (0 for its first message), when AfterKnown: the log
	// checked it, so no message of the instance lies between AfterSeq and
	// Seq. A log sets both when it reads a message back if it recorded the
	// expectation (memlog always, the JetStream log from the expected
	// last subject sequence the server checked); Append ignores them.
	AfterSeq   uint64
	AfterKnown bool
}

// Header names set on every commit message. Consumers can filter on them
// without decoding the payload.
const (
	HeaderMsgID   = "Nats-Msg-Id"    // the commit id (a ULID), for de-duplication
	HeaderSchema  = "Runlog-Schema"  // the schema version, "1"
	HeaderEvents  = "Runlog-Events"  // the commit's event types, in order, comma separated
	HeaderRun     = "Runlog-Run"     // the run id the commit leaves current (empty if none)
	HeaderCommand = "Runlog-Command" // the operation that made the decision, e.g. "prepare_run"

)

// Scanned is a message read by a scan of a whole log (all instances, in
// log order, partition after partition in a partitioned log), with the
// instance it was stored for.
type Scanned struct {
	Message
	// Partition is the partition of the log that holds the message: 0 in
	// a log of one partition. Sequences are positions within a
	// partition.
	Partition int
	// Instance is the id of the instance the message was stored for; ""
	// when InstanceErr is set.
	Instance string
	// InstanceErr is set when the message is not stored for an instance
	// (on JetStream: its subject is under the log's prefix but is not a
	// canonical instance subject, as when another program published it;
	// the error names the subject).
	InstanceErr error
}

// ServerHeaders are the headers a NATS server adds to the messages it
// delivers (direct gets, batched gets, republished and consumed messages):
// the stream, subject, sequence and time it stored a message with, and the
// counts of a batched read. They are never part of a stored commit. A
// stored message that carries one was published by someone who tried to
// pass off a sequence or time of their own: readers take these facts only
// from the server (the JetStream log reads the values the server appends
// after the stored headers), [Log] implementations refuse to append such a
// message with [ErrReservedHeader], and audits report one. Names are
// compared case-insensitively, as NATS header names are by most clients.
var ServerHeaders = []string{
	"Nats-Stream",
	"Nats-Subject",
	"Nats-Sequence",
	"Nats-Time-Stamp",
	"Nats-Num-Pending",
	"Nats-Last-Sequence",
	"Nats-UpTo-Sequence",
	"Nats-Msg-Size",
	"Nats-Last-Consumer",
	"Nats-Last-Stream",
	"Nats-Pending-Messages",
	"Nats-Pending-Bytes",
}

// ErrReservedHeader is matched by the error a log returns for a message
// that carries one of [ServerHeaders]; nothing is stored.
var ErrReservedHeader = errors.New("events: header reserved for the server")

// IsServerHeader reports whether name is one of [ServerHeaders], in any
// letter case.
func IsServerHeader(name string) bool {
	// Every server header starts with "Nats-": most names are dismissed
	// on their first five bytes (this runs on every append).
	if len(name) < 6 || !strings.EqualFold(name[:5], "nats-") {
		return false
	}
	for _, h := range ServerHeaders {
		if strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}

// ReservedHeaders returns the names of h that are [ServerHeaders], sorted,
// or nil.
func ReservedHeaders(h map[string][]string) []string {
	var names []string
	for k := range h {
		if IsServerHeader(k) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return names
}

// CheckHeaders returns an error matching [ErrReservedHeader], naming them,
// when h carries any of [ServerHeaders].
func CheckHeaders(h map[string][]string) error {
	if names := ReservedHeaders(h); len(names) > 0 {
		return fmt.Errorf("%w: %s set by the publisher (the server sets it on what it delivers; a stored copy would pass off a sequence or time of its own)", ErrReservedHeader, strings.Join(names, ", "))
	}
	return nil
}
