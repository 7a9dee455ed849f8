// Package logtest is the conformance suite of [lifecycle.Log]: every
// implementation (the in-memory log, the JetStream store, a decorator)
// runs it from its own tests, the way slogtest checks a slog.Handler:
//
//	func TestConformance(t *testing.T) {
//		logtest.Run(t, func(t *testing.T) lifecycle.Log {
//			return memlog.New(nil)
//		})
//	}
//
// The suite has two layers:
//
//   - "Log": the contract of the interface itself — the optimistic
//     sequence check, ordered reads exclusive of the cursor, instance ids
//     of any UTF-8 that never collide, idempotent re-appends of one
//     Msg-Id, iterators that stop early and may be ranged again,
//     cancellation, and one winner among concurrent appenders.
//   - "Lifecycle": the behaviour of [lifecycle.Store] built on the log —
//     the policy × state matrix of PrepareRun, the definition check before
//     every policy, refusals that read and write nothing, TerminateExisting
//     as one atomic commit, and concurrent PrepareRun calls.
//
// Each case is a parallel subtest with a fresh log from the factory; the
// factory registers its own cleanup with t.Cleanup. Inputs are fixed (ids,
// clocks, entropy), so a failure reproduces. Run it with -race.
package logtest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
)

// Run runs the conformance suite against the logs made by newLog. newLog
// is called once per case, from that case's goroutine, and must return an
// empty log; it should register the log's cleanup with t.Cleanup.
func Run(t *testing.T, newLog func(t *testing.T) lifecycle.Log) {
	t.Helper()
	t.Run("Log", func(t *testing.T) { runCases(t, newLog, logCases) })
	t.Run("Lifecycle", func(t *testing.T) { runCases(t, newLog, lifecycleCases) })
}

type testCase struct {
	name string
	fn   func(t *testing.T, log lifecycle.Log)
}

func runCases(t *testing.T, newLog func(t *testing.T) lifecycle.Log, cases []testCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			log := newLog(t)
			if log == nil {
				t.Fatal("logtest: the factory returned a nil log")
			}
			c.fn(t, log)
		})
	}
}

// ---- deterministic inputs -------------------------------------------------

// idTime stamps the ULIDs the suite makes itself. It is far from the store
// clock (storeEpoch), so the suite's ids never collide with a store's.
var idTime = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

// storeEpoch starts the clocks of the stores the suite builds.
var storeEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// idGen makes increasing ULIDs from a counter: deterministic and unique
// within a case (Msg-Ids are de-duplicated across the whole log).
type idGen struct {
	mu sync.Mutex
	n  uint64
}

func (g *idGen) next() ulid.ULID {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	var id ulid.ULID
	if err := id.SetTime(ulid.Timestamp(idTime)); err != nil {
		panic(err)
	}
	binary.BigEndian.PutUint64(id[8:], g.n)
	return id
}

// clock is a deterministic clock that advances 1ms per reading.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(start time.Time) *clock { return &clock{now: start} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

// newStore builds a store on log with a fixed clock and entropy seeded by
// the test's name and k: stores sharing one log must differ (k), or their
// ids would collide and the log would take one's commits for retries of
// the other's (Msg-Ids are de-duplicated across the log).
func newStore(t *testing.T, log lifecycle.Log, k int, cfg lifecycle.Config) *lifecycle.Store {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = newClock(storeEpoch.Add(time.Duration(k) * time.Hour)).Now
	}
	if cfg.Entropy == nil {
		seed := sha256.Sum256(fmt.Appendf(nil, "runlog logtest %s %d", t.Name(), k))
		cfg.Entropy = rand.NewChaCha8(seed)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := lifecycle.New(log, cfg)
	if err != nil {
		t.Fatalf("lifecycle.New: %v", err)
	}
	return s
}

// ---- messages ----------------------------------------------------------------

// logMsg returns a valid encoded commit for instance whose payload carries
// label, to tell messages apart. The Log layer does not care what the
// commits mean.
func logMsg(t *testing.T, g *idGen, instance, label string) events.Message {
	t.Helper()
	c := events.Commit{
		ID:       g.next(),
		Instance: instance,
		Time:     idTime,
		Command:  "logtest",
		Events: []events.Event{{
			ID: g.next(), Type: events.SnapshotDeleted, Data: &events.SnapshotDeletedData{Reason: label},
		}},
	}
	msg, err := c.Encode()
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return msg
}

// collect ranges over seq and returns what it yields. It checks the
// iterator contract: an error is yielded at most once, as the last value.
func collect(t *testing.T, seq iter.Seq2[events.Message, error]) ([]events.Message, error) {
	t.Helper()
	var msgs []events.Message
	var err error
	for m, e := range seq {
		if err != nil {
			t.Errorf("iterator yielded (%v, %v) after the error %v: an error must be the last value", m.Seq, e, err)
			break
		}
		if e != nil {
			err = e
			continue // keep ranging: the iterator must stop by itself
		}
		msgs = append(msgs, m)
	}
	return msgs, err
}

// readAll returns the instance's messages after after, failing the test on
// an error.
func readAll(t *testing.T, log lifecycle.Log, instance string, after uint64) []events.Message {
	t.Helper()
	msgs, err := collect(t, log.Read(t.Context(), instance, after))
	if err != nil {
		t.Fatalf("Read(%q, %d): %v", instance, after, err)
	}
	return msgs
}

func mustAppend(t *testing.T, log lifecycle.Log, instance string, msg events.Message, expect uint64) uint64 {
	t.Helper()
	seq, err := log.Append(t.Context(), instance, msg, expect)
	if err != nil {
		t.Fatalf("Append(%q, expect %d): %v", instance, expect, err)
	}
	if seq == 0 {
		t.Fatalf("Append(%q) returned sequence 0", instance)
	}
	return seq
}

func lastSeq(t *testing.T, log lifecycle.Log, instance string) uint64 {
	t.Helper()
	msgs := readAll(t, log, instance, 0)
	if len(msgs) == 0 {
		return 0
	}
	return msgs[len(msgs)-1].Seq
}

// sameMessage reports how got (read back) differs from want (appended).
func sameMessage(got, want events.Message) error {
	if got.MsgID != want.MsgID {
		return fmt.Errorf("MsgID %q, want %q", got.MsgID, want.MsgID)
	}
	if string(got.Data) != string(want.Data) {
		return fmt.Errorf("data %q, want %q", got.Data, want.Data)
	}
	for k, vs := range want.Header {
		if k == events.HeaderMsgID {
			continue // a log may keep the Msg-Id apart from the headers
		}
		g := got.Header[k]
		if len(g) != len(vs) {
			return fmt.Errorf("header %s = %q, want %q", k, g, vs)
		}
		for i := range vs {
			if g[i] != vs[i] {
				return fmt.Errorf("header %s = %q, want %q", k, g, vs)
			}
		}
	}
	return nil
}

// ---- a spy ----------------------------------------------------------------

// spy counts the calls a store makes to its log.
type spy struct {
	lifecycle.Log
	reads, appends, lasts atomic.Int64
}

func (s *spy) Read(ctx context.Context, instance string, after uint64) iter.Seq2[events.Message, error] {
	s.reads.Add(1)
	return s.Log.Read(ctx, instance, after)
}

func (s *spy) Append(ctx context.Context, instance string, msg events.Message, expect uint64) (uint64, error) {
	s.appends.Add(1)
	return s.Log.Append(ctx, instance, msg, expect)
}

// spyLast is a spy that passes the optional [lifecycle.Last] through.
type spyLast struct{ *spy }

func (s spyLast) LastMessage(ctx context.Context, instance string) (events.Message, bool, error) {
	s.lasts.Add(1)
	return s.Log.(lifecycle.Last).LastMessage(ctx, instance)
}

func (s spyLast) MessageAt(ctx context.Context, instance string, seq uint64) (events.Message, bool, error) {
	s.lasts.Add(1)
	return s.Log.(lifecycle.Last).MessageAt(ctx, instance, seq)
}

// newSpy wraps log, keeping its optional capability.
func newSpy(log lifecycle.Log) (lifecycle.Log, *spy) {
	s := &spy{Log: log}
	if _, ok := log.(lifecycle.Last); ok {
		return spyLast{s}, s
	}
	return s, s
}

func (s *spy) calls() int64 { return s.reads.Load() + s.appends.Load() + s.lasts.Load() }

// errorsIs is errors.Is with a readable failure.
func errorsIs(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v does not match %v", what, err, target)
	}
}

func jsonOf(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
