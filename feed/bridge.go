package feed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/projection"
)

// BridgeOptions configure [Run].
type BridgeOptions struct {
	// Subject is the NATS subject the events are published on; required.
	Subject string
	// Mode is the content mode (Binary by default).
	Mode Mode
	// Conn is the connection to publish on: the store's own
	// (jetstream.Log.Conn) or one to another NATS system.
	Conn *nats.Conn
	// Name is the durable subscription's name; default "cloudevents".
	// Two bridges with one name share the work (jetstream.Log.Subscribe).
	Name string
	// Mapping configures the mapping; its Stream defaults to the store's.
	Mapping Options
	// Subscribe configures the subscription (start, filters, retries).
	Subscribe jetstream.SubscribeOptions
	// Published, when set, is called for each event published.
	Published func(ev *event.Event)
	// Logger receives the bridge's notices; default slog.Default().
	Logger *slog.Logger
}

// Run publishes every event of the store's log as a CloudEvent on
// opts.Subject until ctx ends (it then returns ctx's error).
//
// When a JetStream stream captures the subject, each event is published
// to it and acknowledged, with the event's id as Nats-Msg-Id, so the
// stream's de-duplication drops the repeats of a commit published again
// after a restart; a commit is acknowledged to the subscription only once
// all its events are. Otherwise the events go on core NATS, delivered to
// the subscribers connected at the time (NATS has no acknowledgement
// there): the bridge then guarantees only that it published each event
// at least once.
func Run(ctx context.Context, store *jetstream.Log, opts BridgeOptions) error {
	if opts.Subject == "" || opts.Conn == nil {
		return fmt.Errorf("%w: feed: the bridge needs a Subject and a Conn", jetstream.ErrInvalidConfig)
	}
	if opts.Name == "" {
		opts.Name = "cloudevents"
	}
	if opts.Mapping.Stream == "" {
		opts.Mapping.Stream = store.Stream()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	js, err := natsjs.New(opts.Conn)
	if err != nil {
		return err
	}
	durable := true
	if _, err := js.StreamNameBySubject(ctx, opts.Subject); errors.Is(err, natsjs.ErrStreamNotFound) {
		durable = false
		opts.Logger.Warn("feed: no JetStream stream captures the subject: events go on core NATS, to the subscribers connected at the time",
			slog.String("subject", opts.Subject))
	} else if err != nil {
		return fmt.Errorf("feed: look up the stream of %s: %w", opts.Subject, err)
	}
	b := &bridge{store: store, opts: opts, js: js, durable: durable, traces: map[string]string{}}
	return store.Subscribe(ctx, opts.Name, opts.Subscribe, b.handle)
}

type bridge struct {
	store   *jetstream.Log
	opts    BridgeOptions
	js      natsjs.JetStream
	durable bool

	mu     sync.Mutex
	traces map[string]string // instance → its run's trace parent, as of the last commit handled
}

func (b *bridge) handle(ctx context.Context, d jetstream.Delivery) error {
	tp, err := b.traceParent(ctx, d)
	if err != nil {
		return err
	}
	evs, err := Events(d.Record, tp, b.opts.Mapping)
	if err != nil {
		return err
	}
	for i := range evs {
		m, err := Message(ctx, &evs[i], b.opts.Subject, b.opts.Mode)
		if err != nil {
			return err
		}
		if b.durable {
			m.Header.Set(natsjs.MsgIDHeader, evs[i].ID())
			if _, err := b.js.PublishMsg(ctx, m); err != nil {
				return fmt.Errorf("feed: publish %s: %w", evs[i].ID(), err)
			}
		} else if err := b.opts.Conn.PublishMsg(m); err != nil {
			return fmt.Errorf("feed: publish %s: %w", evs[i].ID(), err)
		}
		if b.opts.Published != nil {
			b.opts.Published(&evs[i])
		}
	}
	if !b.durable {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := b.opts.Conn.FlushWithContext(fctx); err != nil {
			return fmt.Errorf("feed: flush: %w", err)
		}
	}
	return nil
}

// traceParent returns the trace parent of the commit's run as of the
// commit: followed through the commits handled, or, for an instance first
// met after its creation, read from the log once.
func (b *bridge) traceParent(ctx context.Context, d jetstream.Delivery) (string, error) {
	id := d.Record.Commit.Instance
	b.mu.Lock()
	prev, ok := b.traces[id]
	b.mu.Unlock()
	if !ok && !createsRun(d) && d.Record.Seq > 1 {
		st, err := projection.FoldUntil(id, b.store.Read(ctx, id, 0), projection.Until{Seq: d.Record.Seq - 1})
		if err != nil {
			return "", fmt.Errorf("feed: the trace parent of %q: %w", id, err)
		}
		prev = st.Snapshot.TraceParent
	}
	tp := TraceParent(d.Record, prev)
	b.mu.Lock()
	b.traces[id] = tp
	b.mu.Unlock()
	return tp, nil
}

// createsRun reports whether the commit starts a run, which sets the
// trace parent whatever came before.
func createsRun(d jetstream.Delivery) bool {
	return slices.ContainsFunc(d.Record.Commit.Events, func(e events.Event) bool { return e.Type == events.SnapshotCreated })
}
