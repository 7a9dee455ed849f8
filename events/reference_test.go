package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/workflow"
)

// referenceDecode is the reflection-based decoder Decode replaced
// (encoding/json with DisallowUnknownFields). The fast decoder must never
// accept what it refuses, and must decode what both accept identically.
// (It accepts field names in other letter cases, which the fast decoder
// refuses: runlog never writes them.)
func referenceDecode(m Message, instance string) (Record, error) {
	var w wireCommit
	dec := json.NewDecoder(bytes.NewReader(m.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Record{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return Record{}, fmt.Errorf("trailing data")
	}
	switch {
	case w.V <= 0 || w.V > SchemaVersion, w.ID.IsZero(), w.Instance == "", instance != "" && w.Instance != instance,
		len(w.Events) == 0, w.Time.IsZero(), m.MsgID != "" && m.MsgID != w.ID.String():
		return Record{}, fmt.Errorf("invalid envelope")
	}
	rec := Record{Seq: m.Seq, Stored: m.Time, Hash: workflow.Sha256(m.Data), Size: len(m.Data)}
	c := &rec.Commit
	c.ID, c.Instance, c.Time, c.Command, c.Actor = w.ID, w.Instance, w.Time, w.Command, w.Actor
	if w.Prev != "" {
		p, err := workflow.ParseHash32(w.Prev)
		if err != nil || p.IsZero() {
			return Record{}, fmt.Errorf("bad prev")
		}
		c.Prev = p
	}
	c.Events = make([]Event, len(w.Events))
	for i, we := range w.Events {
		newPayload, ok := registry[we.Type]
		if !ok || we.ID.IsZero() {
			return Record{}, fmt.Errorf("bad event")
		}
		p, _ := newPayload.new()
		d := json.NewDecoder(bytes.NewReader(we.Data))
		d.DisallowUnknownFields()
		if err := d.Decode(p); err != nil {
			return Record{}, err
		}
		e := Event{ID: we.ID, Type: we.Type, Data: p, Instance: w.Instance, Time: w.Time, Schema: w.V}
		if we.Run != nil {
			e.Run = *we.Run
		}
		c.Events[i] = e
	}
	return rec, nil
}

// FuzzDecodeMatchesReference checks runlog's decoder (the plans of codec.go) against
// encoding/json on arbitrary input, seeded with a commit of every type.
func FuzzDecodeMatchesReference(f *testing.F) {
	for _, m := range referenceSeeds(f) {
		f.Add(m.Data)
	}
	f.Add([]byte(`null`))
	f.Add([]byte(`{"v":1,"id":"01JDZ8Q5N3C7K2W4X6Y8Z0A1B2","instance":"i\u00e9\n","time":"2026-01-01T00:00:00Z","events":[{"id":"01JDZ8Q5N3C7K2W4X6Y8Z0A1B3","type":"signal.cleared","data":{"kind":"cancel","reason":null}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := Message{Seq: 7, Data: data}
		got, err := Decode(m, "")
		want, rerr := referenceDecode(m, "")
		if err == nil && rerr != nil {
			t.Fatalf("fast decoder accepts what encoding/json refuses (%v):\n%s", rerr, data)
		}
		if err != nil || rerr != nil {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoders disagree on\n%s\nfast:      %+v\nreference: %+v", data, got.Commit, want.Commit)
		}
		// Whatever decodes encodes to the bytes encoding/json writes.
		fast, ferr := encodeCommit(&got.Commit)
		ref, rerr := referenceEncode(&got.Commit)
		if (ferr == nil) != (rerr == nil) || ferr == nil && !bytes.Equal(fast, ref) {
			t.Fatalf("encoders disagree on\n%s\nfast:      %s (%v)\nreference: %s (%v)", data, fast, ferr, ref, rerr)
		}
	})
}

// referenceEncode is the encoding/json encoder encodeCommit replaced.
func referenceEncode(c *Commit) ([]byte, error) {
	w := wireCommit{V: SchemaVersion, ID: c.ID, Instance: c.Instance, Time: c.Time.UTC(), Command: c.Command, Actor: c.Actor}
	if !c.Prev.IsZero() {
		w.Prev = c.Prev.String()
	}
	w.Events = make([]wireEvent, len(c.Events))
	for i, e := range c.Events {
		data, err := json.Marshal(e.Data)
		if err != nil {
			return nil, err
		}
		w.Events[i] = wireEvent{ID: e.ID, Type: e.Type, Data: data}
		if !e.Run.IsZero() {
			r := e.Run
			w.Events[i].Run = &r
		}
	}
	return json.Marshal(&w)
}

func TestEncodeMatchesReference(t *testing.T) {
	for _, m := range referenceSeeds(t) {
		rec, err := Decode(m, "")
		if err != nil {
			t.Fatal(err)
		}
		fast, err := encodeCommit(&rec.Commit)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := referenceEncode(&rec.Commit)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast, ref) {
			t.Fatalf("encoders disagree\nfast:      %s\nreference: %s", fast, ref)
		}
	}
}

// TestDecodeMatchesReference runs the seeds without fuzzing.
func TestDecodeMatchesReference(t *testing.T) {
	for _, m := range referenceSeeds(t) {
		got, err := Decode(m, "")
		if err != nil {
			t.Fatal(err)
		}
		want, err := referenceDecode(m, "")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoders disagree on\n%s\nfast:      %+v\nreference: %+v", m.Data, got.Commit.Events[0].Data, want.Commit.Events[0].Data)
		}
	}
}

func referenceSeeds(tb testing.TB) []Message {
	at := time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)
	id := func(n byte) ulid.ULID { return ulid.ULID{0, 0, 0, 0, 0, 1, n} }
	tid := workflow.NewTaskID("t")
	next := workflow.NewTaskID("n")
	wake := at.Add(time.Hour)
	p3 := uint8(3)
	tp := "00-abc"
	pos := workflow.Position{Kind: workflow.AtSignal, NodeID: tid, SignalName: "go", WakeAt: &wake, NextTaskID: &next, Iteration: 2,
		EnteredAt: at, Branches: map[string]workflow.TaskResult{"a": {TaskID: tid, Output: []byte("x")}, "b\"q": {TaskID: next}}}
	payloads := []Payload{
		&SnapshotCreatedData{DefinitionHash: workflow.DefinitionHashOf("d"), Input: []byte(`{"a":1}`), FirstTask: workflow.TaskHint{ID: tid, Priority: &p3, Tags: []string{"gpu", "é"}}, Policy: "fail", TraceParent: tp},
		&SnapshotDeletedData{Reason: "x", DiscardedEvents: 3},
		&SignalStoredData{Kind: workflow.Pause, Reason: "r\u2028", RequestedBy: "b", RequestedAt: at},
		&SignalClearedData{Kind: workflow.Cancel, Reason: "applied"},
		&TaskCompletedData{TaskID: tid, Output: []byte{0, 1, 2, 255}},
		&CheckpointSavedData{Position: &pos, Completed: TaskOutputs{{Task: tid, Output: []byte("o")}, {Task: next, Output: []byte{}}}, Removed: []workflow.TaskID{next},
			LastCompletedTask: &tid, Hint: &HintChange{Priority: &p3, Tags: []string{"x"}}, Deadline: &workflow.TaskDeadline{TaskID: tid, Deadline: at, TimeoutMS: 5000},
			ClearDeadline: true, Retries: map[workflow.TaskID]workflow.TaskRetryState{tid: {Attempts: 2, Policy: workflow.RetryPolicy{MaxRetries: 5, InitialDelay: time.Second, BackoffMultiplier: 1.5, MaxDelay: time.Minute}, LastError: "e", LastFailedWorker: "w", NextRetryAt: at}},
			RemovedRetries: []workflow.TaskID{next}, Loops: map[workflow.TaskID]uint32{tid: 7}, RemovedLoops: []workflow.TaskID{next}, TraceParent: &tp},
		&CheckpointSavedData{},
		&WorkflowCompletedData{Output: []byte("done")},
		&WorkflowFailedData{Error: "boom <&>"},
		&WorkflowCancelledData{Reason: "r", By: "b", At: at, InterruptedAtTask: &tid},
		&WorkflowPausedData{Reason: "r", By: "b", At: at},
		&WorkflowUnpausedData{},
		&EventSentData{Name: "approval", Payload: []byte("yes")},
		&EventConsumedData{Name: "approval", EventID: id(9)},
		&TaskClaimedData{TaskID: tid, Worker: "w-1", TTLMS: 15000, TakenOver: &ClaimRef{Claim: id(10), Worker: "w-0"}},
		&TaskClaimedData{TaskID: tid, Worker: "w-1"},
		&TaskClaimReleasedData{TaskID: tid, Claim: id(11), Worker: "w-1", Reason: "released"},
	}
	var out []Message
	for i, p := range payloads {
		c := Commit{ID: id(byte(100 + i)), Instance: "inst.é", Time: at, Command: "cmd", Actor: "me", Prev: workflow.Sha256([]byte{byte(i)}),
			Events: []Event{{ID: id(byte(i + 1)), Type: p.EventType(), Run: id(200), Data: p}}}
		m, err := c.Encode()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}
