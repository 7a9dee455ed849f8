// Package feed maps runlog's events to CloudEvents 1.0 and runs a bridge
// that publishes every event of the log, as a CloudEvent, on a NATS
// subject: a long-lived process built on a durable subscription
// (jetstream.Log.Subscribe), so it resumes after a restart, never skips
// an event, and repeats only what it had not acknowledged.
//
// One commit becomes one CloudEvent per event, in order. The mapping
// (docs/INTEGRATION.md has the table of every type):
//
//	id               the event's ULID
//	source           /runlog/<stream>/<instance>   (path-escaped)
//	type             dev.runlog.<event type>        e.g. dev.runlog.workflow.completed
//	time             the commit's time
//	subject          the instance id
//	datacontenttype  application/json
//	data             the event's payload, as docs/EVENTS.md writes it
//	sequence         <stream sequence, 20 digits>.<event index, 4 digits>
//	traceparent      the run's W3C trace parent, when it has one
//	dataref          instead of data, when the payload exceeds MaxInline
//	runlogrun, runlogcommit, runlogcommand, runlogactor: the event's run,
//	                 its commit's id, command and actor
//
// On NATS the event goes in binary mode (ce- headers, Content-Type the
// data's type, the data as the body: the NATS protocol binding 1.0.3) or
// in structured mode (Content-Type application/cloudevents+json, the
// whole event as a JSON body: binding 1.0.2, which the CloudEvents Go
// SDK's NATS protocol reads).
package feed

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/runlog/runlog/events"
)

// TypePrefix is the prefix of every runlog CloudEvent type.
const TypePrefix = "dev.runlog."

// DefaultMaxInline is the largest payload an event carries inline.
const DefaultMaxInline = 64 << 10

// Extension attribute names.
const (
	ExtSequence    = "sequence"
	ExtTraceParent = "traceparent"
	ExtDataRef     = "dataref"
	ExtRun         = "runlogrun"
	ExtCommit      = "runlogcommit"
	ExtCommand     = "runlogcommand"
	ExtActor       = "runlogactor"
)

// Type returns the CloudEvent type of a runlog event type.
func Type(t events.Type) string { return TypePrefix + string(t) }

// EventType returns the runlog event type of a CloudEvent type, and
// whether it is one.
func EventType(ceType string) (events.Type, bool) {
	t, ok := strings.CutPrefix(ceType, TypePrefix)
	return events.Type(t), ok && events.Known(events.Type(t))
}

// Source returns the source of an instance's events in a stream.
func Source(stream, instance string) string {
	return "/runlog/" + url.PathEscape(stream) + "/" + url.PathEscape(instance)
}

// Sequence returns the sequence extension of the index-th event of the
// commit at seq: zero-padded, so that the events of a source sort by it as
// strings in log order.
func Sequence(seq uint64, index int) string { return fmt.Sprintf("%020d.%04d", seq, index) }

// DataRef returns the reference of a payload left out for its size: the
// commit's place in the log, which `replay show` (or a direct get of the
// sequence) reads.
func DataRef(stream, instance string, seq uint64, index int) string {
	return "runlog:" + url.PathEscape(stream) + "/" + url.PathEscape(instance) + "?seq=" + strconv.FormatUint(seq, 10) + "&event=" + strconv.Itoa(index)
}

// Options configure the mapping.
type Options struct {
	// Stream names the log in sources and data references: the store's
	// stream name (jetstream.Config.Stream), "RUNLOG" by default.
	Stream string
	// MaxInline is the largest payload carried as data; a larger one is
	// left out and referenced by dataref. 0: DefaultMaxInline; negative:
	// always inline.
	MaxInline int
}

// Events maps a commit to its CloudEvents, one per event, in order.
// traceParent is the W3C trace parent of the commit's run (the
// snapshot's trace_parent), or "".
func Events(rec events.Record, traceParent string, opts Options) ([]cloudevents.Event, error) {
	if opts.Stream == "" {
		opts.Stream = "RUNLOG"
	}
	if opts.MaxInline == 0 {
		opts.MaxInline = DefaultMaxInline
	}
	c := &rec.Commit
	out := make([]cloudevents.Event, 0, len(c.Events))
	for i, e := range c.Events {
		ev := cloudevents.NewEvent(cloudevents.VersionV1)
		ev.SetID(e.ID.String())
		ev.SetSource(Source(opts.Stream, c.Instance))
		ev.SetType(Type(e.Type))
		ev.SetTime(c.Time)
		ev.SetSubject(c.Instance)
		ev.SetExtension(ExtSequence, Sequence(rec.Seq, i))
		ev.SetExtension(ExtCommit, c.ID.String())
		if !e.Run.IsZero() {
			ev.SetExtension(ExtRun, e.Run.String())
		}
		if c.Command != "" {
			ev.SetExtension(ExtCommand, c.Command)
		}
		if c.Actor != "" {
			ev.SetExtension(ExtActor, c.Actor)
		}
		if traceParent != "" {
			ev.SetExtension(ExtTraceParent, traceParent)
		}
		data, err := json.Marshal(e.Data)
		if err != nil {
			return nil, fmt.Errorf("feed: event %d of commit %s: %w", i, c.ID, err)
		}
		if opts.MaxInline > 0 && len(data) > opts.MaxInline {
			ev.SetExtension(ExtDataRef, DataRef(opts.Stream, c.Instance, rec.Seq, i))
			ev.SetDataContentType(cloudevents.ApplicationJSON)
		} else if err := ev.SetData(cloudevents.ApplicationJSON, json.RawMessage(data)); err != nil {
			return nil, fmt.Errorf("feed: event %d of commit %s: %w", i, c.ID, err)
		}
		if err := ev.Validate(); err != nil {
			return nil, fmt.Errorf("feed: event %d of commit %s is not a valid CloudEvent: %w", i, c.ID, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// TraceParent follows the trace parent of an instance's run through its
// commits: the one a commit sets, else prev.
func TraceParent(rec events.Record, prev string) string {
	for _, e := range rec.Commit.Events {
		switch d := e.Data.(type) {
		case *events.SnapshotCreatedData:
			prev = d.TraceParent
		case *events.CheckpointSavedData:
			if d.TraceParent != nil {
				prev = *d.TraceParent
			}
		case *events.SnapshotDeletedData:
			prev = ""
		}
	}
	return prev
}

// errNoEvent is returned by ReadMessage for a NATS message that is no
// CloudEvent.
var errNoEvent = errors.New("feed: not a CloudEvent")

// checkEvent is what a receiver checks of an event read back.
func checkEvent(ev *event.Event) error {
	if ev == nil {
		return errNoEvent
	}
	return ev.Validate()
}
