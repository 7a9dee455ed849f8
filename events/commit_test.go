package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/workflow"
)

func TestSamplesCoverEveryType(t *testing.T) {
	t.Parallel()
	s := samples()
	for _, typ := range events.Types() {
		p, ok := s[typ]
		if !ok {
			t.Errorf("no sample payload for %q: add one to samples() and a golden fixture (go test ./events -run Golden -update)", typ)
			continue
		}
		if p.EventType() != typ {
			t.Errorf("sample for %q has type %q", typ, p.EventType())
		}
		if !events.Known(typ) {
			t.Errorf("Known(%q) = false", typ)
		}
	}
	if len(s) != len(events.Types()) {
		t.Errorf("%d samples for %d types", len(s), len(events.Types()))
	}
	if events.Known("bogus.type") || events.Known("") {
		t.Error("Known accepts an unknown type")
	}
}

func TestRoundTripEachType(t *testing.T) {
	t.Parallel()
	for _, typ := range events.Types() {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			c := single(typ)
			msg, err := c.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			msg.Seq = 42
			msg.Time = fixedTime.Add(time.Millisecond)
			rec, err := events.Decode(msg, c.Instance)
			if err != nil {
				t.Fatalf("Decode: %v\npayload: %s", err, msg.Data)
			}
			if want := withEnvelope(c); !reflect.DeepEqual(rec.Commit, want) {
				t.Errorf("round trip differs:\n got %+v\nwant %+v", rec.Commit, want)
				for i := range rec.Commit.Events {
					t.Logf("event %d payload: got %+v want %+v", i, rec.Commit.Events[i].Data, want.Events[i].Data)
				}
			}
			if rec.Seq != 42 || !rec.Stored.Equal(msg.Time) || rec.Size != len(msg.Data) || rec.Hash != workflow.Sha256(msg.Data) {
				t.Errorf("record envelope: seq %d stored %v size %d hash %v", rec.Seq, rec.Stored, rec.Size, rec.Hash)
			}
			// Decoding again and re-encoding gives the same bytes.
			again, err := rec.Commit.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Data, msg.Data) {
				t.Errorf("re-encode differs:\n%s\n%s", msg.Data, again.Data)
			}
		})
	}
}

func TestRoundTripMultiEvent(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]events.Commit{"terminate_existing": terminateExisting(), "minimal": minimal()} {
		msg, err := c.Encode()
		if err != nil {
			t.Fatalf("%s: Encode: %v", name, err)
		}
		rec, err := events.Decode(msg, "")
		if err != nil {
			t.Fatalf("%s: Decode: %v", name, err)
		}
		if want := withEnvelope(c); !reflect.DeepEqual(rec.Commit, want) {
			t.Errorf("%s: round trip differs:\n got %+v\nwant %+v", name, rec.Commit, want)
		}
		if rec.Commit.Run() != c.Run() {
			t.Errorf("%s: Run() = %v, want %v", name, rec.Commit.Run(), c.Run())
		}
	}
}

func TestEncodeTimeIsUTC(t *testing.T) {
	t.Parallel()
	c := minimal()
	c.Time = fixedTime.In(time.FixedZone("CET", 3600))
	msg, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(msg.Data, []byte(`"time":"2026-03-01T12:30:45.123456789Z"`)) {
		t.Errorf("time not written in UTC with nanoseconds: %s", msg.Data)
	}
	rec, err := events.Decode(msg, "")
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Commit.Time.Equal(fixedTime) {
		t.Errorf("time = %v, want %v", rec.Commit.Time, fixedTime)
	}
}

func TestEncodeHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		commit events.Commit
		want   map[string]string // "" value: header must be absent
	}{
		{
			name:   "terminate existing",
			commit: terminateExisting(),
			want: map[string]string{
				events.HeaderMsgID:   uid(10).String(),
				events.HeaderSchema:  "1",
				events.HeaderEvents:  "snapshot.deleted,signal.cleared,signal.cleared,snapshot.created",
				events.HeaderRun:     run2.String(),
				events.HeaderCommand: "prepare_run",
			},
		},
		{
			name:   "first commit has no prev",
			commit: minimal(),
			want: map[string]string{
				events.HeaderMsgID:   uid(20).String(),
				events.HeaderSchema:  "1",
				events.HeaderEvents:  "snapshot.created",
				events.HeaderRun:     uid(22).String(),
				events.HeaderCommand: "",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg, err := tt.commit.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if msg.MsgID != tt.commit.ID.String() {
				t.Errorf("MsgID = %q, want the commit id %q", msg.MsgID, tt.commit.ID)
			}
			for k, v := range tt.want {
				got, ok := msg.Header[k]
				if v == "" {
					if ok {
						t.Errorf("header %s = %q, want it absent", k, got)
					}
					continue
				}
				if !slices.Equal(got, []string{v}) {
					t.Errorf("header %s = %q, want [%q]", k, got, v)
				}
			}
			if msg.Seq != 0 || !msg.Time.IsZero() {
				t.Error("Encode set Seq or Time")
			}
			if got := strings.Join(typeStrings(tt.commit.Types()), ","); got != tt.want[events.HeaderEvents] {
				t.Errorf("Types() = %s", got)
			}
		})
	}
	// A commit whose events have no run has no run header.
	c := minimal()
	c.Events[0].Run = ulid.ULID{}
	msg, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := msg.Header[events.HeaderRun]; ok {
		t.Error("Runlog-Run set for a commit without a run")
	}
}

func typeStrings(ts []events.Type) []string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return s
}

type bogusPayload struct{}

func (*bogusPayload) EventType() events.Type { return "bogus.type" }

func TestEncodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *events.Commit)
	}{
		{"no events", func(c *events.Commit) { c.Events = nil }},
		{"zero commit id", func(c *events.Commit) { c.ID = ulid.ULID{} }},
		{"zero event id", func(c *events.Commit) { c.Events[0].ID = ulid.ULID{} }},
		{"nil payload", func(c *events.Commit) { c.Events[0].Data = nil }},
		{"payload of another type", func(c *events.Commit) { c.Events[0].Type = events.SnapshotDeleted }},
		{"unknown type", func(c *events.Commit) { c.Events[0].Type, c.Events[0].Data = "bogus.type", &bogusPayload{} }},
		{"invalid signal kind", func(c *events.Commit) {
			c.Events[0].Type, c.Events[0].Data = events.SignalStored, &events.SignalStoredData{Kind: 0}
		}},
		{"second event bad", func(c *events.Commit) {
			c.Events = append(c.Events, events.Event{ID: uid(99), Type: events.SignalCleared, Data: &events.SnapshotDeletedData{}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := minimal()
			tt.mutate(&c)
			msg, err := c.Encode()
			if !errors.Is(err, events.ErrInvalidCommit) {
				t.Fatalf("Encode = %v, want ErrInvalidCommit", err)
			}
			if msg.Data != nil || msg.Header != nil {
				t.Error("Encode returned a message with its error")
			}
		})
	}
}

// TestEncodeOutputAlwaysDecodes: whatever Encode accepts, Decode must
// accept, or a writer could append a commit that makes the instance's
// history unreadable for ever.
func TestEncodeOutputAlwaysDecodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *events.Commit)
	}{
		{"minimal", func(c *events.Commit) {}},
		{"empty instance", func(c *events.Commit) { c.Instance = "" }},
		{"zero time", func(c *events.Commit) { c.Time = time.Time{} }},
		{"time before 1970", func(c *events.Commit) { c.Time = time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC) }},
		{"empty command and actor", func(c *events.Commit) { c.Command, c.Actor = "", "" }},
		{"unicode instance", func(c *events.Commit) { c.Instance = "commande-été.*>日本 語" }},
		{"empty payload", func(c *events.Commit) {
			c.Events[0].Type, c.Events[0].Data = events.SnapshotDeleted, &events.SnapshotDeletedData{}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := minimal()
			tt.mutate(&c)
			msg, err := c.Encode()
			if err != nil {
				if !errors.Is(err, events.ErrInvalidCommit) {
					t.Fatalf("Encode = %v, not ErrInvalidCommit", err)
				}
				return // refused up front: fine
			}
			if _, err := events.Decode(msg, ""); err != nil {
				t.Errorf("Encode accepted a commit that Decode refuses: %v\npayload: %s", err, msg.Data)
			}
		})
	}
}

// wire returns the JSON of a valid commit as a generic map, to be broken.
func wire(t *testing.T) map[string]any {
	t.Helper()
	c := terminateExisting()
	msg, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(msg.Data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func event(m map[string]any, i int) map[string]any {
	return m["events"].([]any)[i].(map[string]any)
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	const seq = 4242
	type tc struct {
		name     string
		data     func(t *testing.T) []byte
		msgID    string // "" means the commit id of terminateExisting
		instance string
		event    int // the event index the error names, -1 for the commit
		typ      events.Type
		says     string // fragment of the message
		cause    error  // the sentinel the error wraps (ErrNewerSchema, ErrForeignCommit), nil for neither
	}
	raw := func(s string) func(*testing.T) []byte { return func(*testing.T) []byte { return []byte(s) } }
	edit := func(f func(m map[string]any)) func(*testing.T) []byte {
		return func(t *testing.T) []byte {
			m := wire(t)
			f(m)
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	valid := edit(func(map[string]any) {})
	tests := []tc{
		{name: "garbage bytes", data: raw("\x00\x01\xfe garbage"), event: -1, says: "not a runlog commit"},
		{name: "empty data", data: raw(""), event: -1, says: "not a runlog commit"},
		{name: "JSON array", data: raw("[1,2]"), event: -1, says: "not a runlog commit"},
		{name: "JSON null", data: raw("null"), event: -1},
		{name: "truncated", data: func(t *testing.T) []byte { b := valid(t); return b[:len(b)/2] }, event: -1, says: "not a runlog commit"},
		{name: "trailing data", data: func(t *testing.T) []byte { return append(valid(t), []byte(` {}`)...) }, event: -1, says: "trailing data"},
		{name: "unknown event type", data: edit(func(m map[string]any) { event(m, 1)["type"] = "signal.exploded" }), event: 1, typ: "signal.exploded", says: `unknown event type "signal.exploded"`},
		{name: "newer schema version", data: edit(func(m map[string]any) { m["v"] = events.SchemaVersion + 1 }), event: -1, says: "newer", cause: events.ErrNewerSchema},
		{name: "much newer schema version", data: edit(func(m map[string]any) { m["v"] = 1000 }), event: -1, says: "newer", cause: events.ErrNewerSchema},
		{name: "newer schema version with a field this reader does not know", data: edit(func(m map[string]any) { m["v"] = events.SchemaVersion + 1; m["shard"] = 3 }), event: -1, says: "upgrade runlog", cause: events.ErrNewerSchema},
		{name: "unknown field at this schema version", data: edit(func(m map[string]any) { m["shard"] = 3 }), event: -1, says: "shard"},
		{name: "missing version", data: edit(func(m map[string]any) { delete(m, "v") }), event: -1, says: "missing schema version"},
		{name: "zero version", data: edit(func(m map[string]any) { m["v"] = 0 }), event: -1, says: "missing schema version"},
		{name: "negative version", data: edit(func(m map[string]any) { m["v"] = -1 }), event: -1},
		{name: "version as string", data: edit(func(m map[string]any) { m["v"] = "1" }), event: -1},
		{name: "commit for another instance", data: valid, instance: "order-43", event: -1, says: `"order-42"`, cause: events.ErrForeignCommit},
		{name: "Msg-Id does not match commit id", data: valid, msgID: uid(999).String(), event: -1, says: "Nats-Msg-Id"},
		{name: "unknown commit field", data: edit(func(m map[string]any) { m["extra"] = true }), event: -1, says: "extra"},
		{name: "unknown event field", data: edit(func(m map[string]any) { event(m, 0)["extra"] = 1 }), event: -1, says: "extra"},
		{name: "unknown payload field", data: edit(func(m map[string]any) { event(m, 3)["data"].(map[string]any)["extra"] = 1 }), event: 3, typ: events.SnapshotCreated, says: "extra"},
		{name: "no events", data: edit(func(m map[string]any) { m["events"] = []any{} }), event: -1, says: "no events"},
		{name: "events missing", data: edit(func(m map[string]any) { delete(m, "events") }), event: -1, says: "no events"},
		{name: "bad prev hash", data: edit(func(m map[string]any) { m["prev"] = "not-a-hash" }), event: -1, says: "prev"},
		{name: "short prev hash", data: edit(func(m map[string]any) { m["prev"] = prevHash.String()[:63] }), event: -1, says: "prev"},
		{name: "zero prev hash", data: edit(func(m map[string]any) { m["prev"] = strings.Repeat("0", 64) }), event: -1, says: "zero hash"},
		{name: "missing commit id", data: edit(func(m map[string]any) { delete(m, "id") }), event: -1, says: "missing commit id"},
		{name: "bad commit id", data: edit(func(m map[string]any) { m["id"] = "nope" }), event: -1},
		{name: "missing instance", data: edit(func(m map[string]any) { delete(m, "instance") }), event: -1, says: "missing instance"},
		{name: "missing time", data: edit(func(m map[string]any) { delete(m, "time") }), event: -1, says: "missing commit time"},
		{name: "bad time", data: edit(func(m map[string]any) { m["time"] = "yesterday" }), event: -1},
		{name: "missing event id", data: edit(func(m map[string]any) { delete(event(m, 2), "id") }), event: 2, typ: events.SignalCleared, says: "missing event id"},
		{name: "bad run id", data: edit(func(m map[string]any) { event(m, 0)["run"] = "nope" }), event: -1},
		{name: "payload not an object", data: edit(func(m map[string]any) { event(m, 0)["data"] = "text" }), event: 0, typ: events.SnapshotDeleted, says: "payload"},
		{name: "payload missing", data: edit(func(m map[string]any) { delete(event(m, 0), "data") }), event: 0, typ: events.SnapshotDeleted, says: "payload"},
		{name: "invalid signal kind", data: edit(func(m map[string]any) { event(m, 1)["data"].(map[string]any)["kind"] = "stop" }), event: 1, typ: events.SignalCleared, says: "payload"},
		{name: "bad definition hash", data: edit(func(m map[string]any) { event(m, 3)["data"].(map[string]any)["definition_hash"] = "abc" }), event: 3, typ: events.SnapshotCreated, says: "payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msgID := tt.msgID
			if msgID == "" {
				msgID = uid(10).String()
			}
			instance := tt.instance
			if instance == "" {
				instance = "order-42"
			}
			data := tt.data(t)
			rec, err := events.Decode(events.Message{Seq: seq, MsgID: msgID, Data: data}, instance)
			if err == nil {
				t.Fatalf("Decode(%s) = nil error, want a *DecodeError", data)
			}
			if !errors.Is(err, events.ErrCorrupt) {
				t.Errorf("errors.Is(%v, ErrCorrupt) = false", err)
			}
			de, ok := errors.AsType[*events.DecodeError](err)
			if !ok {
				t.Fatalf("error %T is not a *DecodeError: %v", err, err)
			}
			if de.Seq != seq {
				t.Errorf("DecodeError.Seq = %d, want %d", de.Seq, seq)
			}
			if !strings.Contains(err.Error(), "seq 4242") {
				t.Errorf("error %q does not name the sequence", err)
			}
			if de.Event != tt.event {
				t.Errorf("DecodeError.Event = %d, want %d (%v)", de.Event, tt.event, err)
			}
			if de.Type != tt.typ {
				t.Errorf("DecodeError.Type = %q, want %q", de.Type, tt.typ)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %q does not say %q", err, tt.says)
			}
			for _, c := range []error{events.ErrNewerSchema, events.ErrForeignCommit} {
				if got := errors.Is(err, c); got != (c == tt.cause) {
					t.Errorf("errors.Is(%v, %q) = %v, want %v", err, c, got, !got)
				}
			}
			if de.Err == nil || errors.Unwrap(err) != de.Err {
				t.Error("DecodeError does not unwrap to its cause")
			}
			if !reflect.DeepEqual(rec, events.Record{}) {
				t.Errorf("Decode returned a record with its error: %+v", rec)
			}
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	t.Parallel()
	c := terminateExisting()
	msg, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		msg      events.Message
		instance string
	}{
		{"any instance", msg, ""},
		{"its instance", msg, "order-42"},
		{"no Msg-Id (a log without one)", events.Message{Data: msg.Data}, "order-42"},
		{"trailing whitespace", events.Message{MsgID: msg.MsgID, Data: append(append([]byte{}, msg.Data...), " \n"...)}, ""},
		{"uppercase prev", events.Message{MsgID: msg.MsgID, Data: bytes.Replace(msg.Data, []byte(prevHash.String()), []byte(strings.ToUpper(prevHash.String())), 1)}, ""},
	}
	for _, tt := range tests {
		rec, err := events.Decode(tt.msg, tt.instance)
		if err != nil {
			t.Errorf("%s: Decode = %v", tt.name, err)
			continue
		}
		if rec.Commit.Prev != prevHash || rec.Commit.Instance != "order-42" || len(rec.Commit.Events) != 4 {
			t.Errorf("%s: decoded %+v", tt.name, rec.Commit)
		}
		if rec.Hash != workflow.Sha256(tt.msg.Data) {
			t.Errorf("%s: record hash %s, want the payload's", tt.name, rec.Hash)
		}
		// DecodeHashed takes the hash instead of computing it, and
		// decodes the same.
		hashed, err := events.DecodeHashed(tt.msg, tt.instance, rec.Hash)
		if err != nil || !reflect.DeepEqual(hashed, rec) {
			t.Errorf("%s: DecodeHashed = %+v, %v; want %+v", tt.name, hashed, err, rec)
		}
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	t.Parallel()
	e := &events.DecodeError{Seq: 7, Event: 2, Type: events.SignalStored, Err: errors.New("boom")}
	if got, want := e.Error(), "events: message seq 7 event 2 (signal.stored): boom"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	e = &events.DecodeError{Seq: 7, Event: -1, Err: errors.New("boom")}
	if got, want := e.Error(), "events: message seq 7: boom"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestIDSource(t *testing.T) {
	t.Parallel()
	now := fixedTime
	src := events.NewIDSource(func() time.Time { return now }, bytes.NewReader(bytes.Repeat([]byte{1}, 1024)))
	var last ulid.ULID
	for i := range 100 {
		id, at, err := src.New()
		if err != nil {
			t.Fatal(err)
		}
		if !at.Equal(now) || id.Time() != ulid.Timestamp(now) {
			t.Fatalf("id %d: time %v, ulid time %d", i, at, id.Time())
		}
		if id.Compare(last) <= 0 {
			t.Fatalf("ids not strictly increasing: %v after %v", id, last)
		}
		last = id
		next, err := src.Next(now)
		if err != nil || next.Compare(last) <= 0 {
			t.Fatalf("Next = %v, %v after %v", next, err, last)
		}
		last = next
	}
}
