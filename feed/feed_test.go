package feed_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/feed"
	"github.com/runlog/runlog/internal/golden"
	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// fixture decodes the v1 fixture commit of an event type.
func fixture(t *testing.T, name string) events.Record {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "events", "testdata", "v1", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := events.Decode(events.Message{Seq: 42, Data: bytes.TrimSpace(data)}, "")
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return rec
}

// TestMappingGolden maps the v1 fixture commit of every event type (and
// the three-event commit of a TerminateExisting) to CloudEvents: the
// structured JSON of each is a golden file, every event is valid, and
// each type maps back.
func TestMappingGolden(t *testing.T) {
	names := []string{"terminate_existing"}
	for _, ty := range events.Types() {
		names = append(names, string(ty))
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			rec := fixture(t, name)
			evs, err := feed.Events(rec, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", feed.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != len(rec.Commit.Events) {
				t.Fatalf("%d CloudEvents for %d events", len(evs), len(rec.Commit.Events))
			}
			var out bytes.Buffer
			for i, ev := range evs {
				if err := ev.Validate(); err != nil {
					t.Fatal(err)
				}
				if ty, ok := feed.EventType(ev.Type()); !ok || ty != rec.Commit.Events[i].Type {
					t.Errorf("type %q maps back to %q, %v", ev.Type(), ty, ok)
				}
				b, err := json.MarshalIndent(ev, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				out.Write(b)
				out.WriteByte('\n')
			}
			golden.Check(t, filepath.Join("testdata", name+".json"), out.Bytes())
		})
	}
}

// TestMessageModes writes a CloudEvent to a NATS message in each mode
// and reads it back with the SDK's binding: the same event, with
// percent-encoded header values in binary mode; a payload over MaxInline
// is referenced, not inlined.
func TestMessageModes(t *testing.T) {
	rec := fixture(t, "signal.stored")
	rec.Commit.Actor = `alice "ops" 100% é`
	evs, err := feed.Events(rec, "", feed.Options{Stream: "RUN LOG"})
	if err != nil {
		t.Fatal(err)
	}
	ev := evs[0]
	for _, mode := range []feed.Mode{feed.Binary, feed.Structured} {
		t.Run(mode.String(), func(t *testing.T) {
			m, err := feed.Message(t.Context(), &ev, "events.runlog", mode)
			if err != nil {
				t.Fatal(err)
			}
			switch mode {
			case feed.Binary:
				if m.Header.Get("ce-id") != ev.ID() || m.Header.Get("Content-Type") != "application/json" || !strings.Contains(m.Header.Get("ce-runlogactor"), "%22ops%22%20100%25") {
					t.Errorf("binary headers %v", m.Header)
				}
			case feed.Structured:
				if m.Header.Get("Content-Type") != "application/cloudevents+json" || len(m.Header) != 1 {
					t.Errorf("structured headers %v", m.Header)
				}
			}
			got, err := feed.ReadMessage(t.Context(), m)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(got)
			b, _ := json.Marshal(ev)
			if !bytes.Equal(a, b) {
				t.Errorf("read back\n%s\nwant\n%s", a, b)
			}
		})
	}
	big := fixture(t, "task.completed")
	evs, err = feed.Events(big, "", feed.Options{MaxInline: 8})
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].Data() != nil || evs[0].Extensions()[feed.ExtDataRef] != feed.DataRef("RUNLOG", big.Commit.Instance, 42, 0) {
		t.Errorf("an event over MaxInline: data %s, extensions %v", evs[0].Data(), evs[0].Extensions())
	}
	if _, err := feed.ReadMessage(t.Context(), natsMsg("not an event")); err == nil {
		t.Error("a plain message read as a CloudEvent")
	}
}

// TestBridge runs the bridge into a JetStream stream that captures the
// feed's subject: every event of the store is published once, in order
// per instance, valid, with the run's trace parent; a second bridge run
// under the same name publishes only what came after; the events are
// read back with the SDK.
func TestBridge(t *testing.T) {
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv)
	ctx := t.Context()
	s, err := jetstream.Open(ctx, nc, jetstream.Config{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	st, err := lifecycle.New(s, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "FEED", Subjects: []string{"feed.runlog"}}); err != nil {
		t.Fatal(err)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	write := func(prefix string) {
		for i := range 5 {
			id := prefix + "-" + string(rune('a'+i))
			if _, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: workflow.DefinitionHashOf("d"),
				FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("t")}, TraceParent: tp}); err != nil {
				t.Fatal(err)
			}
			if err := st.StoreSignal(ctx, id, workflow.Cancel, workflow.SignalRequest{Reason: "stop"}); err != nil {
				t.Fatal(err)
			}
			if ok, err := st.CheckAndCancel(ctx, id, nil); err != nil || !ok {
				t.Fatal(ok, err)
			}
		}
	}
	countEvents := func() int {
		n := 0
		for id, err := range s.AllInstances(ctx, "") {
			if err != nil {
				t.Fatal(err)
			}
			for m, err := range s.Read(ctx, id, 0) {
				if err != nil {
					t.Fatal(err)
				}
				rec, err := events.Decode(m, id)
				if err != nil {
					t.Fatal(err)
				}
				n += len(rec.Commit.Events)
			}
		}
		return n
	}
	runBridge := func(want int) {
		bctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var mu sync.Mutex
		published := 0
		done := make(chan error, 1)
		go func() {
			done <- feed.Run(bctx, s, feed.BridgeOptions{Subject: "feed.runlog", Conn: nc, Published: func(*event.Event) { mu.Lock(); published++; mu.Unlock() }})
		}()
		deadline := time.Now().Add(20 * time.Second)
		for {
			info, err := js.Stream(ctx, "FEED")
			if err != nil {
				t.Fatal(err)
			}
			if int(info.CachedInfo().State.Msgs) >= want || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		cancel()
		if err := <-done; err != nil && err != context.Canceled {
			t.Fatal(err)
		}
	}
	write("one")
	runBridge(countEvents())
	write("two")
	runBridge(countEvents())

	// Read the stream back: every event once, valid, in order per
	// instance, with the trace parent.
	cons, err := js.OrderedConsumer(ctx, "FEED", natsjs.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	lastSeq := map[string]string{}
	total := countEvents()
	for range total {
		m, err := cons.Next(natsjs.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("after %d events: %v", len(seen), err)
		}
		ev, err := feed.ReadMessage(ctx, natsMsgOf(m))
		if err != nil {
			t.Fatal(err)
		}
		if seen[ev.ID()] {
			t.Fatalf("event %s published twice", ev.ID())
		}
		seen[ev.ID()] = true
		seq, _ := ev.Extensions()[feed.ExtSequence].(string)
		if seq <= lastSeq[ev.Subject()] {
			t.Fatalf("%s: sequence %s after %s", ev.Subject(), seq, lastSeq[ev.Subject()])
		}
		lastSeq[ev.Subject()] = seq
		if ev.Extensions()[feed.ExtTraceParent] != tp {
			t.Errorf("%s %s: traceparent %v", ev.Subject(), ev.Type(), ev.Extensions()[feed.ExtTraceParent])
		}
		if ev.DataContentType() != cloudevents.ApplicationJSON || ev.Source() != feed.Source("RUNLOG", ev.Subject()) {
			t.Errorf("event %+v", ev)
		}
	}
	if len(seen) != total {
		t.Fatalf("%d events read, want %d", len(seen), total)
	}
}

func natsMsg(body string) *nats.Msg {
	return &nats.Msg{Subject: "x", Header: nats.Header{}, Data: []byte(body)}
}

// natsMsgOf is a JetStream message as a plain one.
func natsMsgOf(m natsjs.Msg) *nats.Msg {
	return &nats.Msg{Subject: m.Subject(), Header: nats.Header(m.Headers()), Data: m.Data()}
}

// TestDocumentedTypes holds docs/INTEGRATION.md's table of event types to
// the vocabulary: every type has its row with its CloudEvent type, and the
// table has no other.
func TestDocumentedTypes(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "INTEGRATION.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for line := range strings.Lines(string(doc)) {
		f := strings.Split(strings.TrimSpace(line), "|")
		if len(f) != 4 || !strings.HasPrefix(strings.TrimSpace(f[2]), "`"+feed.TypePrefix) || strings.Contains(f[2], "<") {
			continue
		}
		rows[strings.Trim(strings.TrimSpace(f[1]), "`")] = strings.Trim(strings.TrimSpace(f[2]), "`")
	}
	for _, ty := range events.Types() {
		if got := rows[string(ty)]; got != feed.Type(ty) {
			t.Errorf("docs/INTEGRATION.md: %s maps to %q, want a row with %q", ty, got, feed.Type(ty))
		}
		delete(rows, string(ty))
	}
	for k := range rows {
		t.Errorf("docs/INTEGRATION.md lists %q, which is no event type", k)
	}
}
