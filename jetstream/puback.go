package jetstream

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// pubAck is the part of the server's answer to a publish that Append
// uses.
type pubAck struct {
	Stream    string           `json:"stream"`
	Seq       uint64           `json:"seq"`
	Duplicate bool             `json:"duplicate"`
	Error     *natsjs.APIError `json:"error"`
}

// parsePubAck reads the server's answer to a publish: the stored
// sequence, or the API error (returned as a *natsjs.APIError, as nats.go
// returns it). The common answer, a flat object such as
// {"stream":"RUNLOG","seq":42} or with "duplicate":true, is read by hand;
// anything else (an error, an escaped string, a nested value) goes
// through encoding/json.
func parsePubAck(data []byte) (pubAck, error) {
	if a, ok := parseFlatPubAck(data); ok {
		return a, nil
	}
	var a pubAck
	if err := json.Unmarshal(data, &a); err != nil {
		return pubAck{}, fmt.Errorf("%w: %q", natsjs.ErrInvalidJSAck, data)
	}
	if a.Error != nil {
		return pubAck{}, fmt.Errorf("nats: %w", a.Error)
	}
	if a.Stream == "" || a.Seq == 0 { // a stored message has a sequence
		return pubAck{}, fmt.Errorf("%w: %q", natsjs.ErrInvalidJSAck, data)
	}
	return a, nil
}

// parseFlatPubAck reads an object of ASCII string, unsigned integer and
// boolean members without escapes or white space, the form the server
// writes acknowledgements in. It reports false for anything else.
func parseFlatPubAck(d []byte) (pubAck, bool) {
	var a pubAck
	if len(d) < 2 || d[0] != '{' || d[len(d)-1] != '}' {
		return a, false
	}
	i := 1
	// str reads a string without escapes starting at d[i] == '"'.
	str := func() ([]byte, bool) {
		if i >= len(d) || d[i] != '"' {
			return nil, false
		}
		j := i + 1
		for j < len(d) && d[j] != '"' {
			if d[j] == '\\' || d[j] < 0x20 || d[j] >= 0x80 {
				return nil, false // an escape, a control or a non-ASCII byte
			}
			j++
		}
		if j >= len(d) {
			return nil, false
		}
		s := d[i+1 : j]
		i = j + 1
		return s, true
	}
	seenSeq := false // a duplicated key is left to encoding/json
	for i < len(d)-1 {
		key, ok := str()
		if !ok || i >= len(d) || d[i] != ':' {
			return a, false
		}
		i++
		if i >= len(d) {
			return a, false
		}
		switch c := d[i]; {
		case c == '"':
			v, ok := str()
			if !ok {
				return a, false
			}
			if string(key) == "stream" {
				a.Stream = string(v)
			}
		case c >= '0' && c <= '9':
			if c == '0' && i+1 < len(d) && d[i+1] >= '0' && d[i+1] <= '9' {
				return a, false // a leading zero
			}
			var n uint64
			for i < len(d) && d[i] >= '0' && d[i] <= '9' {
				if n > (1<<64-1)/10-1 {
					return a, false
				}
				n = n*10 + uint64(d[i]-'0')
				i++
			}
			if string(key) == "seq" {
				a.Seq, seenSeq = n, true
			}
		case c == 't' && len(d)-i >= 4 && string(d[i:i+4]) == "true":
			i += 4
			if string(key) == "duplicate" {
				a.Duplicate = true
			}
		case c == 'f' && len(d)-i >= 5 && string(d[i:i+5]) == "false":
			i += 5
		default:
			return a, false // an error object, a nested value, white space
		}
		if i < len(d)-1 {
			if d[i] != ',' || i+1 >= len(d)-1 {
				return a, false // not a comma, or a trailing one
			}
			i++
		}
	}
	if i != len(d)-1 || a.Stream == "" || !seenSeq || a.Seq == 0 {
		return a, false
	}
	return a, true
}

// wireSize is the size of m's headers and data as the server counts them
// against its max payload: the NATS/1.0 header block, as nats.go writes
// it, plus the data.
func wireSize(h nats.Header, data []byte) int {
	n := 0
	if len(h) > 0 {
		n = len("NATS/1.0\r\n") + len("\r\n")
		for k, vs := range h {
			for _, v := range vs {
				n += len(k) + len(": ") + len(v) + len("\r\n")
			}
		}
	}
	return n + len(data)
}
