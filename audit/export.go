package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/runlog/runlog/events"
)

// ExportVersion is the version of the export format [Export] writes and
// [Import] reads (the "runlog_export" field of the first line).
const ExportVersion = 1

// ExportOptions configures [Export]. The zero value exports every
// instance.
type ExportOptions struct {
	// IDs are the instances to export, in this order; empty means every
	// instance of the source, in the order of its AllInstances if it is a
	// [Scanner] (jetstream.Log: the order of the subjects), else of
	// Source.Instances.
	IDs []string
	// PageSize is the number of ids asked per Source.Instances call; 0
	// means 1000.
	PageSize int
	// Now stamps the first line's "created"; nil means time.Now.
	Now func() time.Time
	// Progress, if set, is called after every instance and every few
	// thousand messages of a long one, on Export's goroutine.
	Progress func(Progress)
}

// ExportStats counts what [Export] wrote.
type ExportStats struct {
	Instances int `json:"instances"` // instances exported (with at least one message)
	Messages  int `json:"messages"`  // message lines written
	Bytes     int `json:"bytes"`     // payload bytes exported
	Base64    int `json:"base64"`    // messages whose payload was written as data_b64
}

// fileHeader is the first line of an export.
type fileHeader struct {
	Version int       `json:"runlog_export"`
	Created time.Time `json:"created"`
	Schema  int       `json:"schema"`
}

// fileLine is one message line of an export.
type fileLine struct {
	Instance string              `json:"instance"`
	Seq      uint64              `json:"seq"`
	Time     time.Time           `json:"time"`
	MsgID    string              `json:"msg_id"`
	Headers  map[string][]string `json:"headers,omitempty"`
	Data     json.RawMessage     `json:"data,omitempty"`
	DataB64  *[]byte             `json:"data_b64,omitempty"`
}

// Export writes the messages of the chosen instances to w as NDJSON (the
// format is described in the package documentation), instance after
// instance, each in sequence order. It streams: memory does not grow with
// the number of instances or messages. The history is exported as it is,
// damaged or not: run [Verify] to check it, [Import] checks it before
// writing anything. Errors are the source's (wrapped, naming the
// instance), w's, or ctx's; stats count what was written until then.
func Export(ctx context.Context, src Source, w io.Writer, opts ExportOptions) (ExportStats, error) {
	var st ExportStats
	if err := validateIDs(opts.IDs); err != nil {
		return st, fmt.Errorf("audit: export: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false) // embedded payloads must keep their bytes
	if err := enc.Encode(fileHeader{Version: ExportVersion, Created: now().UTC(), Schema: events.SchemaVersion}); err != nil {
		return st, fmt.Errorf("audit: export: %w", err)
	}
	total := distinct(opts.IDs)
	progress := func(id string) {
		if opts.Progress != nil {
			opts.Progress(Progress{Phase: "export", Instances: st.Instances, Total: total, Messages: st.Messages, Bytes: st.Bytes, Instance: id})
		}
	}
	var compact bytes.Buffer
	err := instanceIDs(ctx, src, opts.IDs, opts.PageSize, func(id string) error {
		n := 0
		for m, err := range src.Read(ctx, id, 0) {
			if err != nil {
				return fmt.Errorf("read %q: %w", id, err)
			}
			line := fileLine{Instance: id, Seq: m.Seq, Time: m.Time.UTC(), MsgID: m.MsgID, Headers: exportHeaders(m.Header)}
			if embeddable(m.Data, &compact) {
				line.Data = m.Data
			} else {
				d := m.Data
				if d == nil {
					d = []byte{}
				}
				line.DataB64 = &d
				st.Base64++
			}
			if err := enc.Encode(&line); err != nil {
				return err
			}
			n++
			st.Messages++
			st.Bytes += len(m.Data)
			if n%progressEvery == 0 {
				progress(id)
			}
		}
		if n > 0 {
			st.Instances++
		}
		progress(id)
		return nil
	})
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return st, fmt.Errorf("audit: export: %w", err)
	}
	return st, nil
}

// embeddable reports whether data can be written as raw JSON and read
// back byte for byte: a valid UTF-8 JSON object that compacting leaves
// unchanged (encoding/json output is).
func embeddable(data []byte, buf *bytes.Buffer) bool {
	if len(data) == 0 || data[0] != '{' || !utf8.Valid(data) {
		return false
	}
	buf.Reset()
	if err := json.Compact(buf, data); err != nil {
		return false
	}
	return bytes.Equal(buf.Bytes(), data)
}

// expectedHeaderPrefix marks the publish checks JetStream stores with a
// message (Nats-Expected-Stream, Nats-Expected-Last-Subject-Sequence, ...):
// they name the source stream's sequences and are not exported.
// batchHeaderPrefix marks the headers of an atomic batch publish
// (Nats-Batch-Id, -Sequence, -Commit: a group commit's, see
// jetstream.Config.GroupCommit): they describe how the message was
// published, and published again they would open a batch.
const (
	expectedHeaderPrefix = "nats-expected-"
	batchHeaderPrefix    = "nats-batch-"
)

func exportHeaders(h map[string][]string) map[string][]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string][]string, len(h))
	for k, v := range h {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, expectedHeaderPrefix) || strings.HasPrefix(lk, batchHeaderPrefix) {
			continue
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
