package jetstream

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

func TestParsePubAck(t *testing.T) {
	ok := []struct {
		in   string
		want pubAck
	}{
		{`{"stream":"RUNLOG","seq":42}`, pubAck{Stream: "RUNLOG", Seq: 42}},
		{`{"stream":"RUNLOG","seq":7,"duplicate":true}`, pubAck{Stream: "RUNLOG", Seq: 7, Duplicate: true}},
		{`{"stream":"S","seq":1,"domain":"hub","duplicate":false}`, pubAck{Stream: "S", Seq: 1}},
		{`{"stream":"S","seq":18446744073709551615}`, pubAck{Stream: "S", Seq: 1<<64 - 1}},
		{`{ "stream": "S", "seq": 3 }`, pubAck{Stream: "S", Seq: 3}},     // white space: encoding/json
		{`{"stream":"a\u0042c","seq":3}`, pubAck{Stream: "aBc", Seq: 3}}, // escape: encoding/json
	}
	for _, c := range ok {
		got, err := parsePubAck([]byte(c.in))
		if err != nil || got != c.want {
			t.Errorf("parsePubAck(%s) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}

	// An API error comes back as *natsjs.APIError, its code intact.
	got, err := parsePubAck([]byte(`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"},"stream":"RUNLOG","seq":0}`))
	var apiErr *natsjs.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != natsjs.JSErrCodeStreamWrongLastSequence || got != (pubAck{}) {
		t.Errorf("error answer: %+v, %v; want API error 10071", got, err)
	}
	if _, ok := wrongSequence(err); !ok {
		t.Errorf("wrongSequence(%v) = false", err)
	}

	for _, bad := range []string{``, `{}`, `{"seq":1}`, `{"stream":"S"}`, `not json`, `{"stream":"S","seq":-1}`, `{"stream":"S","seq":18446744073709551616}`, `[1]`} {
		if got, err := parsePubAck([]byte(bad)); !errors.Is(err, natsjs.ErrInvalidJSAck) {
			t.Errorf("parsePubAck(%q) = %+v, %v; want ErrInvalidJSAck", bad, got, err)
		}
	}
}

// FuzzParsePubAck holds the hand-read path to encoding/json: whatever it
// accepts, encoding/json reads the same way.
func FuzzParsePubAck(f *testing.F) {
	for _, s := range []string{`{"stream":"RUNLOG","seq":42}`, `{"stream":"RUNLOG","seq":7,"duplicate":true}`, `{"stream":"S","seq":1,"domain":"hub"}`, `{"stream":"S","seq":1,"x":false,"y":"z"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := parseFlatPubAck(data)
		if !ok {
			return
		}
		var want pubAck
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("hand-read %q as %+v; encoding/json refuses it: %v", data, got, err)
		}
		if got != want {
			t.Fatalf("hand-read %q as %+v; encoding/json reads %+v", data, got, want)
		}
	})
}

// wireSize counts what nats.go sends.
func TestWireSize(t *testing.T) {
	for _, h := range []nats.Header{nil, {}, {"A": {"1"}}, {"Nats-Msg-Id": {"01JDZ8Q5N3C7K2W4X6Y8Z0A1E0"}, "Runlog-Events": {"a,b"}, "Multi": {"x", "yy"}}} {
		m := &nats.Msg{Subject: "s", Header: h, Data: []byte("data")}
		if got, want := wireSize(h, m.Data), m.Size()-len(m.Subject); got != want {
			t.Errorf("wireSize(%v) = %d, nats.go's size %d", h, got, want)
		}
	}
}
