package main

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	cenats "github.com/cloudevents/sdk-go/protocol/nats/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/client"
	"github.com/nats-io/nats.go"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/feed"
	"github.com/runlog/runlog/internal/natstest"
)

// TestFeedCloudEvents runs 'replay feed' over the demo's histories into
// a separate NATS server: in structured mode the CloudEvents Go SDK's
// NATS receiver parses every event; in binary mode (another subscription
// name) feed.ReadMessage reads every one back; each event once, of a
// runlog type, in order per instance. Interrupted, the bridge exits 0.
func TestFeedCloudEvents(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	var sv statsView
	if err := json.Unmarshal([]byte(mustRun(t, "stats", "--dir", dir, "-o", "json").stdout), &sv); err != nil {
		t.Fatal(err)
	}
	target := natstest.StartListening(t)
	nc := natstest.Connect(t, target)

	type got struct {
		mu   sync.Mutex
		evs  []cloudevents.Event
		errs []error
	}
	check := func(t *testing.T, g *got) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if len(g.errs) > 0 {
			t.Fatalf("%d events did not parse: %v", len(g.errs), g.errs[0])
		}
		ids := map[string]bool{}
		last := map[string]string{}
		for _, ev := range g.evs {
			if err := ev.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, ok := feed.EventType(ev.Type()); !ok {
				t.Errorf("type %q is not a runlog type", ev.Type())
			}
			if ids[ev.ID()] {
				t.Errorf("event %s received twice", ev.ID())
			}
			ids[ev.ID()] = true
			seq, _ := ev.Extensions()[feed.ExtSequence].(string)
			if seq <= last[ev.Subject()] {
				t.Errorf("%s: sequence %s after %s", ev.Subject(), seq, last[ev.Subject()])
			}
			last[ev.Subject()] = seq
		}
	}
	runFeed := func(t *testing.T, g *got, args ...string) {
		fctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var out, errb syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- run(fctx, append([]string{"feed", "--dir", dir, "--cloudevents", "--to", "events.runlog", "--to-server", target.ClientURL()}, args...), &out, &errb)
		}()
		waitFor(t, "every event", func() bool {
			g.mu.Lock()
			defer g.mu.Unlock()
			if len(g.evs)+len(g.errs) >= int(sv.Events) {
				return true
			}
			select {
			case code := <-done:
				t.Fatalf("feed exited %d early:\n%s", code, errb.String())
			default:
			}
			return false
		})
		time.Sleep(200 * time.Millisecond)
		cancel()
		if code := <-done; code != exitOK {
			t.Fatalf("interrupted feed exited %d:\n%s", code, errb.String())
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if len(g.evs) != int(sv.Events) {
			t.Errorf("received %d events, the store has %d", len(g.evs), sv.Events)
		}
	}

	t.Run("structured, SDK receiver", func(t *testing.T) {
		p, err := cenats.NewConsumerFromConn(nc, "events.runlog")
		if err != nil {
			t.Fatal(err)
		}
		// One poller and a blocking callback: the SDK hands the events to
		// the callback in the order they arrive (by default it runs
		// callbacks concurrently).
		c, err := cloudevents.NewClient(p, client.WithPollGoroutines(1), client.WithBlockingCallback())
		if err != nil {
			t.Fatal(err)
		}
		var g got
		rctx, stop := context.WithCancel(t.Context())
		defer stop()
		go func() {
			_ = c.StartReceiver(rctx, func(ev cloudevents.Event) {
				g.mu.Lock()
				defer g.mu.Unlock()
				g.evs = append(g.evs, ev)
			})
		}()
		time.Sleep(200 * time.Millisecond) // the receiver subscribes
		runFeed(t, &g, "--mode", "structured", "--name", "structured")
		check(t, &g)
	})
	t.Run("binary, feed.ReadMessage", func(t *testing.T) {
		var g got
		sub, err := nc.Subscribe("events.runlog", func(m *nats.Msg) {
			ev, err := feed.ReadMessage(context.Background(), m)
			g.mu.Lock()
			defer g.mu.Unlock()
			if err != nil {
				g.errs = append(g.errs, err)
				return
			}
			g.evs = append(g.evs, *ev)
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		runFeed(t, &g, "--mode", "binary", "--name", "binary")
		check(t, &g)
		for _, ev := range g.evs {
			if ev.Type() == feed.Type(events.SnapshotCreated) && ev.Extensions()[feed.ExtRun] == nil {
				t.Errorf("a created event without its run: %v", ev)
			}
		}
	})
	r := replay(t, "feed", "--dir", dir, "--to", "x")
	if r.code != exitUsage {
		t.Errorf("feed without --cloudevents: exit %d", r.code)
	}
}
