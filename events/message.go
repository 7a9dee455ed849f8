package events

import "time"

// Message is one stored message of an instance's history as the event log
// holds it: the raw bytes of one commit, before decoding. A log fills Seq
// and Time when it stores the message; Append ignores them.
type Message struct {
	Seq    uint64              // stream sequence, > 0 once stored
	Time   time.Time           // when the log stored it
	MsgID  string              // Nats-Msg-Id: the commit id
	Header map[string][]string // message headers (see docs/EVENTS.md)
	Data   []byte              // the commit, JSON encoded
}

// Header names set on every commit message. Consumers can filter on them
// without decoding the payload.
const (
	HeaderMsgID   = "Nats-Msg-Id"    // the commit id (a ULID), for de-duplication
	HeaderSchema  = "Runlog-Schema"  // the schema version, "1"
	HeaderEvents  = "Runlog-Events"  // the commit's event types, in order, comma separated
	HeaderRun     = "Runlog-Run"     // the run id the commit leaves current (empty if none)
	HeaderCommand = "Runlog-Command" // the operation that made the decision, e.g. "prepare_run"

	// HeaderExpectedLastSeq is set by the JetStream log on every append
	// (the sequence the decision was made on) and kept with the message.
	HeaderExpectedLastSeq = "Nats-Expected-Last-Subject-Sequence"
)

// Scanned is a message read by a scan of a whole log (all instances, in
// log order), with the instance it was stored for.
type Scanned struct {
	Message
	// Instance is the id of the instance the message was stored for; ""
	// when InstanceErr is set.
	Instance string
	// Subject is the message's subject, where the log has subjects
	// (JetStream); "" otherwise.
	Subject string
	// InstanceErr is set when the message is not stored for an instance
	// (on JetStream: its subject is under the log's prefix but is not a
	// canonical instance subject, as when another program published it).
	InstanceErr error
}
