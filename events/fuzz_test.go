package events

import (
	"errors"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/workflow"
)

// FuzzDecode feeds arbitrary payloads to Decode: it must never panic, every
// error must be a *DecodeError naming the sequence, and whatever decodes
// must encode back to a message that decodes to the same commit.
func FuzzDecode(f *testing.F) {
	c := Commit{ID: ulid.MustParse("01JDZ8Q5N3C7K2W4X6Y8Z0A1B2"), Instance: "i", Time: time.Unix(1, 0).UTC(), Command: "prepare_run",
		Events: []Event{{ID: ulid.MustParse("01JDZ8Q5N3C7K2W4X6Y8Z0A1B3"), Type: SnapshotCreated, Run: ulid.MustParse("01JDZ8Q5N3C7K2W4X6Y8Z0A1B4"),
			Data: &SnapshotCreatedData{DefinitionHash: workflow.DefinitionHashOf("d"), Input: []byte("x")}}}}
	m, err := c.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(m.Data, "i")
	f.Add([]byte(`{"v":1}`), "i")
	f.Add([]byte(`{"v":2,"id":"01JDZ8Q5N3C7K2W4X6Y8Z0A1B2"}`), "")
	f.Add([]byte("\x00\xff garbage"), "i")
	f.Add([]byte(`{"v":1,"id":"01JDZ8Q5N3C7K2W4X6Y8Z0A1B2","instance":"i","time":"2026-01-01T00:00:00Z","events":[{"id":"01JDZ8Q5N3C7K2W4X6Y8Z0A1B3","type":"nope","data":{}}]}`), "i")
	f.Fuzz(func(t *testing.T, data []byte, instance string) {
		rec, err := Decode(Message{Seq: 42, Data: data}, instance)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Seq != 42 || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not a *DecodeError naming seq 42", err)
			}
			return
		}
		again, err := rec.Commit.Encode()
		if err != nil {
			t.Fatalf("a decoded commit does not encode: %v", err)
		}
		rec2, err := Decode(again, instance)
		if err != nil {
			t.Fatalf("re-encoded commit does not decode: %v", err)
		}
		if rec2.Commit.ID != rec.Commit.ID || len(rec2.Commit.Events) != len(rec.Commit.Events) || rec2.Commit.Instance != rec.Commit.Instance {
			t.Fatalf("round trip changed the commit")
		}
	})
}
