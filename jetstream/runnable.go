package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/dispatch"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
	"github.com/runlog/runlog/workflow"
)

// RunnableBucket returns the name of the KV bucket of the store's runnable
// index: the log's stream name with "_RUNNABLE" appended.
func (s *Log) RunnableBucket() string { return s.cfg.Stream + "_RUNNABLE" }

// RunnableIndex returns the store's index of runnable tasks (a
// [dispatch.Index]): a KV bucket ([Log.RunnableBucket]) with one key per
// instance that has a task to run now, so that listing it costs in
// proportion to the runnable work, not to the instances. It is derived
// data: [RunnableIndex.Rebuild] makes it again from the log, and
// [RunnableIndex.Run] keeps it in step from a durable consumer that any
// number of processes may run. A stale entry costs a wasted claim attempt
// at most: dispatch.Find checks every candidate against the log.
func (s *Log) RunnableIndex() *RunnableIndex {
	return &RunnableIndex{s: s,
		b: &kvBucket{s: s, cfg: natsjs.KeyValueConfig{Bucket: s.RunnableBucket(),
			Description: "runlog runnable tasks of stream " + s.cfg.Stream + " (derived data: rebuilt from the log)",
			History:     1, Storage: s.cfg.Storage, Replicas: s.cfg.Replicas, LimitMarkerTTL: runnableMarkerTTL}},
		timers: &kvBucket{s: s, cfg: natsjs.KeyValueConfig{Bucket: s.TimerBucket(),
			Description: "runlog durable timers of stream " + s.cfg.Stream + " (derived data: rebuilt from the log)",
			History:     1, Storage: s.cfg.Storage, Replicas: s.cfg.Replicas, LimitMarkerTTL: runnableMarkerTTL}}}
}

// TimerBucket returns the name of the KV bucket of the store's durable
// timers: the log's stream name with "_TIMERS" appended.
func (s *Log) TimerBucket() string { return s.cfg.Stream + "_TIMERS" }

// runnableMarkerTTL is how long the marker of a removed entry stays in the
// bucket: markers that stayed would make a listing cost every instance
// that was ever runnable, not the runnable ones.
const runnableMarkerTTL = 5 * time.Second

// RunnableIndex is the KV index of [Log.RunnableIndex].
type RunnableIndex struct {
	s      *Log
	b      *kvBucket // the runnable entries
	timers *kvBucket // the timers (dispatch.TimerOf)
}

var (
	_ dispatch.Index        = (*RunnableIndex)(nil)
	_ dispatch.OrderedIndex = (*LiveIndex)(nil)
)

// Put records the entry st derives (dispatch.Of), or deletes the
// instance's key when it has nothing to run, and then its timer
// (dispatch.TimerOf): the entry first, so that the wake-ups it makes wait
// for no other write. The timer of an instance whose only commit is st's
// first has never been written (a timer is put only from a state that
// folded that commit, and a later one is indexed later): nothing is
// removed then.
func (x *RunnableIndex) Put(ctx context.Context, st *projection.State) error {
	e, ok := dispatch.Of(st)
	if err := putOrRemove(ctx, x.b, st.Instance, e, ok); err != nil {
		return err
	}
	if _, timed := dispatch.TimerOf(st, time.Now()); !timed && st.Commits == 1 {
		return nil
	}
	return x.putTimer(ctx, st)
}

// putOrRemove stores v at instance's key of b when ok, else removes the
// key with a purge whose marker expires: the bucket keeps no trace of the
// instances that have nothing there.
func putOrRemove(ctx context.Context, b *kvBucket, instance string, v any, ok bool) error {
	kv, err := b.get(ctx, true)
	if err != nil {
		return err
	}
	key := EncodeID(instance)
	if !ok {
		if err := kv.Purge(ctx, key, natsjs.PurgeTTL(runnableMarkerTTL)); err != nil && !errors.Is(err, natsjs.ErrKeyNotFound) {
			return fmt.Errorf("jetstream: bucket %s: remove %q: %w", b.cfg.Bucket, instance, err)
		}
		return nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, key, data); err != nil {
		return fmt.Errorf("jetstream: bucket %s: put %q: %w", b.cfg.Bucket, instance, err)
	}
	return nil
}

// Entries yields every entry of the index, in key order.
func (x *RunnableIndex) Entries(ctx context.Context) iter.Seq2[dispatch.Entry, error] {
	return bucketValues(ctx, x.b, decodeEntry)
}

// decodeEntry reads the entry stored at key; ok is false for a value that
// is not an entry of this version, or not the key's instance's (skipped:
// a rebuild removes it).
func decodeEntry(key string, data []byte) (dispatch.Entry, bool) {
	var e dispatch.Entry
	if err := json.Unmarshal(data, &e); err != nil || e.Instance == "" || EncodeID(e.Instance) != key {
		return dispatch.Entry{}, false
	}
	return e, true
}

// decodeTimer reads the timer stored at key, as decodeEntry.
func decodeTimer(key string, data []byte) (dispatch.Timer, bool) {
	var t dispatch.Timer
	if err := json.Unmarshal(data, &t); err != nil || t.Instance == "" || EncodeID(t.Instance) != key {
		return dispatch.Timer{}, false
	}
	return t, true
}

// bucketValues yields the current value of every key of b that decode
// accepts: one watch of the bucket's last values (deletes left out), which
// ends when they are all delivered.
func bucketValues[T any](ctx context.Context, b *kvBucket, decode func(key string, data []byte) (T, bool)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		kv, err := b.get(ctx, true)
		if err != nil {
			yield(zero, err)
			return
		}
		w, err := kv.WatchAll(ctx, natsjs.IgnoreDeletes())
		if err != nil {
			yield(zero, fmt.Errorf("jetstream: bucket %s: %w", b.cfg.Bucket, err))
			return
		}
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				yield(zero, ctx.Err())
				return
			case u := <-w.Updates():
				if u == nil {
					return // the initial values are all delivered
				}
				if v, ok := decode(u.Key(), u.Value()); ok && !yield(v, nil) {
					return
				}
			}
		}
	}
}

// Rebuild makes the index again from the log: every instance, read
// afresh, put or deleted; then every key that is not a runnable
// instance's is removed. Instances are read and put rebuildWorkers at a
// time: each costs round trips, not CPU.
func (x *RunnableIndex) Rebuild(ctx context.Context, store *lifecycle.Store) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	runnable := map[string]bool{}
	var first error
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
			cancel()
		}
		mu.Unlock()
	}
	ids := make(chan string)
	var wg sync.WaitGroup
	for range rebuildWorkers {
		wg.Go(func() {
			for id := range ids {
				st, err := x.index(ctx, store, id)
				if err != nil {
					fail(err)
					continue
				}
				if _, ok := dispatch.Of(&st); ok {
					mu.Lock()
					runnable[EncodeID(id)] = true
					mu.Unlock()
				}
			}
		})
	}
	for id, err := range x.s.AllInstances(ctx, "") {
		if err != nil {
			fail(err)
			break
		}
		select {
		case ids <- id:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(ids)
	wg.Wait()
	if first != nil {
		return first
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	kv, err := x.b.get(ctx, true)
	if err != nil {
		return err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("jetstream: runnable index: list keys: %w", err)
	}
	defer func() { _ = keys.Stop() }()
	var stray []string
	for k := range keys.Keys() {
		if !runnable[k] {
			stray = append(stray, k)
		}
	}
	for _, k := range stray {
		// An indexer may have put the key after this rebuild read its
		// instance: index the instance again rather than remove blindly.
		if id, err := DecodeID(k); err == nil {
			if _, err := x.index(ctx, store, id); err != nil {
				return err
			}
			continue
		}
		if err := kv.Purge(ctx, k, natsjs.PurgeTTL(runnableMarkerTTL)); err != nil && !errors.Is(err, natsjs.ErrKeyNotFound) {
			return fmt.Errorf("jetstream: runnable index: remove stray key %q: %w", k, err)
		}
	}
	return nil
}

// index puts the entry and the timer of instance id as the log has them
// now: it loads the instance, puts what the state derives, then reads the
// instance's last sequence and does it again if the log moved on
// meanwhile. Puts are unconditional, so a writer that loaded an older
// state (a second indexer during a take-over, a rebuild) may put it after
// a newer one; that writer then finds the log past what it put and puts
// the newer state itself, so the index ends as the log is. After
// indexAttempts states that the log left behind at once, it fails (the
// indexer takes the commit again later).
func (x *RunnableIndex) index(ctx context.Context, store *lifecycle.Store, id string) (projection.State, error) {
	return x.indexFrom(ctx, id, func() (projection.State, error) { return store.Load(ctx, id) })
}

// indexDelivered is index for a commit of the instance delivered by the
// indexer's consumer: the first state put is the store's projection with
// the delivered commit folded in (lifecycle.Store.LoadWith), without a
// read of the log when the store's cache ends where the commit begins;
// with hint, its runnable task is announced first.
func (x *RunnableIndex) indexDelivered(ctx context.Context, store *lifecycle.Store, id string, m natsjs.Msg, hint bool) (projection.State, error) {
	md, err := m.Metadata()
	if err != nil {
		return x.index(ctx, store, id)
	}
	msg := storedMessage(md.Sequence.Stream, md.Timestamp, m.Headers(), m.Data())
	first := true
	return x.indexFrom(ctx, id, func() (projection.State, error) {
		if !first {
			return store.Load(ctx, id)
		}
		first = false
		st, err := store.LoadWith(ctx, id, msg)
		if err == nil && hint {
			// The hint goes out before the entry's put: a waiting worker
			// validates it against the log, not the index.
			x.announce(&st)
		}
		return st, err
	})
}

// indexFrom is index with the instance's state read by load.
func (x *RunnableIndex) indexFrom(ctx context.Context, id string, load func() (projection.State, error)) (projection.State, error) {
	for attempt := 1; ; attempt++ {
		st, err := load()
		if err != nil {
			return st, err
		}
		if err := x.Put(ctx, &st); err != nil {
			return st, err
		}
		m, ok, err := x.s.LastMessage(ctx, id)
		if err != nil {
			return st, fmt.Errorf("jetstream: runnable index: check %q after the put: %w", id, err)
		}
		if !ok && st.LastSeq == 0 || ok && m.Seq == st.LastSeq {
			return st, nil
		}
		if attempt == indexAttempts {
			return st, fmt.Errorf("jetstream: runnable index: %q moved on %d times while being indexed", id, attempt)
		}
	}
}

// maxIndexed bounds what an indexer remembers of the states it put (the
// commits it may skip).
const maxIndexed = 1 << 16

// indexAttempts bounds [RunnableIndex.index]'s loop.
const indexAttempts = 4

// rebuildWorkers is how many instances [RunnableIndex.Rebuild] reads and
// puts at a time.
const rebuildWorkers = 16

// IndexerOptions configure [RunnableIndex.Run].
type IndexerOptions struct {
	// Name is the durable consumer's name, one per partition stream;
	// default "runlog-indexer".
	Name string
	// PinnedTTL is how long an indexer that stopped asking for messages
	// stays the one that gets them, before another process of the group
	// takes over; default 10 s.
	PinnedTTL time.Duration
	// AckWait is how long a commit delivered to an indexer waits for its
	// acknowledgement before it is delivered again; default 5 s. A killed
	// indexer stalls its partitions for PinnedTTL at most; the commits it
	// had been delivered and not acknowledged (at most
	// [IndexerMaxAckPending]) are indexed AckWait after their delivery.
	AckWait time.Duration
	// NoHints: do not publish each runnable task on
	// [RunnableIndex.HintSubject] before its entry's put (for an indexer
	// whose user may not publish there: the server would refuse, and log,
	// every hint); wake-ups then come from the index's updates.
	NoHints bool
}

// IndexerMaxAckPending bounds the commits an indexer may hold delivered
// and unacknowledged. More than one, so that the commits a killed
// indexer held do not stop the next one from indexing those after them
// (it takes over after PinnedTTL, not PinnedTTL plus AckWait): an
// indexer reads the instance's current projection for each commit, so
// the order in which commits are indexed does not change the entry.
const IndexerMaxAckPending = 64

// indexerGroup is the priority group the indexers pull in.
const indexerGroup = "indexers"

// Run keeps the index in step with the log until ctx ends: a durable
// consumer per partition delivers every commit, and for each the
// instance's current projection is read and put. Any number of processes
// may run it: the consumer pins one of them (a priority group with the
// pinned-client policy), so one indexer works per partition at a time, in
// log order, and another takes over when it stops asking for PinnedTTL.
// A commit is acknowledged once the index reflects the instance as of at
// least that commit, so a killed indexer loses nothing: what it did not
// acknowledge is delivered again after AckWait, while the indexer that
// takes over after PinnedTTL goes on with the commits after it. A new
// consumer starts from the first message: the index is built from the log.
func (x *RunnableIndex) Run(ctx context.Context, store *lifecycle.Store, opts IndexerOptions) error {
	if opts.Name == "" {
		opts.Name = "runlog-indexer"
	}
	if opts.PinnedTTL < 0 || opts.AckWait < 0 {
		return fmt.Errorf("%w: IndexerOptions.PinnedTTL %v and AckWait %v, want > 0 (0: the defaults)", ErrInvalidConfig, opts.PinnedTTL, opts.AckWait)
	}
	if opts.AckWait == 0 {
		opts.AckWait = 5 * time.Second
	}
	if opts.PinnedTTL == 0 {
		opts.PinnedTTL = 10 * time.Second
	}
	return eachPartition(ctx, x.s.all, func(ctx context.Context, p *partition) error { return x.runPartition(ctx, store, p, opts) })
}

// eachPartition runs f for each partition, each in its goroutine, until
// ctx ends (it then returns ctx's error) or one f fails (the others are
// stopped and its error returned).
func eachPartition(ctx context.Context, parts []*partition, f func(context.Context, *partition) error) error {
	errs := make(chan error, len(parts))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, p := range parts {
		go func() { errs <- f(ctx, p) }()
	}
	var first error
	for range parts {
		if err := <-errs; err != nil && first == nil && ctx.Err() == nil {
			first = err
			cancel()
		}
	}
	if first != nil {
		return first
	}
	return ctx.Err()
}

func (x *RunnableIndex) runPartition(ctx context.Context, store *lifecycle.Store, p *partition, opts IndexerOptions) error {
	cons, err := x.s.js.CreateOrUpdateConsumer(ctx, p.name, natsjs.ConsumerConfig{
		Durable: opts.Name, Description: "runlog runnable index", FilterSubject: p.filter(),
		DeliverPolicy: natsjs.DeliverAllPolicy, AckPolicy: natsjs.AckExplicitPolicy, AckWait: opts.AckWait, MaxAckPending: IndexerMaxAckPending,
		PriorityPolicy: natsjs.PriorityPolicyPinned, PinnedTTL: opts.PinnedTTL, PriorityGroups: []string{indexerGroup},
	})
	if err != nil {
		return fmt.Errorf("jetstream: runnable indexer: consumer on %s: %w", p.name, err)
	}
	// indexed holds, per instance, the last sequence this indexer put the
	// state of, checked current after the put: a commit delivered later
	// with a sequence at most that (a backlog: the indexer was behind, or
	// down) is in what was put already, and is acknowledged as it is.
	// The callback runs one message at a time.
	indexed := make(map[string]uint64)
	cc, err := cons.Consume(func(m natsjs.Msg) {
		id, err := x.s.instanceFromPartition(p, m.Subject())
		if err != nil {
			_ = m.Ack() // not an instance's message
			return
		}
		if md, err := m.Metadata(); err == nil {
			if seq, ok := indexed[id]; ok && md.Sequence.Stream <= seq {
				_ = m.Ack()
				return
			}
		}
		st, err := x.indexDelivered(ctx, store, id, m, !opts.NoHints)
		if err != nil {
			x.s.log.Warn("jetstream: runnable indexer: update failed, delivered again", slog.String("instance", id), slog.Any(logKeyErr, err))
			_ = m.NakWithDelay(time.Second)
			return
		}
		if len(indexed) >= maxIndexed {
			clear(indexed) // it only saves work
		}
		indexed[id] = st.LastSeq
		_ = m.Ack()
	}, natsjs.PullPriorityGroup(indexerGroup))
	if err != nil {
		return fmt.Errorf("jetstream: runnable indexer: consume %s: %w", p.name, err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

// Wakeups delivers a hint each time a task becomes runnable (or its entry
// changes): the index's updates, watched from now on, as they are put by
// the indexers ([RunnableIndex.Run]), and the hints published on
// [RunnableIndex.HintSubject] by the indexers (as soon as they have read a
// commit, before its entry's put) and by writers ([RunnableIndex.Hints]).
// A hint already delivered for the same commit is not delivered again.
// It is how an idle worker waits for work instead of polling (Sayiir's
// wait_for_wakeup); a hint is only a hint: validate it with
// dispatch.FindHinted before claiming. Stop it with [Wakeups.Stop]. It is
// safe for concurrent use: the workers of a pool may share one, each hint
// going to one of them.
type Wakeups struct {
	w     natsjs.KeyWatcher
	hints chan *nats.Msg // published hints
	sub   *nats.Subscription
	mu    sync.Mutex
	// seen is the sequence of the last hint delivered per instance: the
	// same commit's other hints are left out; cleared when it holds
	// wakeSeen.
	seen map[string]uint64
}

// wakeSeen bounds Wakeups.seen.
const wakeSeen = 4096

// Wakeups starts watching the index for new runnable tasks.
func (x *RunnableIndex) Wakeups(ctx context.Context) (*Wakeups, error) {
	kv, err := x.b.get(ctx, true)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx, natsjs.IgnoreDeletes(), natsjs.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("jetstream: runnable wake-ups: %w", err)
	}
	hints := make(chan *nats.Msg, 256)
	sub, err := x.s.nc.ChanSubscribe(x.HintSubject(), hints)
	if err != nil {
		_ = w.Stop()
		return nil, fmt.Errorf("jetstream: runnable wake-ups: hints: %w", err)
	}
	return &Wakeups{w: w, hints: hints, sub: sub, seen: map[string]uint64{}}, nil
}

// HintSubject is the core NATS subject on which [RunnableIndex.Hints]
// announces runnable tasks: not part of any stream.
func (x *RunnableIndex) HintSubject() string { return "runlog.hints." + x.s.cfg.Stream }

// Hints returns a lifecycle.Config.AfterCommit hook that announces, on
// [RunnableIndex.HintSubject], the task a commit leaves runnable, as soon
// as the log holds the commit: a wake-up without the indexer's round
// trips. [Wakeups] hear both these hints and the index's updates. A hint
// is a core NATS publish (at most once, nobody waits for it, a writer
// without the permission only logs the server's refusal): a worker that
// misses one still finds the task through the index.
func (x *RunnableIndex) Hints() func(context.Context, *projection.State) {
	return func(_ context.Context, st *projection.State) { x.announce(st) }
}

// announce publishes on [RunnableIndex.HintSubject] the entry of the task
// st leaves runnable and unclaimed, if any (at most once: a publish
// nobody waits for).
func (x *RunnableIndex) announce(st *projection.State) {
	e, ok := dispatch.Of(st)
	if !ok || e.Claim != nil {
		return
	}
	data, err := json.Marshal(e)
	if err != nil {
		return
	}
	_ = x.s.nc.Publish(x.HintSubject(), data)
}

// Wait returns the next hint, ok false when none came within timeout (or
// ctx ended first: then the error is ctx's).
func (u *Wakeups) Wait(ctx context.Context, timeout time.Duration) (dispatch.Entry, bool, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return dispatch.Entry{}, false, ctx.Err()
		case <-t.C:
			return dispatch.Entry{}, false, nil
		case m := <-u.hints:
			var e dispatch.Entry
			if json.Unmarshal(m.Data, &e) == nil && e.Instance != "" && u.first(e) {
				return e, true, nil
			}
		case up, open := <-u.w.Updates():
			if !open {
				return dispatch.Entry{}, false, errors.New("jetstream: runnable wake-ups: the watch ended")
			}
			if up == nil {
				continue
			}
			if e, ok := decodeEntry(up.Key(), up.Value()); ok && u.first(e) {
				return e, true, nil
			}
		}
	}
}

// first reports whether e is the first hint of its commit this Wakeups
// delivers, and notes it: a commit's hints (the writer's, the indexer's,
// the index's update, in whatever order they come) are delivered once.
// An entry still backing off is not noted, so that its announcement when
// the backoff ends (the timers put the same entry again) is delivered.
func (u *Wakeups) first(e dispatch.Entry) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if e.Seq != 0 && u.seen[e.Instance] == e.Seq {
		return false
	}
	if time.Now().Before(e.RetryAt) {
		delete(u.seen, e.Instance)
		return true
	}
	if len(u.seen) >= wakeSeen {
		clear(u.seen)
	}
	u.seen[e.Instance] = e.Seq
	return true
}

// Stop ends the watch and the hint subscription.
func (u *Wakeups) Stop() error { return errors.Join(u.sub.Unsubscribe(), u.w.Stop()) }

// putTimer records the timer st derives as of now, or removes the
// instance's.
func (x *RunnableIndex) putTimer(ctx context.Context, st *projection.State) error {
	t, ok := dispatch.TimerOf(st, time.Now())
	return putOrRemove(ctx, x.timers, st.Instance, t, ok)
}

// Timers yields every timer of the index.
func (x *RunnableIndex) Timers(ctx context.Context) iter.Seq2[dispatch.Timer, error] {
	return bucketValues(ctx, x.timers, decodeTimer)
}

// TimerOptions configure [RunnableIndex.RunTimers].
type TimerOptions struct {
	// Poll is the longest it sleeps between two readings of the timers
	// (a timer put meanwhile is seen by the next); default 1 s.
	Poll time.Duration
	// ResumeAgain is how long after announcing a fork whose wake time
	// came ([RunnableIndex.ResumeSubject]) the timers announce it again
	// if its run has not moved; default 30 s.
	ResumeAgain time.Duration
}

// ResumeSubject is the core NATS subject on which [RunnableIndex.RunTimers]
// announces a run parked at a fork whose wake time came (a JSON
// dispatch.Resumable): its runtime resumes it (which branch moves on is
// the runtime's to say). Not part of any stream: at most once, and
// announced again every TimerOptions.ResumeAgain while the run has not
// moved; dispatch.FindResumable lists it too.
func (x *RunnableIndex) ResumeSubject() string { return "runlog.resume." + x.s.cfg.Stream }

// RunTimers fires the durable timers until ctx ends: a run parked at a
// delay or a timed-out signal wait is moved on when its wake time comes
// (lifecycle.Store.AdvanceDue), a run parked at a signal wait whose event
// has arrived is moved on at once, the event consumed
// (lifecycle.Store.AdvanceSignaled), a run parked at a fork whose wake
// time came is announced on [RunnableIndex.ResumeSubject] for its runtime
// to resume, and a retried task's entry is put again
// when its backoff ends, so that waiting workers hear of it. The timers
// are derived from the log (they live in [Log.TimerBucket], kept by the
// indexers), so they survive any restart: a timer whose time passed while
// nothing ran fires at the next start. Any number of processes may run
// it: two firing one timer commit once (the sequence check), the other
// finds the run moved on. A timer fires when this process's clock reaches
// the time the workflow recorded.
func (x *RunnableIndex) RunTimers(ctx context.Context, store *lifecycle.Store, opts TimerOptions) error {
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.ResumeAgain <= 0 {
		opts.ResumeAgain = 30 * time.Second
	}
	for {
		now := time.Now()
		next := now.Add(opts.Poll)
		for t, err := range x.Timers(ctx) {
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return err
			}
			if now.Before(t.At) {
				if t.At.Before(next) {
					next = t.At
				}
				continue
			}
			if err := x.fire(ctx, store, t, now, opts); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				x.s.log.Warn("jetstream: timer not fired, tried again", slog.String("instance", t.Instance), slog.Any(logKeyErr, err))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(next)):
		}
	}
}

// fire does what a due timer asks, then puts the instance's entries again
// (so that the runnable index and the timers do not wait for the
// indexer).
func (x *RunnableIndex) fire(ctx context.Context, store *lifecycle.Store, t dispatch.Timer, now time.Time, opts TimerOptions) error {
	switch t.Kind {
	case dispatch.TimerControl:
		// Applied unless the task is held by a live claim: its worker
		// goes on, and the request is applied once the claim ends.
		st, err := store.Load(ctx, t.Instance)
		if err != nil {
			return err
		}
		if st.Snapshot == nil {
			return x.Put(ctx, &st) // deleted meanwhile
		}
		var at *workflow.TaskID
		if task, ok := st.Snapshot.CurrentTaskID(); ok {
			if c, claimed := st.Claims[task]; claimed && dispatch.Taken(ctx, x.s.Leases())(dispatch.Entry{Instance: t.Instance, Run: st.Run, Task: task, Claim: &c}) {
				return nil
			}
			at = &task
		}
		if _, err := store.CheckControlSignals(ctx, t.Instance, at); err != nil {
			return err
		}
	case dispatch.TimerResume:
		// The run is its runtime's to move: announce it, and again
		// after ResumeAgain if it has not moved (a timer is derived data:
		// the next commit of the run derives it afresh).
		st, err := store.Load(ctx, t.Instance)
		if err != nil {
			return err
		}
		cur, ok := dispatch.TimerOf(&st, now)
		if !ok || cur.Kind != dispatch.TimerResume || now.Before(cur.At) {
			return x.Put(ctx, &st) // moved on meanwhile
		}
		data, err := json.Marshal(dispatch.Resumable{Instance: t.Instance, Run: st.Run, Reason: dispatch.ResumeReady, Since: cur.At})
		if err != nil {
			return err
		}
		if err := x.s.nc.Publish(x.ResumeSubject(), data); err != nil {
			return fmt.Errorf("jetstream: announce the resumable %q: %w", t.Instance, err)
		}
		cur.At = now.Add(opts.ResumeAgain)
		return putOrRemove(ctx, x.timers, t.Instance, cur, true)
	case dispatch.TimerWake:
		if _, err := store.AdvanceDue(ctx, t.Instance, now); err != nil {
			return err
		}
	case dispatch.TimerSignal:
		if _, err := store.AdvanceSignaled(ctx, t.Instance, now); err != nil {
			return err
		}
	}
	st, err := store.Load(ctx, t.Instance)
	if err != nil {
		return err
	}
	return x.Put(ctx, &st)
}

// LiveIndex is a copy of the runnable index kept in this process by a
// watch of the bucket: a [dispatch.OrderedIndex] whose Entries read
// memory, for workers that search often. It keeps the entries in rank
// order for [dispatch.DefaultAgingInterval], so that a ranked search
// ([dispatch.RankOrdered]) reads the entries ahead of its answer rather
// than all of them. It may lag the bucket by the watch's delivery;
// dispatch.Find checks every candidate against the log anyway.
type LiveIndex struct {
	mu      sync.Mutex
	entries *dispatch.RankedSet // for the default aging interval
	// passed holds, per instance, the sequence of a commit the process
	// told of (Passed) that the watch has not delivered the state of
	// yet: entries older than it are left out.
	passed map[string]uint64
	ready  chan struct{}
	w      natsjs.KeyWatcher
}

// maxPassed bounds LiveIndex.passed (an indexer that is down delivers
// nothing that clears it): past it, the marks start afresh (they only
// save searches work).
const maxPassed = 1 << 16

// Live starts a [LiveIndex]; it is ready (holds the bucket's entries)
// when Live returns. Stop it with [LiveIndex.Stop].
func (x *RunnableIndex) Live(ctx context.Context) (*LiveIndex, error) {
	kv, err := x.b.get(ctx, true)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("jetstream: live runnable index: %w", err)
	}
	l := &LiveIndex{entries: dispatch.NewRankedSet(dispatch.DefaultAgingInterval), ready: make(chan struct{}), w: w}
	go l.follow()
	select {
	case <-l.ready:
		return l, nil
	case <-ctx.Done():
		_ = w.Stop()
		return nil, ctx.Err()
	}
}

func (l *LiveIndex) follow() {
	readyOnce := sync.OnceFunc(func() { close(l.ready) })
	defer readyOnce()
	for u := range l.w.Updates() {
		if u == nil {
			readyOnce()
			continue
		}
		var e dispatch.Entry
		put := u.Operation() == natsjs.KeyValuePut
		if put {
			if e, put = decodeEntry(u.Key(), u.Value()); !put {
				continue // not an entry: left as it was
			}
		}
		id, err := DecodeID(u.Key())
		if err != nil {
			continue // not an instance's key
		}
		l.mu.Lock()
		switch floor, marked := l.passed[id]; {
		case put && marked && e.Seq < floor:
			// Older than a commit this process made: stale.
		case put:
			delete(l.passed, id)
			l.entries.Put(e)
		default:
			delete(l.passed, id)
			l.entries.Delete(id)
		}
		l.mu.Unlock()
	}
}

// Entries yields the entries the watch has seen (in rank order for the
// default aging interval, which no caller should rely on).
func (l *LiveIndex) Entries(ctx context.Context) iter.Seq2[dispatch.Entry, error] {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries.Snapshot()
}

// InRankOrder yields the entries the watch has seen by
// [dispatch.CompareRank], ok false (and nothing) unless aging is
// [dispatch.DefaultAgingInterval]: the one order the index keeps.
func (l *LiveIndex) InRankOrder(ctx context.Context, aging time.Duration) (iter.Seq2[dispatch.Entry, error], bool) {
	if aging != l.entries.Aging() {
		return func(func(dispatch.Entry, error) bool) {}, false
	}
	return l.Entries(ctx), true
}

// Passed implements [dispatch.OrderedIndex.Passed]: the instance's entry,
// if it was derived from a state older than seq, is dropped, and the
// watch's older entries of the instance are ignored until it delivers the
// state at seq or later (or the instance's removal; a KV watch delivers
// each key's last value, so a removal replaced before it was read is not
// seen, and the mark stays: harmless, since every later state of the
// instance is at seq or after).
func (l *LiveIndex) Passed(instance string, seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.entries.Get(instance); ok && e.Seq >= seq {
		return
	}
	if l.passed == nil || len(l.passed) >= maxPassed {
		l.passed = make(map[string]uint64)
	}
	if l.passed[instance] < seq {
		l.passed[instance] = seq
	}
	l.entries.Delete(instance)
}

// Len returns the number of entries.
func (l *LiveIndex) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries.Len()
}

// Stop ends the watch.
func (l *LiveIndex) Stop() error { return l.w.Stop() }
