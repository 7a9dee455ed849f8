package projection_test

import (
	"fmt"
	"iter"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/workflow"
)

// Deterministic fixtures: fixed ULIDs, a fixed clock, sequences that
// advance by 10 (a stream shared with other instances).

const inst = "order-42"

var (
	t0    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	run1  = uid(901)
	run2  = uid(902)
	run3  = uid(903)
	def   = workflow.DefinitionHashOf("order-workflow@1")
	taskA = workflow.NewTaskID("charge")
	taskB = workflow.NewTaskID("ship")
)

func uid(n int) ulid.ULID { return ulid.MustParse(fmt.Sprintf("01JQ%022d", n)) }

func ptr[T any](v T) *T { return &v }

func created(run ulid.ULID, input string) events.Event {
	return events.Event{Type: events.SnapshotCreated, Run: run, Data: &events.SnapshotCreatedData{
		DefinitionHash: def, Input: []byte(input),
		FirstTask: workflow.TaskHint{ID: taskA, Priority: ptr[uint8](2), Tags: []string{"gpu"}},
		Policy:    "fail", TraceParent: "00-trace",
	}}
}

func deleted(run ulid.ULID) events.Event {
	return events.Event{Type: events.SnapshotDeleted, Run: run, Data: &events.SnapshotDeletedData{Reason: "test"}}
}

func stored(run ulid.ULID, k workflow.SignalKind, reason string) events.Event {
	return events.Event{Type: events.SignalStored, Run: run, Data: &events.SignalStoredData{
		Kind: k, Reason: reason, RequestedBy: "ops", RequestedAt: t0,
	}}
}

func cleared(run ulid.ULID, k workflow.SignalKind) events.Event {
	return events.Event{Type: events.SignalCleared, Run: run, Data: &events.SignalClearedData{Kind: k, Reason: "terminate_existing"}}
}

// history builds a valid hash-chained history of one instance.
type history struct {
	t        *testing.T
	instance string
	msgs     []events.Message
	head     workflow.Hash32
	seq      uint64
	ids      int
	at       time.Time
}

func newHistory(t *testing.T) *history {
	return &history{t: t, instance: inst, seq: 0, ids: 100, at: t0}
}

// message encodes a commit of evs with the given prev, sequence and time.
func (h *history) message(seq uint64, prev workflow.Hash32, at time.Time, evs ...events.Event) events.Message {
	h.t.Helper()
	h.ids++
	c := events.Commit{ID: uid(h.ids), Instance: h.instance, Time: at, Command: "test", Prev: prev}
	for _, e := range evs {
		h.ids++
		e.ID = uid(h.ids)
		c.Events = append(c.Events, e)
	}
	msg, err := c.Encode()
	if err != nil {
		h.t.Fatalf("encode: %v", err)
	}
	msg.Seq, msg.Time = seq, at
	return msg
}

// add appends a valid commit (next sequence, chained, a minute later).
func (h *history) add(evs ...events.Event) events.Message {
	h.t.Helper()
	h.seq += 10
	msg := h.message(h.seq, h.head, h.at, evs...)
	h.head = workflow.Sha256(msg.Data)
	h.msgs = append(h.msgs, msg)
	h.at = h.at.Add(time.Minute)
	return msg
}

// next returns the record of the commit that add would append, without
// appending it.
func (h *history) next(evs ...events.Event) events.Record {
	h.t.Helper()
	return decode(h.t, h.message(h.seq+10, h.head, h.at, evs...))
}

func decode(t *testing.T, m events.Message) events.Record {
	t.Helper()
	rec, err := events.Decode(m, "")
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return rec
}

func seqOf(msgs []events.Message) iter.Seq2[events.Message, error] {
	return func(yield func(events.Message, error) bool) {
		for _, m := range msgs {
			if !yield(m, nil) {
				return
			}
		}
	}
}

// withError yields msgs, then err.
func withError(msgs []events.Message, err error) iter.Seq2[events.Message, error] {
	return func(yield func(events.Message, error) bool) {
		for _, m := range msgs {
			if !yield(m, nil) {
				return
			}
		}
		yield(events.Message{}, err)
	}
}
