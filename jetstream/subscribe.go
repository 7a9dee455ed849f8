package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// Durable subscriptions: every commit, decoded, delivered at least once
// to a handler, in order per instance, resumed after a restart.
//
// A subscription is a durable pull consumer per partition stream, named
// after it, in a priority group with the pinned-client policy: of all the
// processes that subscribe with one name, the server pins one per
// partition, which gets that partition's commits in log order and handles
// them one at a time; another takes over when it stops asking for
// PinnedTTL. Processes sharing a name therefore split the work by
// partition (one partition: one works, the others stand by), and an
// instance, which lives in one partition, is never handled by two at
// once. A handler error is retried in the same process, with backoff,
// keeping the commit in progress on the server, so a later commit of the
// instance is never handled before it; after MaxAttempts the commit is
// parked (recorded in the PARKED bucket, reported to OnPark) and
// acknowledged, and the subscription goes on.

// Delivery is one commit delivered to a subscription's handler.
type Delivery struct {
	// Subscription is the subscription's name.
	Subscription string
	// Partition is the partition the commit is on (0 for a one-stream
	// store); Record.Seq is its sequence there.
	Partition int
	// Record is the decoded commit: its events (each with its type, run
	// and payload), instance, command, actor and time (Record.Commit),
	// and its sequence and stored time.
	Record events.Record
	// Attempt counts the handler's calls for this commit in this
	// process: 1, then 2 after a first error, and so on.
	Attempt int
	// Redelivered says the server delivered the commit before without an
	// acknowledgement (to this process or to one that stopped): the
	// handler may have seen it already.
	Redelivered bool
	// TraceParent is the W3C trace context the commit carries (its
	// traceparent header: the span of the operation that wrote it, or the
	// run's trace parent), or "". The handler's context continues it:
	// spans started from that context join the writer's trace.
	TraceParent string
	// Pending is how many commits of the partition the subscription has
	// yet to be delivered after this one (its lag, as the server counts
	// it).
	Pending uint64
}

// Handler handles one delivery. It returns nil once the commit is dealt
// with: the subscription then acknowledges it and it is never delivered to
// the subscription again. An error is retried (SubscribeOptions.Backoff).
// The context ends when the subscription stops.
type Handler func(ctx context.Context, d Delivery) error

// Start is where a new subscription starts reading. An existing
// subscription (a durable of the same name) resumes after its last
// acknowledged commit, whatever Start says.
type Start struct {
	kind startKind
	seq  uint64
	time time.Time
}

type startKind uint8

const (
	startAll startKind = iota
	startNew
	startSeq
	startTime
)

// StartAll starts at the first commit of the log (the default).
func StartAll() Start { return Start{} }

// StartNew delivers only the commits made after the subscription is
// created.
func StartNew() Start { return Start{kind: startNew} }

// StartAtSeq starts at sequence seq. Sequences are per partition: on a
// partitioned store, start at a time instead.
func StartAtSeq(seq uint64) Start { return Start{kind: startSeq, seq: seq} }

// StartAtTime starts at the first commit the log stored at or after t.
func StartAtTime(t time.Time) Start { return Start{kind: startTime, time: t} }

// SubscribeOptions configure [Log.Subscribe]. The zero value delivers
// every commit from the beginning.
type SubscribeOptions struct {
	// Start is where a new subscription starts; see [Start].
	Start Start
	// Instances, when set, restricts the subscription to these instances:
	// a subject filter, applied by the server.
	Instances []string
	// Types, when set, delivers only commits holding at least one event
	// of these types (judged from the Runlog-Events header before
	// decoding). The commit is delivered whole.
	Types []events.Type
	// Commands, when set, delivers only commits made by these commands
	// (e.g. "prepare_run", "save_snapshot"; the Runlog-Command header).
	Commands []string
	// Definitions, when set, delivers only commits of instances whose
	// current run (as of the commit) has one of these definition hashes:
	// a workflow filter. An instance created before the subscription's
	// start is looked up in the log once.
	Definitions []workflow.DefinitionHash
	// Workflows, when set, delivers only commits of instances whose run
	// (as of the commit) is of a workflow of these names, as the history
	// names it (PrepareRunRequest.Workflow, docs/EVENTS.md "Names"): the
	// runs of an unnamed definition match none.
	Workflows []string

	// MaxAttempts is how many times the handler is called for a commit
	// before the commit is parked; default 5.
	MaxAttempts int
	// Backoff is the wait before each retry (the last value repeats);
	// default 100 ms, 500 ms, 2 s, 5 s.
	Backoff []time.Duration
	// OnPark, when set, is called for each parked commit, after it is
	// recorded in the PARKED bucket and before it is acknowledged.
	OnPark func(Parked)
	// Acked, when set, is called after the server confirmed the
	// acknowledgement of a delivery the handler dealt with: from then on
	// the commit is never delivered to the subscription again (progress
	// reporting; a commit delivered twice is one whose Acked was never
	// called).
	Acked func(Delivery)

	// AckWait is how long a commit delivered to a process that stopped
	// waits before it is delivered again; default 30 s. While the handler
	// runs (and retries) the commit is kept in progress.
	AckWait time.Duration
	// PinnedTTL is how long a process that stopped asking stays pinned
	// before another of the same name takes over its partitions; default
	// 10 s. A killed subscriber stalls its partitions for at most
	// PinnedTTL plus AckWait.
	PinnedTTL time.Duration
}

// The consumer of a subscription has one commit outstanding at a time
// (max ack pending 1). More would let the server hand the process that
// takes over after a kill the commits after those the killed one held,
// before those come back after AckWait: a later commit of an instance
// handled before an earlier one. One at a time keeps the order across a
// failover; the cost is a round trip per commit (BENCHMARKS.md).
const subscriptionInFlight = 1

// Parked is a commit a subscription gave up on: the handler failed for it
// MaxAttempts times. It was acknowledged and is recorded, under the
// subscription's name, in the store's PARKED bucket ([Log.Parked]).
type Parked struct {
	Subscription string    `json:"subscription"`
	Partition    int       `json:"partition"`
	Seq          uint64    `json:"seq"`
	Instance     string    `json:"instance"`
	Commit       ulid.ULID `json:"commit"`
	Attempts     int       `json:"attempts"`
	Error        string    `json:"error"`
	At           time.Time `json:"at"`
}

// subscriberGroup is the priority group subscribers pull in.
const subscriberGroup = "subscribers"

// subscriptionName is what a subscription may be called: a durable
// consumer name that is also a KV key token.
var subscriptionName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ParkedBucket is the name of the KV bucket of parked commits.
func (s *Log) ParkedBucket() string { return s.cfg.Stream + "_PARKED" }

// PrepareSubscriptions creates the PARKED bucket if it does not exist:
// for deployments whose subscribers may not create streams (a subscriber
// creates it when it first parks a commit, if it may). Nothing else of a
// subscription needs creating ahead: its consumers are made on first
// Subscribe.
func (s *Log) PrepareSubscriptions(ctx context.Context) error {
	_, err := s.parkedBucket().get(ctx, true)
	return err
}

func (s *Log) parkedBucket() *kvBucket {
	return &kvBucket{s: s, cfg: natsjs.KeyValueConfig{Bucket: s.ParkedBucket(),
		Description: "runlog commits that subscriptions of stream " + s.cfg.Stream + " parked (their handlers failed)",
		History:     1, Storage: s.cfg.Storage, Replicas: s.cfg.Replicas}}
}

func (o *SubscribeOptions) check(s *Log, name string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: subscription %q: %s", ErrInvalidConfig, name, fmt.Sprintf(format, args...))
	}
	switch {
	case !subscriptionName.MatchString(name):
		return bad("a name is 1 to 64 letters, digits, '-' or '_'")
	case strings.HasPrefix(name, "runlog-"):
		return bad("names starting with \"runlog-\" are runlog's own consumers; choose another")
	case o.MaxAttempts < 0 || o.AckWait < 0 || o.PinnedTTL < 0:
		return bad("MaxAttempts, AckWait and PinnedTTL must not be negative (0: the defaults)")
	case o.Start.kind == startSeq && o.Start.seq == 0:
		return bad("StartAtSeq(0): sequences start at 1 (StartAll starts at the first)")
	case o.Start.kind == startSeq && len(s.all) > 1:
		return bad("StartAtSeq on a store of %d partitions: sequences are per partition; use StartAtTime", len(s.all))
	case o.Start.kind == startTime && o.Start.time.IsZero():
		return bad("StartAtTime with the zero time")
	}
	for _, b := range o.Backoff {
		if b < 0 {
			return bad("a negative backoff %v", b)
		}
	}
	for _, id := range o.Instances {
		if err := workflow.ValidateInstanceID(id); err != nil {
			return bad("Instances: %v", err)
		}
	}
	for _, t := range o.Types {
		if !events.Known(t) {
			return bad("Types: unknown event type %q", t)
		}
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 5
	}
	if len(o.Backoff) == 0 {
		o.Backoff = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second}
	}
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	if o.PinnedTTL == 0 {
		o.PinnedTTL = 10 * time.Second
	}
	return nil
}

// Subscribe delivers the store's commits to handler until ctx ends (it
// then returns ctx's error) or the subscription cannot go on (an error).
// See the package's notes on subscriptions: at least once, in log order
// per partition (so in order per instance), one commit at a time per
// partition, resumed by name after a restart, shared by name across
// processes (split by partition). A subscriber needs to create or look up
// its consumers, pull from them and acknowledge (test/perms has the
// minimal permissions), and to write the PARKED bucket when a commit is
// parked.
//
// A message on the log's subjects that is not a commit of the store (one
// that does not decode, or of an instance placed in another partition) is
// reported as parked with its error, without calling the handler: a
// subscription never stops at, nor silently skips, a bad message.
func (s *Log) Subscribe(ctx context.Context, name string, opts SubscribeOptions, handler Handler) error {
	if handler == nil {
		return fmt.Errorf("%w: subscription %q: nil handler", ErrInvalidConfig, name)
	}
	if err := opts.check(s, name); err != nil {
		return err
	}
	sub := &subscription{s: s, name: name, opts: opts, handler: handler, parked: s.parkedBucket(),
		runs: map[string]runOf{}, pins: map[int]string{}, yields: map[int]chan struct{}{}}
	if err := sub.instrument(); err != nil {
		return err
	}
	parts := s.all
	if len(opts.Instances) > 0 {
		parts = nil
		for _, p := range s.all {
			if len(sub.filters(p)) > 0 {
				parts = append(parts, p)
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go sub.balance(ctx, parts)
	return eachPartition(ctx, parts, sub.run)
}

// DeleteSubscription deletes the subscription's consumers (its position
// is lost: a new subscription of the name starts afresh) and its parked
// records. Deleting one that does not exist is not an error.
func (s *Log) DeleteSubscription(ctx context.Context, name string) error {
	for _, p := range s.all {
		if err := s.js.DeleteConsumer(ctx, p.name, name); err != nil && !errors.Is(err, natsjs.ErrConsumerNotFound) {
			return fmt.Errorf("jetstream: delete subscription %q on %s: %w", name, p.name, err)
		}
	}
	kv, err := s.parkedBucket().get(ctx, false)
	if err != nil || kv == nil {
		return err
	}
	keys, err := kv.ListKeysFiltered(ctx, name+".>")
	if err != nil {
		return fmt.Errorf("jetstream: delete subscription %q: parked records: %w", name, err)
	}
	defer func() { _ = keys.Stop() }()
	for k := range keys.Keys() {
		if err := kv.Purge(ctx, k); err != nil {
			return fmt.Errorf("jetstream: delete subscription %q: parked record %s: %w", name, k, err)
		}
	}
	return nil
}

// Parked lists the commits subscription name parked, by partition and
// sequence.
func (s *Log) Parked(ctx context.Context, name string) iter.Seq2[Parked, error] {
	return func(yield func(Parked, error) bool) {
		var out []Parked
		for p, err := range bucketValues(ctx, s.parkedBucket(), func(key string, data []byte) (Parked, bool) {
			var p Parked
			return p, strings.HasPrefix(key, name+".") && json.Unmarshal(data, &p) == nil
		}) {
			if err != nil {
				yield(Parked{}, err)
				return
			}
			out = append(out, p)
		}
		slices.SortFunc(out, func(a, b Parked) int {
			if a.Partition != b.Partition {
				return a.Partition - b.Partition
			}
			return int(a.Seq) - int(b.Seq)
		})
		for _, p := range out {
			if !yield(p, nil) {
				return
			}
		}
	}
}

type subscription struct {
	s       *Log
	name    string
	opts    SubscribeOptions
	handler Handler
	parked  *kvBucket

	tracer     trace.Tracer      // nil: no spans
	lag        metric.Int64Gauge // nil: no metrics
	deliveries metric.Int64Counter

	mu     sync.Mutex
	runs   map[string]runOf      // instance → its run, for Definitions and Workflows
	pins   map[int]string        // partition → the pin id this process last got on it
	yields map[int]chan struct{} // partition → closed to give it up
}

// filters returns the subject filters of the subscription on p: its
// instances there, or every instance of p.
func (sub *subscription) filters(p *partition) []string {
	if len(sub.opts.Instances) == 0 {
		return []string{p.filter()}
	}
	var fs []string
	for _, id := range sub.opts.Instances {
		if sub.s.part(id) == p {
			fs = append(fs, p.prefix+"."+EncodeID(id))
		}
	}
	slices.Sort(fs)
	return slices.Compact(fs)
}

// consumer returns the subscription's durable on p: the existing one
// (resumed), or a new one starting where the options say.
func (sub *subscription) consumer(ctx context.Context, p *partition) (natsjs.Consumer, error) {
	filters := sub.filters(p)
	cons, err := sub.s.js.Consumer(ctx, p.name, sub.name)
	if err == nil {
		have := cons.CachedInfo().Config
		got := have.FilterSubjects
		if have.FilterSubject != "" {
			got = []string{have.FilterSubject}
		}
		if !slices.Equal(slices.Sorted(slices.Values(got)), filters) {
			return nil, fmt.Errorf("%w: subscription %q exists on %s with filters %v, not %v: delete it (DeleteSubscription) or choose another name",
				ErrInvalidConfig, sub.name, p.name, got, filters)
		}
		if have.PriorityPolicy != natsjs.PriorityPolicyPinned || !slices.Contains(have.PriorityGroups, subscriberGroup) {
			return nil, fmt.Errorf("%w: consumer %q on %s is not a runlog subscription: choose another name", ErrInvalidConfig, sub.name, p.name)
		}
		return cons, nil
	}
	if !errors.Is(err, natsjs.ErrConsumerNotFound) {
		return nil, fmt.Errorf("jetstream: subscription %q: look up its consumer on %s: %w", sub.name, p.name, err)
	}
	cfg := natsjs.ConsumerConfig{
		Durable: sub.name, Description: "runlog subscription",
		AckPolicy: natsjs.AckExplicitPolicy, AckWait: sub.opts.AckWait, MaxAckPending: subscriptionInFlight, MaxDeliver: -1,
		PriorityPolicy: natsjs.PriorityPolicyPinned, PinnedTTL: sub.opts.PinnedTTL, PriorityGroups: []string{subscriberGroup},
	}
	if len(filters) == 1 {
		cfg.FilterSubject = filters[0]
	} else {
		cfg.FilterSubjects = filters
	}
	switch st := sub.opts.Start; st.kind {
	case startAll:
		cfg.DeliverPolicy = natsjs.DeliverAllPolicy
	case startNew:
		cfg.DeliverPolicy = natsjs.DeliverNewPolicy
	case startSeq:
		cfg.DeliverPolicy, cfg.OptStartSeq = natsjs.DeliverByStartSequencePolicy, st.seq
	case startTime:
		t := st.time
		cfg.DeliverPolicy, cfg.OptStartTime = natsjs.DeliverByStartTimePolicy, &t
	}
	cons, err = sub.s.js.CreateConsumer(ctx, p.name, cfg)
	if errors.Is(err, natsjs.ErrConsumerExists) {
		return sub.consumer(ctx, p) // another process created it first
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: subscription %q: create its consumer on %s: %w", sub.name, p.name, err)
	}
	return cons, nil
}

func (sub *subscription) run(ctx context.Context, p *partition) error {
	cons, err := sub.consumer(ctx, p)
	if err != nil {
		return err
	}
	for {
		yielded, err := sub.pull(ctx, p, cons)
		if err != nil || ctx.Err() != nil {
			return err
		}
		if yielded {
			// Stand aside long enough for another process of the name,
			// waiting on the partition, to be pinned; then wait as a
			// standby.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(2 * sub.opts.PinnedTTL):
			}
		}
	}
}

// pull handles p's commits until ctx ends, an error, or the balancer asks
// this process to give p up (yielded: the pin is released, nothing is
// outstanding).
func (sub *subscription) pull(ctx context.Context, p *partition, cons natsjs.Consumer) (yielded bool, err error) {
	// One fetch of one commit at a time: nothing is ever delivered to
	// this process ahead of its handler, so a stop or a hand-over leaves
	// no commit waiting out AckWait in a buffer nobody reads.
	yield := sub.yieldSignal(p)
	defer sub.unpin(p) // a clean stop hands the partition over at once
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-yield:
			return true, nil
		default:
		}
		batch, err := cons.Fetch(1, natsjs.FetchPriorityGroup(subscriberGroup), natsjs.FetchMaxWait(fetchWait))
		if err != nil {
			if ctx.Err() != nil {
				return false, nil
			}
			return false, fmt.Errorf("jetstream: subscription %q: pull from %s: %w", sub.name, p.name, err)
		}
		for m := range batch.Messages() {
			if id := m.Headers().Get("Nats-Pin-Id"); id != "" {
				sub.setPin(p, id)
			}
			if err := sub.deliver(ctx, p, m); err != nil {
				if ctx.Err() != nil {
					return false, nil // stopped mid-delivery: the commit is delivered again
				}
				return false, err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, natsjs.ErrNoHeartbeat) && ctx.Err() == nil {
			sub.s.log.Debug("jetstream: subscription fetch", slog.String("subscription", sub.name), slog.String("stream", p.name), slog.Any(logKeyErr, err))
		}
	}
}

// fetchWait is how long a subscription's pull request waits for a commit
// before it asks again (and how long a stop can take).
const fetchWait = time.Second

// unpin releases the process's pin on p, if it holds it, so that another
// process of the name takes the partition over without waiting out
// PinnedTTL.
func (sub *subscription) unpin(p *partition) {
	sub.mu.Lock()
	held := sub.pins[p.index] != ""
	sub.pins[p.index] = ""
	sub.mu.Unlock()
	if !held {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.stream.UnpinConsumer(ctx, sub.name, subscriberGroup); err != nil {
		sub.s.log.Debug("jetstream: subscription: unpin", slog.String("subscription", sub.name), slog.String("stream", p.name), slog.Any(logKeyErr, err))
	}
}

// yieldSignal returns the channel the balancer closes to ask this process
// to give p up.
func (sub *subscription) yieldSignal(p *partition) <-chan struct{} {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	ch := make(chan struct{})
	sub.yields[p.index] = ch
	return ch
}

func (sub *subscription) setPin(p *partition, id string) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.pins[p.index] = id
}

// balance runs while the subscription does: every PinnedTTL it looks at
// the partitions' consumers, and when this process is pinned on more of
// them than its share (the partitions over the processes waiting on
// them, rounded up) it gives one up, so that processes sharing a name
// split the partitions between them.
func (sub *subscription) balance(ctx context.Context, parts []*partition) {
	if len(parts) < 2 {
		return
	}
	t := time.NewTicker(sub.opts.PinnedTTL)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var held []*partition
		waiting := 0
		for _, p := range parts {
			info, err := p.stream.Consumer(ctx, sub.name)
			if err != nil {
				break
			}
			ci := info.CachedInfo()
			waiting = max(waiting, ci.NumWaiting)
			sub.mu.Lock()
			mine := sub.pins[p.index]
			sub.mu.Unlock()
			for _, g := range ci.PriorityGroups {
				if g.Group == subscriberGroup && mine != "" && g.PinnedClientID == mine {
					held = append(held, p)
				}
			}
		}
		if waiting < 2 || len(held) <= (len(parts)+waiting-1)/waiting {
			continue
		}
		p := held[len(held)-1]
		sub.mu.Lock()
		if ch := sub.yields[p.index]; ch != nil {
			close(ch)
			sub.yields[p.index] = nil
		}
		sub.mu.Unlock()
		sub.s.log.Info("jetstream: subscription gives a partition to another process", slog.String("subscription", sub.name), slog.String("stream", p.name),
			slog.Int("held", len(held)), slog.Int("processes", waiting))
	}
}

// deliver handles one message: filters, decodes, calls the handler with
// retries, parks, and acknowledges.
func (sub *subscription) deliver(ctx context.Context, p *partition, m natsjs.Msg) error {
	md, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("jetstream: subscription %q: a message without metadata on %s: %w", sub.name, p.name, err)
	}
	seq := md.Sequence.Stream
	hdr := m.Headers()
	if !sub.wanted(hdr) {
		return sub.ack(ctx, m)
	}
	msg := storedMessage(seq, md.Timestamp, hdr, m.Data())
	id, err := sub.s.instanceFromPartition(p, m.Subject())
	var rec events.Record
	if err == nil {
		rec, err = events.Decode(msg, id)
	}
	if err != nil {
		// Not a commit of this store: never the handler's, never skipped
		// silently.
		if perr := sub.park(ctx, Parked{Subscription: sub.name, Partition: p.index, Seq: seq, Instance: id, Attempts: 0, Error: err.Error()}); perr != nil {
			return perr
		}
		return sub.ack(ctx, m)
	}
	if len(sub.opts.Definitions) > 0 || len(sub.opts.Workflows) > 0 {
		r, err := sub.runAt(ctx, &rec)
		if err != nil {
			return err
		}
		if len(sub.opts.Definitions) > 0 && !slices.Contains(sub.opts.Definitions, r.def) ||
			len(sub.opts.Workflows) > 0 && !slices.Contains(sub.opts.Workflows, r.workflow) {
			return sub.ack(ctx, m)
		}
	}
	d := Delivery{Subscription: sub.name, Partition: p.index, Record: rec, Redelivered: md.NumDelivered > 1, Pending: md.NumPending}
	if v := hdr[lifecycle.HeaderTraceParent]; len(v) > 0 {
		d.TraceParent = v[0]
	}
	if sub.lag != nil {
		sub.lag.Record(ctx, int64(md.NumPending), metric.WithAttributes(attrSubscription.String(sub.name), attrPartition.Int(p.index)))
	}
	var herr error
	for d.Attempt = 1; d.Attempt <= sub.opts.MaxAttempts; d.Attempt++ {
		if d.Attempt > 1 {
			_ = m.InProgress()
			wait := sub.opts.Backoff[min(d.Attempt-2, len(sub.opts.Backoff)-1)]
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			_ = m.InProgress()
		}
		if herr = sub.call(ctx, d); herr == nil {
			if err := sub.ack(ctx, m); err != nil {
				return err
			}
			sub.count(ctx, "handled")
			if sub.opts.Acked != nil {
				sub.opts.Acked(d)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sub.s.log.Warn("jetstream: subscription handler failed", slog.String("subscription", sub.name), slog.String("instance", id),
			slog.Uint64("seq", seq), slog.Int("attempt", d.Attempt), slog.Any(logKeyErr, herr))
	}
	pk := Parked{Subscription: sub.name, Partition: p.index, Seq: seq, Instance: id, Commit: rec.Commit.ID,
		Attempts: sub.opts.MaxAttempts, Error: herr.Error()}
	if err := sub.park(ctx, pk); err != nil {
		return err
	}
	sub.count(ctx, "parked")
	return sub.ack(ctx, m)
}

// call runs the handler, turning a panic into an error (a handler's bug
// parks its commit; it does not kill the subscriber). The handler's
// context continues the commit's trace, in a delivery span when tracing
// is on.
func (sub *subscription) call(ctx context.Context, d Delivery) (err error) {
	if d.TraceParent != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{lifecycle.HeaderTraceParent: d.TraceParent})
	}
	if sub.tracer != nil {
		var span trace.Span
		ctx, span = sub.tracer.Start(ctx, "runlog deliver "+sub.name, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attrSubscription.String(sub.name), attrPartition.Int(d.Partition), attribute.String("runlog.instance", d.Record.Commit.Instance),
				attribute.Int64("runlog.seq", int64(d.Record.Seq)), attribute.Int("runlog.attempt", d.Attempt)))
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return sub.handler(ctx, d)
}

var (
	attrSubscription = attribute.Key("runlog.subscription")
	attrPartition    = attribute.Key("runlog.partition")
)

// instrument makes the subscription's tracer and metrics from the
// store's providers.
func (sub *subscription) instrument() error {
	if tp := sub.s.cfg.TracerProvider; tp != nil {
		sub.tracer = tp.Tracer(lifecycle.InstrumentationName)
	}
	mp := sub.s.cfg.MeterProvider
	if mp == nil {
		return nil
	}
	m := mp.Meter(lifecycle.InstrumentationName)
	var err1, err2 error
	sub.lag, err1 = m.Int64Gauge("runlog.subscription.lag", metric.WithUnit("{commit}"),
		metric.WithDescription("commits of a partition a subscription has yet to be delivered, as of its last delivery"))
	sub.deliveries, err2 = m.Int64Counter("runlog.subscription.deliveries", metric.WithUnit("{commit}"),
		metric.WithDescription("commits a subscription dealt with, by outcome (handled, parked)"))
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("%w: subscription telemetry: %w", ErrInvalidConfig, err)
	}
	return nil
}

func (sub *subscription) count(ctx context.Context, outcome string) {
	if sub.deliveries != nil {
		sub.deliveries.Add(ctx, 1, metric.WithAttributes(attrSubscription.String(sub.name), attribute.String("runlog.outcome", outcome)))
	}
}

// ack acknowledges m and waits for the server to confirm it, so that a
// commit reported handled is one the subscription will not deliver again.
func (sub *subscription) ack(ctx context.Context, m natsjs.Msg) error {
	if err := m.DoubleAck(ctx); err != nil {
		return fmt.Errorf("jetstream: subscription %q: acknowledge: %w", sub.name, err)
	}
	return nil
}

// wanted applies the header filters (types, commands).
func (sub *subscription) wanted(hdr map[string][]string) bool {
	if len(sub.opts.Commands) > 0 {
		cmd := ""
		if v := hdr[events.HeaderCommand]; len(v) > 0 {
			cmd = v[0]
		}
		if !slices.Contains(sub.opts.Commands, cmd) {
			return false
		}
	}
	if len(sub.opts.Types) > 0 {
		v := hdr[events.HeaderEvents]
		if len(v) == 0 {
			return true // no header: judged by the handler's filter, never dropped unseen
		}
		for t := range strings.SplitSeq(v[0], ",") {
			if slices.Contains(sub.opts.Types, events.Type(t)) {
				return true
			}
		}
		return false
	}
	return true
}

// runOf is what a subscription knows of an instance's run, for the
// Definitions and Workflows filters.
type runOf struct {
	def      workflow.DefinitionHash
	workflow string                             // the run's workflow name, "" when the history does not name it
	names    map[workflow.DefinitionHash]string // every definition the history named
}

// runAt returns the instance's run as of rec: followed through the
// commits delivered (a snapshot.created sets it), or, for an instance
// first met after its creation, the log folded up to the commit.
func (sub *subscription) runAt(ctx context.Context, rec *events.Record) (runOf, error) {
	id := rec.Commit.Instance
	sub.mu.Lock()
	r, known := sub.runs[id]
	sub.mu.Unlock()
	if !known && rec.Seq > 1 { // the history before the commit (Until.Seq 0 would mean all of it)
		st, err := projection.FoldUntil(id, sub.s.Read(ctx, id, 0), projection.Until{Seq: rec.Seq - 1})
		if err != nil {
			return r, fmt.Errorf("jetstream: subscription %q: the run of %q: %w", sub.name, id, err)
		}
		if st.Snapshot != nil {
			r.def = st.Snapshot.DefinitionHash
		}
		r.names = map[workflow.DefinitionHash]string{}
		for h, d := range st.Definitions {
			r.names[h] = d.Name
		}
		r.workflow = r.names[r.def]
	}
	for _, e := range rec.Commit.Events {
		if d, ok := e.Data.(*events.SnapshotCreatedData); ok {
			if d.Workflow != nil {
				if r.names == nil {
					r.names = map[workflow.DefinitionHash]string{}
				}
				r.names[d.DefinitionHash] = d.Workflow.Name
			}
			r.def, r.workflow = d.DefinitionHash, r.names[d.DefinitionHash]
		}
	}
	sub.mu.Lock()
	sub.runs[id] = r
	sub.mu.Unlock()
	return r, nil
}

// park records a parked commit and reports it.
func (sub *subscription) park(ctx context.Context, pk Parked) error {
	pk.At = time.Now().UTC()
	kv, err := sub.parked.get(ctx, true)
	if err != nil {
		return fmt.Errorf("jetstream: subscription %q: park seq %d: %w", sub.name, pk.Seq, err)
	}
	data, err := json.Marshal(pk)
	if err != nil {
		return err
	}
	key := sub.name + "." + strconv.Itoa(pk.Partition) + "." + strconv.FormatUint(pk.Seq, 10)
	if _, err := kv.Put(ctx, key, data); err != nil {
		return fmt.Errorf("jetstream: subscription %q: park seq %d: %w", sub.name, pk.Seq, err)
	}
	sub.s.log.Error("jetstream: subscription parked a commit", slog.String("subscription", sub.name), slog.String("instance", pk.Instance),
		slog.Int("partition", pk.Partition), slog.Uint64("seq", pk.Seq), slog.String("error", pk.Error))
	if sub.opts.OnPark != nil {
		sub.opts.OnPark(pk)
	}
	return nil
}
