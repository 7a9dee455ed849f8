package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/runlog/runlog/feed"
	"github.com/runlog/runlog/jetstream"
)

func defineFeed(fs *flag.FlagSet, o *opts) {
	fs.BoolVar(&o.cloudEvents, "cloudevents", false, "publish CloudEvents 1.0 (required: the one format there is)")
	fs.StringVar(&o.feedTo, "to", "", "the NATS `subject` to publish on (required)")
	fs.StringVar(&o.feedServer, "to-server", "", "publish on the NATS server at `URL` (default: the store's own server)")
	fs.StringVar(&o.feedMode, "mode", "binary", "content `mode`: binary (ce- headers, data as the body) or structured (the event as JSON)")
	fs.StringVar(&o.feedName, "name", "cloudevents", "the durable subscription's `name`: a restart with the same name resumes")
	fs.StringVar(&o.from, "from", "", "where a new subscription starts: new, or a `TIME` (RFC 3339, date, or duration ago); default the first event")
}

// runFeed bridges the log to a NATS subject until interrupted.
func runFeed(ctx context.Context, e *env, args []string) error {
	o := e.o
	switch {
	case len(args) > 0:
		return usagef("feed takes no arguments")
	case !o.cloudEvents:
		return usagef("feed needs --cloudevents (the format to publish; CloudEvents 1.0 is the one there is)")
	case o.feedTo == "":
		return usagef("feed needs --to SUBJECT: the NATS subject to publish on")
	}
	mode, err := feed.ParseMode(o.feedMode)
	if err != nil {
		return usagef("--mode: %v", err)
	}
	subOpts := jetstream.SubscribeOptions{}
	switch o.from {
	case "":
	case "new":
		subOpts.Start = jetstream.StartNew()
	default:
		t, err := parseTime(o.from, e.now())
		if err != nil {
			return usagef("--from: %v", err)
		}
		subOpts.Start = jetstream.StartAtTime(t)
	}
	st, err := e.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.close()
	conn := st.Log.Conn()
	if o.feedServer != "" {
		nc, err := nats.Connect(o.feedServer, nats.Name("replay feed"))
		if err != nil {
			return fmt.Errorf("connect to %s: %w", o.feedServer, err)
		}
		defer nc.Close()
		conn = nc
	}
	var n atomic.Int64
	fmt.Fprintf(e.stderr, "replay feed: publishing the events of %s as CloudEvents (%s mode) on %q, subscription %q; Ctrl-C to stop\n",
		e.source(), mode, o.feedTo, o.feedName)
	began := time.Now()
	err = feed.Run(ctx, st.Log, feed.BridgeOptions{Subject: o.feedTo, Mode: mode, Conn: conn, Name: o.feedName, Subscribe: subOpts,
		Published: func(*event.Event) { n.Add(1) }, Logger: slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	fmt.Fprintf(e.stderr, "replay feed: published %d event(s) in %v\n", n.Load(), time.Since(began).Round(time.Millisecond))
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil // interrupted: a normal end
	}
	return err
}
