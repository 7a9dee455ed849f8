package feed

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
)

// Mode is how an event is put in a NATS message.
type Mode uint8

const (
	// Binary puts the attributes in ce- headers (values percent-encoded),
	// the data's content type in Content-Type and the data in the body:
	// the NATS protocol binding's binary content mode.
	Binary Mode = iota
	// Structured puts the whole event, as JSON, in the body, with
	// Content-Type application/cloudevents+json.
	Structured
)

func (m Mode) String() string {
	if m == Structured {
		return "structured"
	}
	return "binary"
}

// ParseMode reads "binary" or "structured".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "binary":
		return Binary, nil
	case "structured":
		return Structured, nil
	}
	return 0, fmt.Errorf("feed: mode %q: want binary or structured", s)
}

const (
	headerPrefix      = "ce-"
	headerContentType = "Content-Type"
)

var specs = spec.WithPrefix(headerPrefix)

// Message puts ev in a NATS message on subject, in mode. It writes through
// the CloudEvents SDK's binding machinery (binding.Write), as the SDK's own
// protocols do.
func Message(ctx context.Context, ev *event.Event, subject string, mode Mode) (*nats.Msg, error) {
	m := &nats.Msg{Subject: subject, Header: nats.Header{}}
	if mode == Structured {
		ctx = binding.WithForceStructured(ctx)
	} else {
		ctx = binding.WithForceBinary(ctx)
	}
	w := (*natsWriter)(m)
	if _, err := binding.Write(ctx, binding.ToMessage(ev), w, w); err != nil {
		return nil, fmt.Errorf("feed: write event %s: %w", ev.ID(), err)
	}
	return m, nil
}

type natsWriter nats.Msg

func (w *natsWriter) SetStructuredEvent(_ context.Context, f format.Format, r io.Reader) error {
	w.Header.Set(headerContentType, f.MediaType())
	return w.body(r)
}

func (w *natsWriter) Start(context.Context) error { return nil }
func (w *natsWriter) End(context.Context) error   { return nil }
func (w *natsWriter) SetData(r io.Reader) error   { return w.body(r) }

func (w *natsWriter) body(r io.Reader) error {
	b, err := io.ReadAll(r)
	w.Data = b
	return err
}

func (w *natsWriter) SetAttribute(a spec.Attribute, value any) error {
	name := headerPrefix + a.Name()
	if a.Kind() == spec.DataContentType {
		name = headerContentType
	}
	if value == nil {
		w.Header.Del(name)
		return nil
	}
	s, err := types.Format(value)
	if err != nil {
		return err
	}
	w.Header.Set(name, percentEncode(s))
	return nil
}

func (w *natsWriter) SetExtension(name string, value any) error {
	if value == nil {
		w.Header.Del(headerPrefix + name)
		return nil
	}
	s, err := types.Format(value)
	if err != nil {
		return err
	}
	w.Header.Set(headerPrefix+name, percentEncode(s))
	return nil
}

// percentEncode escapes what a header value must not carry as it is: the
// space, the double quote, the percent sign, and bytes outside printable
// ASCII (the binding's rule, after the HTTP binding's).
func percentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func percentDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("feed: bad percent-encoding in %q", s)
		}
		var c byte
		if _, err := fmt.Sscanf(s[i+1:i+3], "%02X", &c); err != nil {
			return "", fmt.Errorf("feed: bad percent-encoding in %q", s)
		}
		b.WriteByte(c)
		i += 2
	}
	return b.String(), nil
}

// ReadMessage reads the CloudEvent of a NATS message in either mode, with
// the SDK (binding.ToEvent): the receiving side of the feed for Go
// programs. A message that holds no CloudEvent is an error.
func ReadMessage(ctx context.Context, m *nats.Msg) (*event.Event, error) {
	ev, err := binding.ToEvent(ctx, (*natsMessage)(m))
	if err != nil {
		return nil, fmt.Errorf("feed: read %s: %w", m.Subject, err)
	}
	return ev, checkEvent(ev)
}

// natsMessage reads a NATS message as a binding.Message.
type natsMessage nats.Msg

func (m *natsMessage) ReadEncoding() binding.Encoding {
	if format.Lookup(m.Header.Get(headerContentType)) != nil {
		return binding.EncodingStructured
	}
	if m.Header.Get(specs.PrefixedSpecVersionName()) != "" {
		return binding.EncodingBinary
	}
	return binding.EncodingUnknown
}

func (m *natsMessage) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	f := format.Lookup(m.Header.Get(headerContentType))
	if f == nil {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, f, bytes.NewReader(m.Data))
}

func (m *natsMessage) ReadBinary(_ context.Context, w binding.BinaryWriter) error {
	version := specs.Version(m.Header.Get(specs.PrefixedSpecVersionName()))
	if version == nil {
		return binding.ErrNotBinary
	}
	for k, vs := range m.Header {
		if len(vs) == 0 {
			continue
		}
		v, err := percentDecode(vs[0])
		if err != nil {
			return err
		}
		switch {
		case k == headerContentType:
			err = w.SetAttribute(version.AttributeFromKind(spec.DataContentType), v)
		case strings.HasPrefix(k, headerPrefix):
			if a := version.Attribute(k); a != nil {
				err = w.SetAttribute(a, v)
			} else {
				err = w.SetExtension(strings.TrimPrefix(k, headerPrefix), v)
			}
		}
		if err != nil {
			return err
		}
	}
	if len(m.Data) > 0 {
		return w.SetData(bytes.NewReader(m.Data))
	}
	return nil
}

func (m *natsMessage) Finish(error) error { return nil }

// GetAttribute returns a binary-mode attribute (binding.MessageMetadataReader).
func (m *natsMessage) GetAttribute(k spec.Kind) (spec.Attribute, any) {
	version := specs.Version(m.Header.Get(specs.PrefixedSpecVersionName()))
	if version == nil {
		return nil, nil
	}
	a := version.AttributeFromKind(k)
	if a == nil {
		return nil, nil
	}
	name := headerPrefix + a.Name()
	if k == spec.DataContentType {
		name = headerContentType
	}
	v := m.Header.Get(name)
	if v == "" {
		return a, nil
	}
	s, err := percentDecode(v)
	if err != nil {
		return a, nil
	}
	return a, s
}

// GetExtension returns a binary-mode extension (binding.MessageMetadataReader).
func (m *natsMessage) GetExtension(name string) any {
	v := m.Header.Get(headerPrefix + name)
	if v == "" {
		return nil
	}
	s, err := percentDecode(v)
	if err != nil {
		return nil
	}
	return s
}
