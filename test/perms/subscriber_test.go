package perms

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
)

// subscriberPublish is all a subscriber of the one-stream store RUNLOG
// needs for a subscription named "feed" (the admin makes the PARKED bucket:
// jetstream.Log.PrepareSubscriptions):
//   - $JS.API.STREAM.INFO.RUNLOG                   Open (NoCreate)
//   - $JS.API.CONSUMER.INFO.RUNLOG.feed            its consumer is looked up (resume, balance)
//   - $JS.API.CONSUMER.CREATE.RUNLOG.feed.>        and created on first use (with its filter subject)
//   - $JS.API.CONSUMER.MSG.NEXT.RUNLOG.feed        pulls
//   - $JS.API.CONSUMER.UNPIN.RUNLOG.feed           gives a partition up (balance; partitioned stores)
//   - $JS.ACK.RUNLOG.feed.>                        acknowledgements, in progress
//   - $JS.API.STREAM.INFO.KV_RUNLOG_PARKED         the PARKED bucket is looked up
//   - $KV.RUNLOG_PARKED.feed.>                     a parked commit is recorded (its own keys only)
var subscriberPublish = []string{
	"$JS.API.STREAM.INFO.RUNLOG",
	"$JS.API.CONSUMER.INFO.RUNLOG.feed",
	"$JS.API.CONSUMER.CREATE.RUNLOG.feed.>",
	"$JS.API.CONSUMER.MSG.NEXT.RUNLOG.feed",
	"$JS.API.CONSUMER.UNPIN.RUNLOG.feed",
	"$JS.ACK.RUNLOG.feed.>",
	"$JS.API.STREAM.INFO.KV_RUNLOG_PARKED",
	"$KV.RUNLOG_PARKED.feed.>",
}

// TestSubscriberPermissions: a user with subscriberPublish only gets
// every commit through a subscription named "feed", parks the one its
// handler refuses, resumes after a restart, and can neither write to the
// log nor subscribe under another name.
func TestSubscriberPermissions(t *testing.T) {
	url := startServer(t, writerPublish, subscriberPublish)
	admin := createStream(t, url)
	ctx := t.Context()
	if err := admin.PrepareSubscriptions(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := lifecycle.New(admin, lifecycle.Config{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"s-1", "s-2", "s-3"} {
		if _, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defHash, FirstTask: first}); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := connect(t, ctx, url, readerUser, readerPass, jetstream.Config{NoCreate: true, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	var parked []jetstream.Parked
	run := func(name string, want int) error {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- sub.Subscribe(sctx, name, jetstream.SubscribeOptions{MaxAttempts: 2, Backoff: []time.Duration{time.Millisecond},
				OnPark: func(p jetstream.Parked) { mu.Lock(); parked = append(parked, p); mu.Unlock() }},
				func(_ context.Context, d jetstream.Delivery) error {
					if d.Record.Commit.Instance == "s-2" {
						return errors.New("refused")
					}
					mu.Lock()
					got = append(got, d.Record.Commit.Instance)
					mu.Unlock()
					return nil
				})
		}()
		deadline := time.After(4 * step)
		for {
			mu.Lock()
			n := len(got) + len(parked)
			mu.Unlock()
			if n >= want {
				cancel()
				<-done
				return nil
			}
			select {
			case err := <-done:
				return err
			case <-deadline:
				return errors.New("timed out")
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if err := run("feed", 3); err != nil {
		t.Fatalf("subscriber: %v", err)
	}
	if !slices.Equal(got, []string{"s-1", "s-3"}) || len(parked) != 1 || parked[0].Instance != "s-2" {
		t.Fatalf("delivered %v, parked %+v", got, parked)
	}
	// Resume after a restart: only the new commit.
	if _, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "s-4", DefinitionHash: defHash, FirstTask: first}); err != nil {
		t.Fatal(err)
	}
	if err := run("feed", 4); err != nil {
		t.Fatalf("subscriber, resumed: %v", err)
	}
	if !slices.Equal(got, []string{"s-1", "s-3", "s-4"}) {
		t.Fatalf("after the restart: delivered %v", got)
	}
	// Another name is not its own: the server refuses the consumer's
	// look-up (a permissions violation, reported to the connection: the
	// request itself only times out) and nothing is delivered.
	octx, cancel := context.WithTimeout(ctx, step)
	defer cancel()
	err = sub.Subscribe(octx, "other", jetstream.SubscribeOptions{}, func(context.Context, jetstream.Delivery) error {
		t.Error("delivered under a name the user may not use")
		return nil
	})
	if err == nil {
		t.Fatal("a subscription under another name started")
	}
	t.Logf("another name: %v", err)
	// And it cannot write.
	before := streamMsgs(t, admin)
	wst, err := lifecycle.New(sub, lifecycle.Config{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, step)
	defer wcancel()
	if _, err := wst.PrepareRun(wctx, lifecycle.PrepareRunRequest{InstanceID: "s-5", DefinitionHash: defHash, FirstTask: first}); err == nil {
		t.Fatal("the subscriber wrote")
	}
	if got := streamMsgs(t, admin); got != before {
		t.Fatalf("the stream went from %d to %d messages", before, got)
	}
}
