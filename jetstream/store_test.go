package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newStore opens a store on a fresh embedded server.
func newStore(t *testing.T, cfg Config) (*Log, *server.Server, *nats.Conn) {
	t.Helper()
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv)
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s, err := Open(t.Context(), nc, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, srv, nc
}

func testMsg(id, data string) events.Message {
	return events.Message{
		MsgID: id,
		Header: map[string][]string{
			events.HeaderMsgID:  {id},
			events.HeaderSchema: {"1"},
			"Runlog-Test":       {"a", "b"},
		},
		Data: []byte(data),
	}
}

func streamMsgs(t *testing.T, s *Log) uint64 {
	t.Helper()
	info, err := s.parts[0].stream.Info(t.Context())
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

func mustAppend(t *testing.T, s *Log, instance string, msg events.Message, expect uint64) uint64 {
	t.Helper()
	seq, err := s.Append(t.Context(), instance, msg, expect)
	if err != nil {
		t.Fatalf("Append(%q, %s, %d): %v", instance, msg.MsgID, expect, err)
	}
	return seq
}

func collect(t *testing.T, seq func(func(events.Message, error) bool)) []events.Message {
	t.Helper()
	var out []events.Message
	for m, err := range seq {
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		out = append(out, m)
	}
	return out
}

func seqs(ms []events.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func TestOpenCreatesStream(t *testing.T) {
	s, _, nc := newStore(t, Config{Duplicates: time.Minute})
	info, err := s.parts[0].stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Name != "RUNLOG" || !slices.Equal(c.Subjects, []string{"runlog.wf.>"}) || c.Retention != natsjs.LimitsPolicy ||
		c.Storage != natsjs.FileStorage || c.Replicas != 1 || !c.AllowDirect || !c.DenyDelete || !c.DenyPurge ||
		c.Duplicates != time.Minute || c.MaxAge != 0 || c.MaxMsgs > 0 || c.MaxBytes > 0 || c.MaxMsgsPerSubject > 0 {
		t.Fatalf("stream config = %+v", c)
	}

	// Open again: the stream is verified, not changed.
	s2, err := Open(t.Context(), nc, Config{Duplicates: time.Minute})
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	info2, err := s2.parts[0].stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !info2.Created.Equal(info.Created) {
		t.Fatalf("stream recreated: created %v then %v", info.Created, info2.Created)
	}
	// A different duplicate window is not a difference that matters.
	if _, err := Open(t.Context(), nc, Config{Duplicates: 5 * time.Minute}); err != nil {
		t.Fatalf("Open with another duplicate window: %v", err)
	}
}

func TestOpenStreamMismatch(t *testing.T) {
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	orig := natsjs.StreamConfig{Name: "RUNLOG", Subjects: []string{"other.>"}, MaxAge: time.Hour}
	if _, err := js.CreateStream(t.Context(), orig); err != nil {
		t.Fatal(err)
	}
	_, err = Open(t.Context(), nc, Config{})
	if !errors.Is(err, ErrStreamMismatch) {
		t.Fatalf("Open = %v, want ErrStreamMismatch", err)
	}
	mm, ok := errors.AsType[*StreamMismatchError](err)
	if !ok {
		t.Fatalf("Open error %T is not a *StreamMismatchError", err)
	}
	want := []string{
		"subjects are [other.>] want [runlog.wf.>]",
		"allow_direct is false want true",
		"deny_delete is false want true (messages can be deleted)",
		"deny_purge is false want true (subjects can be purged)",
		"max_age is 1h0m0s want 0 (unlimited)",
	}
	if mm.Stream != "RUNLOG" || !slices.Equal(mm.Differences, want) {
		t.Fatalf("differences = %q, want %q", mm.Differences, want)
	}
	t.Logf("error text: %v", err)
	if !strings.Contains(err.Error(), "stream RUNLOG: subjects are [other.>] want [runlog.wf.>]; ") {
		t.Errorf("error text %q", err)
	}

	// Untouched.
	st, err := js.Stream(t.Context(), "RUNLOG")
	if err != nil {
		t.Fatal(err)
	}
	c := st.CachedInfo().Config
	if !slices.Equal(c.Subjects, orig.Subjects) || c.MaxAge != time.Hour || c.AllowDirect || c.DenyDelete {
		t.Fatalf("stream was modified: %+v", c)
	}
}

// Every setting under which a stream can lose or rewrite history is
// refused by Open, each named, and reported by StreamProblems on a store
// opened read-only; a read-only store refuses appends.
func TestOpenUnsafeStream(t *testing.T) {
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	base, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		field string
		edit  func(*natsjs.StreamConfig)
	}{
		{"deny_delete", func(c *natsjs.StreamConfig) { c.DenyDelete = false }},
		{"deny_purge", func(c *natsjs.StreamConfig) { c.DenyPurge = false }},
		{"deny_purge allow_rollup_hdrs", func(c *natsjs.StreamConfig) { c.AllowRollup, c.DenyPurge = true, false }}, // the server wants both
		{"allow_msg_ttl", func(c *natsjs.StreamConfig) { c.AllowMsgTTL = true }},
		{"max_msgs_per_subject", func(c *natsjs.StreamConfig) { c.MaxMsgsPerSubject = 10 }},
		{"max_age", func(c *natsjs.StreamConfig) { c.MaxAge = time.Hour }},
		{"max_msgs", func(c *natsjs.StreamConfig) { c.MaxMsgs = 1000 }},
		{"max_bytes", func(c *natsjs.StreamConfig) { c.MaxBytes = 1 << 20 }},
		{"discard", func(c *natsjs.StreamConfig) { c.Discard = natsjs.DiscardNew }},
		{"retention", func(c *natsjs.StreamConfig) { c.Retention = natsjs.InterestPolicy }},
		{"persist_mode", func(c *natsjs.StreamConfig) { c.PersistMode = natsjs.AsyncPersistMode }},
	}
	for i, tc := range cases {
		cfg := base
		cfg.Stream = fmt.Sprintf("UNSAFE%d", i)
		cfg.Subject = fmt.Sprintf("unsafe%d", i)
		sc := streamConfig(cfg, &partition{name: cfg.Stream, prefix: cfg.Subject}, 1)
		tc.edit(&sc)
		if _, err := js.CreateStream(t.Context(), sc); err != nil {
			t.Fatalf("%s: create: %v", tc.field, err)
		}
		_, err := Open(t.Context(), nc, Config{Stream: cfg.Stream, Subject: cfg.Subject})
		mm, ok := errors.AsType[*StreamMismatchError](err)
		fields := strings.Fields(tc.field)
		named := ok && len(mm.Differences) == len(fields)
		for j := 0; named && j < len(fields); j++ {
			named = strings.HasPrefix(mm.Differences[j], fields[j]+" is ")
		}
		if !named {
			t.Errorf("%s: Open = %v, want a mismatch naming only %s", tc.field, err, tc.field)
			continue
		}
		ro, err := Open(t.Context(), nc, Config{Stream: cfg.Stream, Subject: cfg.Subject, ReadOnly: true, Replicas: 1, Storage: natsjs.MemoryStorage})
		if err != nil {
			t.Errorf("%s: Open read-only: %v", tc.field, err)
			continue
		}
		ps, err := ro.StreamProblems(t.Context())
		if err != nil || !slices.Equal(ps, mm.Differences) {
			t.Errorf("%s: StreamProblems = %q, %v, want %q", tc.field, ps, err, mm.Differences)
		}
		if _, err := ro.Append(t.Context(), "x", testMsg("m", "x"), 0); !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s: read-only Append = %v, want ErrReadOnly", tc.field, err)
		}
	}
	// A safe stream has no problems, and read-only still needs direct
	// gets and the subjects.
	s, _, _ := newStore(t, Config{})
	if ps, err := s.StreamProblems(t.Context()); err != nil || len(ps) != 0 {
		t.Errorf("StreamProblems of a store's own stream = %q, %v", ps, err)
	}
	if _, err := Open(t.Context(), nc, Config{Stream: "UNSAFE0", Subject: "other", ReadOnly: true}); !errors.Is(err, ErrStreamMismatch) {
		t.Errorf("read-only Open with other subjects = %v, want ErrStreamMismatch", err)
	}
	if _, err := Open(t.Context(), nc, Config{Stream: "MISSING", ReadOnly: true}); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("read-only Open of a missing stream = %v, want ErrStreamNotFound", err)
	}
}

func TestOpenInvalidConfig(t *testing.T) {
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv)
	for _, cfg := range []Config{
		{Stream: "a.b"},
		{Stream: "a b"},
		{Stream: "a*"},
		{Subject: "a.*"},
		{Subject: "a.>"},
		{Subject: "a..b"},
		{Subject: ".a"},
		{Subject: "a b"},
		{Replicas: 6},
		{Replicas: -1},
		{Storage: 7},
		{Duplicates: -time.Second},
		{ReadBatch: -1},
	} {
		if _, err := Open(t.Context(), nc, cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Open(%+v) = %v, want ErrInvalidConfig", cfg, err)
		} else {
			t.Logf("%v", err)
		}
	}
	if _, err := Open(t.Context(), nc, Config{NoCreate: true}); !errors.Is(err, natsjs.ErrStreamNotFound) {
		t.Errorf("Open(NoCreate) of a missing stream = %v, want ErrStreamNotFound", err)
	}
	if _, err := Open(t.Context(), nil, Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Open(nil conn) = %v, want ErrInvalidConfig", err)
	}
}

func TestAppendRead(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	ctx := t.Context()
	const id = "order.42"

	if got := collect(t, s.Read(ctx, id, 0)); len(got) != 0 {
		t.Fatalf("Read of an empty instance = %v", got)
	}
	if _, ok, err := s.LastMessage(ctx, id); ok || err != nil {
		t.Fatalf("LastMessage of an empty instance = %v, %v", ok, err)
	}

	s1 := mustAppend(t, s, id, testMsg("m1", `{"n":1}`), 0)

	// A wrong expectation stores nothing.
	for _, expect := range []uint64{0, s1 + 1, 999} {
		_, err := s.Append(ctx, id, testMsg("bad", "x"), expect)
		if !errors.Is(err, lifecycle.ErrWrongSequence) {
			t.Fatalf("Append with expect %d = %v, want ErrWrongSequence", expect, err)
		}
		if _, ok := errors.AsType[*natsjs.APIError](err); !ok {
			t.Errorf("wrong-sequence error %v does not wrap the *APIError", err)
		}
		if !strings.Contains(err.Error(), `jetstream: append "order.42"`) {
			t.Errorf("error text %q", err)
		}
	}
	if n := streamMsgs(t, s); n != 1 {
		t.Fatalf("stream has %d messages, want 1", n)
	}

	// Another instance in between: sequences are stream-wide.
	mustAppend(t, s, "other", testMsg("o1", "o"), 0)
	s2 := mustAppend(t, s, id, testMsg("m2", `{"n":2}`), s1)
	s3 := mustAppend(t, s, id, testMsg("m3", `{"n":3}`), s2)
	if !(s1 < s2 && s2 < s3) || s2 == s1+1 {
		t.Fatalf("sequences %d %d %d", s1, s2, s3)
	}

	all := collect(t, s.Read(ctx, id, 0))
	if want := []uint64{s1, s2, s3}; !slices.Equal(seqs(all), want) {
		t.Fatalf("Read(0) sequences = %v, want %v", seqs(all), want)
	}
	m := all[1]
	if m.MsgID != "m2" || string(m.Data) != `{"n":2}` || m.Time.IsZero() || time.Since(m.Time) > time.Minute {
		t.Fatalf("message = %+v", m)
	}
	if got := m.Header["Runlog-Test"]; !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Runlog-Test header = %q", got)
	}
	for _, h := range batchHeaders {
		if _, ok := m.Header[h]; ok {
			t.Errorf("header %s from the direct get was kept", h)
		}
	}
	t.Logf("stored headers: %v", slices.Sorted(maps.Keys(m.Header)))

	if got := collect(t, s.Read(ctx, id, s1)); !slices.Equal(seqs(got), []uint64{s2, s3}) {
		t.Fatalf("Read(after %d) = %v", s1, seqs(got))
	}
	if got := collect(t, s.Read(ctx, id, s2-1)); !slices.Equal(seqs(got), []uint64{s2, s3}) {
		t.Fatalf("Read(after %d) = %v", s2-1, seqs(got))
	}
	if got := collect(t, s.Read(ctx, id, s3)); len(got) != 0 {
		t.Fatalf("Read(after last) = %v", seqs(got))
	}

	last, ok, err := s.LastMessage(ctx, id)
	if err != nil || !ok || last.Seq != s3 || last.MsgID != "m3" || string(last.Data) != `{"n":3}` {
		t.Fatalf("LastMessage = %+v, %v, %v", last, ok, err)
	}
	if _, ok := last.Header[natsjs.SequenceHeader]; ok {
		t.Errorf("LastMessage kept the direct get headers: %v", last.Header)
	}
}

func TestAppendDoesNotModifyHeader(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	msg := testMsg("m1", "x")
	before := maps.Clone(msg.Header)
	mustAppend(t, s, "a", msg, 0)
	if !maps.EqualFunc(before, msg.Header, slices.Equal) {
		t.Fatalf("header changed: %v -> %v", before, msg.Header)
	}
}

func TestInstancesDoNotCollide(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	ids := []string{"a.b", "a*b", "a>b", "a b", "a=2Eb", "a=b", "ab", "a.*", "a.>", "日本", "e\u0301", "é"}
	want := map[string]uint64{}
	for i, id := range ids {
		// expect 0 succeeds for each: every id has its own subject.
		want[id] = mustAppend(t, s, id, testMsg(fmt.Sprintf("m%d", i), id), 0)
	}
	for _, id := range ids {
		got := collect(t, s.Read(t.Context(), id, 0))
		if len(got) != 1 || got[0].Seq != want[id] || string(got[0].Data) != id {
			t.Errorf("Read(%q) = %v, want only seq %d", id, seqs(got), want[id])
		}
	}
}

// AllInstances lists every instance once, in the order of the subjects,
// from a cursor, and stops when asked; a foreign subject is skipped.
func TestAllInstances(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	ctx := t.Context()
	ids := []string{"b", "a.b", "a", "é", "z-1", "Z", "a_b"}
	seq := map[string]uint64{}
	for i, id := range ids {
		seq[id] = mustAppend(t, s, id, testMsg(fmt.Sprintf("m%d", i), id), 0)
	}
	mustAppend(t, s, "a", testMsg("m-a2", "again"), seq["a"]) // a second message: still one instance
	if _, err := s.js.Publish(ctx, "runlog.wf.not=ZZcanonical", []byte("x")); err != nil {
		t.Fatal(err)
	}
	all := func(after string) []string {
		t.Helper()
		var got []string
		for id, err := range s.AllInstances(ctx, after) {
			if err != nil {
				t.Fatalf("AllInstances(%q): %v", after, err)
			}
			got = append(got, id)
		}
		return got
	}
	// The order of the encoded subjects: "a.b" is "a=2Eb", "é" is "=C3=A9".
	want := []string{"é", "Z", "a", "a.b", "a_b", "b", "z-1"}
	if got := all(""); !slices.Equal(got, want) {
		t.Fatalf("AllInstances = %q, want %q", got, want)
	}
	if got := all("a.b"); !slices.Equal(got, want[4:]) {
		t.Errorf("AllInstances after %q = %q, want %q", "a.b", got, want[4:])
	}
	if got := all("zz"); len(got) != 0 {
		t.Errorf("AllInstances after the last = %q", got)
	}
	n := 0
	for range s.AllInstances(ctx, "") {
		if n++; n == 2 {
			break
		}
	}
	for _, err := range s.AllInstances(ctx, strings.Repeat("x", 300)) {
		if !errors.Is(err, workflow.ErrInvalidInstanceID) {
			t.Errorf("AllInstances with a 300-byte cursor: %v, want ErrInvalidInstanceID", err)
		}
	}
}

func TestAppendSameMsgIDTwice(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	ctx := t.Context()
	s1 := mustAppend(t, s, "x", testMsg("m1", "one"), 0)

	// Retry with the same expectation: the server says wrong sequence
	// (R1 checks the sequence before de-duplicating); the probe finds m1.
	if got, err := s.Append(ctx, "x", testMsg("m1", "one"), 0); err != nil || got != s1 {
		t.Fatalf("retry of m1 = %d, %v; want %d, nil", got, err, s1)
	}
	// With the now-correct expectation: a duplicate ack.
	if got, err := s.Append(ctx, "x", testMsg("m1", "one"), s1); err != nil || got != s1 {
		t.Fatalf("re-append of m1 expecting %d = %d, %v; want %d, nil", s1, got, err, s1)
	}
	if n := streamMsgs(t, s); n != 1 {
		t.Fatalf("stream has %d messages, want 1", n)
	}

	// Once m1 is no longer the last message, re-appending it is a
	// conflict.
	s2 := mustAppend(t, s, "x", testMsg("m2", "two"), s1)
	if _, err := s.Append(ctx, "x", testMsg("m1", "one"), 0); !errors.Is(err, lifecycle.ErrWrongSequence) {
		t.Fatalf("re-append of m1 behind m2 = %v, want ErrWrongSequence", err)
	}
	// The same Msg-Id on another instance is de-duplicated stream-wide
	// within the window; Append must not report x's message as y's.
	if got, err := s.Append(ctx, "y", testMsg("m1", "one"), 0); err == nil || errors.Is(err, lifecycle.ErrWrongSequence) {
		t.Fatalf("Append of x's Msg-Id to y = %d, %v; want an error other than ErrWrongSequence", got, err)
	} else {
		t.Logf("Msg-Id reuse: %v", err)
	}
	if n := streamMsgs(t, s); n != 2 {
		t.Fatalf("stream has %d messages, want 2 (last %d)", n, s2)
	}
}

func TestReadPagingAndEarlyStop(t *testing.T) {
	s, _, nc := newStore(t, Config{ReadBatch: 2})
	ctx := t.Context()
	var want []uint64
	var last, noise uint64
	for i := range 7 {
		last = mustAppend(t, s, "p", testMsg(fmt.Sprintf("m%d", i), fmt.Sprint(i)), last)
		noise = mustAppend(t, s, "noise", testMsg(fmt.Sprintf("n%d", i), "n"), noise)
		want = append(want, last)
	}
	subs := nc.NumSubscriptions()
	if got := collect(t, s.Read(ctx, "p", 0)); !slices.Equal(seqs(got), want) {
		t.Fatalf("Read = %v, want %v", seqs(got), want)
	}
	// The first batched read made the one subscription every batched
	// read shares (replies), and no other.
	if got := nc.NumSubscriptions(); got != subs+1 {
		t.Fatalf("subscriptions: %d before the first read, %d after, want one more (the shared reply subscription)", subs, got)
	}
	subs++
	if got := collect(t, s.Read(ctx, "p", want[2])); !slices.Equal(seqs(got), want[3:]) {
		t.Fatalf("Read(after %d) = %v, want %v", want[2], seqs(got), want[3:])
	}

	// Stop early, in the first page and in a later one.
	for _, stopAt := range []int{1, 3} {
		seq := s.Read(ctx, "p", 0)
		n := 0
		for _, err := range seq {
			if err != nil {
				t.Fatal(err)
			}
			n++
			if n == stopAt {
				break
			}
		}
		// The same iterator may be ranged again, from the start.
		if got := collect(t, seq); !slices.Equal(seqs(got), want) {
			t.Fatalf("re-range after stopping at %d = %v", stopAt, seqs(got))
		}
	}
	if got := nc.NumSubscriptions(); got != subs {
		t.Fatalf("subscriptions: %d before, %d after: an iterator leaked one", subs, got)
	}
	s.replies.mu.Lock()
	waiting := len(s.replies.waiting)
	s.replies.mu.Unlock()
	if waiting != 0 {
		t.Fatalf("%d batched reads still wait for replies after every iterator stopped: an iterator leaked its request", waiting)
	}
	// The connection is not the store's: Close takes the shared
	// subscription off it, and a read after Close fails.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := nc.NumSubscriptions(); got != subs-1 {
		t.Fatalf("subscriptions: %d after Close, want %d (the shared reply subscription removed)", got, subs-1)
	}
	for _, err := range s.Read(ctx, "p", 0) {
		if err == nil {
			t.Fatal("Read after Close yielded a message")
		}
		break
	}
}

func TestReadCancelled(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	mustAppend(t, s, "c", testMsg("m1", "x"), 0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	n := 0
	for _, err := range s.Read(ctx, "c", 0) {
		n++
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Read with a cancelled context yielded %v", err)
		}
	}
	if n != 1 {
		t.Fatalf("yielded %d values, want one error", n)
	}
}

func TestInvalidInstanceID(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	for _, id := range []string{"", strings.Repeat("x", 257), "\xff"} {
		if _, err := s.Append(t.Context(), id, testMsg("m", "x"), 0); !errors.Is(err, workflow.ErrInvalidInstanceID) {
			t.Errorf("Append(%q) = %v, want ErrInvalidInstanceID", id, err)
		}
		for _, err := range s.Read(t.Context(), id, 0) {
			if !errors.Is(err, workflow.ErrInvalidInstanceID) {
				t.Errorf("Read(%q) = %v, want ErrInvalidInstanceID", id, err)
			}
		}
	}
	// 256 bytes of multi-byte runes: the longest subject token.
	long := strings.Repeat("é", 128)
	mustAppend(t, s, long, testMsg("m", "x"), 0)
	if got := collect(t, s.Read(t.Context(), long, 0)); len(got) != 1 {
		t.Fatalf("Read(long) = %v", seqs(got))
	}
	if n := streamMsgs(t, s); n != 1 {
		t.Fatalf("stream has %d messages, want 1", n)
	}
}

func TestAppendTooLarge(t *testing.T) {
	s, _, nc := newStore(t, Config{})
	max := nc.MaxPayload()
	msg := testMsg("big", "")
	msg.Data = make([]byte, max) // the headers push it over
	_, err := s.Append(t.Context(), "big", msg, 0)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append of %d bytes = %v, want ErrTooLarge", max, err)
	}
	t.Logf("error text: %v", err)
	if !strings.Contains(err.Error(), fmt.Sprint(max)) {
		t.Errorf("error %q does not name the limit", err)
	}
	if n := streamMsgs(t, s); n != 0 {
		t.Fatalf("stream has %d messages, want 0", n)
	}
	// Just under the limit is fine.
	msg.Data = make([]byte, max-2048)
	mustAppend(t, s, "big", msg, 0)
}

// A scan whose last messages were deleted ends instead of waiting for
// them for ever: the stream's last sequence stays that of a deleted
// message (runlog's streams deny deletes, but a stream made by someone
// else may not).
func TestScanEndsWhenItsTailIsDeleted(t *testing.T) {
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	sc := streamConfig(cfg, &partition{name: cfg.Stream, prefix: cfg.Subject}, 1)
	sc.DenyDelete = false
	st, err := js.CreateStream(t.Context(), sc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), nc, Config{Logger: testLogger(t)}); !errors.Is(err, ErrStreamMismatch) {
		t.Fatalf("Open on a stream that allows deletes: %v, want ErrStreamMismatch", err)
	}
	s, err := Open(t.Context(), nc, Config{Logger: testLogger(t), ReadOnly: true})
	if err != nil {
		t.Fatalf("Open read-only on a stream that allows deletes: %v", err)
	}
	s.scanWait = 50 * time.Millisecond
	// The same stream, written as another program would.
	w := &Log{cfg: s.cfg, log: s.log, nc: s.nc, js: s.js, all: s.all, parts: s.parts, request: s.request, replies: s.replies}
	w.cfg.ReadOnly = false
	first := mustAppend(t, w, "a", testMsg("m1", "one"), 0)
	second := mustAppend(t, w, "a", testMsg("m2", "two"), first)
	third := mustAppend(t, w, "b", testMsg("m3", "three"), 0)
	for _, seq := range []uint64{second, third} {
		if err := st.DeleteMsg(t.Context(), seq); err != nil {
			t.Fatalf("delete %d: %v", seq, err)
		}
	}
	scan := func(after uint64) []uint64 {
		t.Helper()
		var got []uint64
		for m, err := range s.Scan(t.Context(), after) {
			if err != nil {
				t.Fatalf("Scan after %d: %v", after, err)
			}
			got = append(got, m.Seq)
		}
		return got
	}
	if got := scan(0); !slices.Equal(got, []uint64{first}) {
		t.Errorf("Scan from the start = %v, want [%d]", got, first)
	}
	// Nothing is left after first, though the stream's last sequence is
	// third's: the scan finds out and ends.
	if got := scan(first); len(got) != 0 {
		t.Errorf("Scan after %d = %v, want nothing", first, got)
	}
}

func TestAppendClosedConnection(t *testing.T) {
	s, _, nc := newStore(t, Config{})
	nc.Close()
	_, err := s.Append(t.Context(), "x", testMsg("m1", "x"), 0)
	if !errors.Is(err, nats.ErrConnectionClosed) {
		t.Fatalf("Append after Close = %v, want ErrConnectionClosed", err)
	}
	if errors.Is(err, lifecycle.ErrWrongSequence) {
		t.Fatalf("closed connection reported as a conflict: %v", err)
	}
	for _, err := range s.Read(t.Context(), "x", 0) {
		if err == nil {
			t.Fatal("Read after Close yielded a message")
		}
		t.Logf("Read after close: %v", err)
	}
}

func TestWrongSequenceCodes(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("nats: %w", &natsjs.APIError{Code: 400, ErrorCode: 10071, Description: "wrong last sequence: 5"}), true},
		{fmt.Errorf("nats: %w", &natsjs.APIError{Code: 400, ErrorCode: 10164, Description: "wrong last sequence"}), true},
		{fmt.Errorf("nats: %w", &natsjs.APIError{Code: 400, ErrorCode: 10070, Description: "wrong last sequence"}), false},
		{errors.New("wrong last sequence: 5"), false},
		{nats.ErrTimeout, false},
	} {
		if _, got := wrongSequence(tt.err); got != tt.want {
			t.Errorf("wrongSequence(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if !transient(nats.ErrTimeout) || !transient(natsjs.ErrNoStreamResponse) || transient(nats.ErrConnectionClosed) ||
		!transient(&natsjs.APIError{Code: 409, ErrorCode: 10158}) {
		t.Error("transient classification")
	}
}

func TestScanAndInstances(t *testing.T) {
	s, _, nc := newStore(t, Config{ReadBatch: 3})
	ctx := t.Context()
	ids := []string{"b", "a.b", "c", "a", "日本", "a b", "z", "a-b", "-", " "}
	var all []uint64
	for i, id := range ids {
		all = append(all, mustAppend(t, s, id, testMsg(fmt.Sprintf("m%d", i), id), 0))
	}
	// A message another program put under the prefix.
	js, _ := natsjs.New(nc)
	ack, err := js.Publish(ctx, "runlog.wf.bad=zz", []byte("foreign"))
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, ack.Sequence)

	var got []uint64
	for m, err := range s.Scan(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Seq)
		if string(m.Data) == "foreign" {
			if !errors.Is(m.InstanceErr, ErrInvalidSubject) || m.Instance != "" || !strings.Contains(m.InstanceErr.Error(), "runlog.wf.bad=zz") {
				t.Errorf("foreign message: instance %q, err %v", m.Instance, m.InstanceErr)
			}
			continue
		}
		if m.InstanceErr != nil || string(m.Data) != m.Instance {
			t.Errorf("scanned %+v", m)
		}
	}
	if !slices.Equal(got, all) {
		t.Fatalf("Scan = %v, want %v", got, all)
	}
	got = nil
	for m, err := range s.Scan(ctx, all[4]) { // and ReadBatch 3: pages
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Seq)
	}
	if !slices.Equal(got, all[5:]) {
		t.Fatalf("Scan(after %d) = %v, want %v", all[4], got, all[5:])
	}

	// Instances, two per page, in the order of the ids.
	var listed []string
	after := ""
	for range 10 {
		page, err := s.Instances(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, page...)
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1]
	}
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(listed, want) {
		t.Fatalf("Instances = %q, want %q", listed, want)
	}
	if page, err := s.Instances(ctx, "", 0); err != nil || len(page) != len(ids) {
		t.Fatalf("Instances(limit 0) = %q, %v", page, err)
	}
}

func TestFollow(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s1 := mustAppend(t, s, "f", testMsg("m1", "1"), 0)
	s2 := mustAppend(t, s, "f", testMsg("m2", "2"), s1)
	mustAppend(t, s, "g", testMsg("g1", "g"), 0)

	fctx, stop := context.WithCancel(ctx)
	defer stop()
	var got []uint64
	var end error
	for m, err := range s.Follow(fctx, "f", s1) {
		if err != nil {
			end = err
			break
		}
		got = append(got, m.Seq)
		switch len(got) {
		case 1:
			go func() { // a new message while following
				_, _ = s.Append(ctx, "f", testMsg("m3", "3"), s2)
			}()
		case 2:
			if m.MsgID != "m3" || string(m.Data) != "3" {
				t.Errorf("followed %+v", m)
			}
			stop()
		}
	}
	if !errors.Is(end, context.Canceled) {
		t.Fatalf("Follow ended with %v, want context.Canceled", end)
	}
	if len(got) != 2 || got[0] != s2 {
		t.Fatalf("Follow yielded %v", got)
	}
	info, err := s.parts[0].stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("%d consumers left after Follow", info.State.Consumers)
	}

	// Stopping by break also cleans up.
	for range s.Follow(ctx, "f", 0) {
		break
	}
	if info, _ := s.parts[0].stream.Info(ctx); info.State.Consumers != 0 {
		t.Fatalf("%d consumers left after break", info.State.Consumers)
	}
}

func TestOpenEmbeddedRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	open := func() *Log {
		s, err := OpenEmbedded(ctx, EmbeddedConfig{Dir: dir, Logger: testLogger(t)}, Config{Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("OpenEmbedded: %v", err)
		}
		return s
	}
	s := open()
	s1 := mustAppend(t, s, "r.1", testMsg("m1", "one"), 0)
	s2 := mustAppend(t, s, "r.1", testMsg("m2", "two"), s1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !s.nc.IsClosed() {
		t.Fatal("Close left the connection open")
	}

	s = open()
	defer s.Close()
	got := collect(t, s.Read(ctx, "r.1", 0))
	if !slices.Equal(seqs(got), []uint64{s1, s2}) || string(got[1].Data) != "two" || got[1].MsgID != "m2" {
		t.Fatalf("after restart: %+v", got)
	}
	if _, err := s.Append(ctx, "r.1", testMsg("m3", "three"), s2); err != nil {
		t.Fatal(err)
	}
}

func TestEmbeddedListenAndConnect(t *testing.T) {
	ctx := t.Context()
	emb, err := StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", SyncInterval: time.Second, MaxPayload: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	url := emb.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") || strings.HasSuffix(url, ":-1") {
		t.Fatalf("ClientURL = %q", url)
	}
	s, err := Connect(ctx, url, ConnectConfig{Name: "test"}, Config{Stream: "NET", Subject: "net.wf"})
	if err != nil {
		t.Fatal(err)
	}
	seq := mustAppend(t, s, "n", testMsg("m1", "x"), 0)
	if s.nc.MaxPayload() != 64<<10 {
		t.Errorf("max payload %d", s.nc.MaxPayload())
	}
	msg := testMsg("big", "")
	msg.Data = make([]byte, 64<<10)
	if _, err := s.Append(ctx, "n", msg, seq); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Append of 64 KiB = %v, want ErrTooLarge", err)
	}
	nc := s.nc
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !nc.IsClosed() {
		t.Fatal("Close left the connection open")
	}

	// An in-process connection to the same server, and a store that does
	// not own it.
	nc2, err := emb.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	s2, err := Open(ctx, nc2, Config{Stream: "NET", Subject: "net.wf"})
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, s2.Read(ctx, "n", 0)); len(got) != 1 || got[0].Seq != seq {
		t.Fatalf("Read = %v", seqs(got))
	}
	_ = s2.Close()
	if nc2.IsClosed() {
		t.Fatal("Close of a store made by Open closed the caller's connection")
	}
	if emb.Server() == nil {
		t.Fatal("nil server")
	}
}

func TestEmbeddedInvalidConfig(t *testing.T) {
	for _, cfg := range []EmbeddedConfig{
		{},
		{Dir: t.TempDir(), SyncInterval: -1},
		{Dir: t.TempDir(), MaxPayload: -1},
		{Dir: t.TempDir(), Listen: "nonsense"},
		{Dir: t.TempDir(), Listen: "127.0.0.1:99999"},
	} {
		if _, err := StartEmbedded(t.Context(), cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("StartEmbedded(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	for _, cc := range []ConnectConfig{
		{User: "u", Token: "t"},
		{CredsFile: "x", NKeyFile: "y"},
		{Password: "p"},
		{TLSCert: "c"},
	} {
		if _, err := Connect(t.Context(), "nats://127.0.0.1:1", cc, Config{}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Connect(%+v) = %v, want ErrInvalidConfig", cc, err)
		}
	}
}

// lossyJS puts publish faults on a store's real connection: the first
// publishes land (or not) and their acks are lost.
type lossyJS struct {
	request func(context.Context, *nats.Msg) (*nats.Msg, error)
	lose    int  // number of publishes whose ack is lost
	land    bool // whether a publish whose ack is lost still reaches the server
	calls   int
}

// lossy installs a lossyJS on s.
func lossy(s *Log, lose int, land bool) *lossyJS {
	j := &lossyJS{request: s.request, lose: lose, land: land}
	s.request = j.publish
	return j
}

func (j *lossyJS) publish(ctx context.Context, m *nats.Msg) (*nats.Msg, error) {
	j.calls++
	if j.calls <= j.lose {
		if j.land {
			resp, err := j.request(ctx, m)
			if err != nil {
				return nil, err
			}
			if _, err := parsePubAck(resp.Data); err != nil {
				return resp, nil // a refusal is not lost: only acks are
			}
		}
		return nil, nats.ErrTimeout
	}
	return j.request(ctx, m)
}

func TestAppendRetryAfterLostAck(t *testing.T) {
	for _, tt := range []struct {
		name  string
		lose  int
		land  bool
		calls int
	}{
		{"landed", 1, true, 2},
		// The second attempt reaches the server, which refuses it
		// (wrong sequence); the probe then finds the first.
		{"landed twice lost", 2, true, 2},
		{"not landed", 1, false, 2},
		{"not landed twice", 2, false, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, _, _ := newStore(t, Config{})
			s0 := mustAppend(t, s, "r", testMsg("m0", "zero"), 0)
			lossy := lossy(s, tt.lose, tt.land)
			seq, err := s.Append(t.Context(), "r", testMsg("m1", "one"), s0)
			if err != nil {
				t.Fatalf("Append = %v", err)
			}
			if lossy.calls != tt.calls {
				t.Errorf("%d publishes, want %d", lossy.calls, tt.calls)
			}
			got := collect(t, s.Read(t.Context(), "r", 0))
			if len(got) != 2 || got[1].Seq != seq || got[1].MsgID != "m1" {
				t.Fatalf("stored %v, Append returned %d", seqs(got), seq)
			}
		})
	}
}

func TestAppendGivesUp(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	lossy := lossy(s, 100, false)
	_, err := s.Append(t.Context(), "r", testMsg("m1", "one"), 0)
	if !errors.Is(err, nats.ErrTimeout) || errors.Is(err, lifecycle.ErrWrongSequence) {
		t.Fatalf("Append = %v, want a timeout", err)
	}
	if lossy.calls != appendAttempts {
		t.Fatalf("%d attempts, want %d", lossy.calls, appendAttempts)
	}
	t.Logf("%v", err)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Append(ctx, "r", testMsg("m1", "one"), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context = %v", err)
	}
}

func TestConcurrentAppendsOneWins(t *testing.T) {
	s, _, _ := newStore(t, Config{})
	base := mustAppend(t, s, "c", testMsg("m0", "0"), 0)
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.Append(t.Context(), "c", testMsg(fmt.Sprintf("w%d", i), "x"), base)
		})
	}
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, lifecycle.ErrWrongSequence):
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d writers won, want 1", wins)
	}
	if got := collect(t, s.Read(t.Context(), "c", 0)); len(got) != 2 {
		t.Fatalf("stored %d messages, want 2", len(got))
	}
}

// Two embedded servers on one store directory would corrupt it: the
// second is refused while the first runs, and admitted after it closes.
func TestEmbeddedDirLock(t *testing.T) {
	dir := t.TempDir()
	first, err := StartEmbedded(t.Context(), EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := StartEmbedded(t.Context(), EmbeddedConfig{Dir: dir}); !errors.Is(err, ErrDirInUse) {
		t.Fatalf("second server on %s: %v, want ErrDirInUse", dir, err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := StartEmbedded(t.Context(), EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	second.Close()
}

// A listen address in use is reported as such, at once: not as a start
// deadline passing. The directory is released for the next start.
func TestEmbeddedListenAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	_, err = StartEmbedded(t.Context(), EmbeddedConfig{Dir: dir, Listen: l.Addr().String()})
	if err == nil {
		t.Fatalf("started on %s, which is in use", l.Addr())
	}
	if errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("start on %s (in use): %v, want the listen error", l.Addr(), err)
	}
	again, err := StartEmbedded(t.Context(), EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatalf("start on the same directory after the failure: %v", err)
	}
	_ = again.Close()
}

// With User set, the embedded server requires authentication of network
// clients, and its own in-process connection passes it.
func TestEmbeddedAuthentication(t *testing.T) {
	ctx := t.Context()
	st, err := OpenEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", User: "runlog", Password: "s3cret"}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	emb := st.emb
	if emb == nil {
		t.Fatal("store has no embedded server")
	}
	if nc, err := nats.Connect(emb.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials was let in")
	}
	other, err := Connect(ctx, emb.ClientURL(), ConnectConfig{User: "runlog", Password: "s3cret"}, Config{})
	if err != nil {
		t.Fatalf("with credentials: %v", err)
	}
	other.Close()
	if _, err := StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), Password: "x"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("password without user: %v", err)
	}
}

// A stored header with a server-set name and a value that does not parse
// (which makes nats.go's and jetstreamext's direct gets fail) does not
// make the instance unreadable: the server's values, after it, are read.
func TestReadStoredServerHeaders(t *testing.T) {
	s, _, nc := newStore(t, Config{})
	ctx := t.Context()
	first := mustAppend(t, s, "x", testMsg("m1", "one"), 0)
	raw := nats.NewMsg(s.SubjectFor("x"))
	raw.Header.Set("Nats-Sequence", "not a number")
	raw.Header.Set("Nats-Time-Stamp", "yesterday")
	raw.Header.Set("Nats-Num-Pending", "-1")
	raw.Header.Set("Nats-Subject", "elsewhere")
	raw.Data = []byte("two")
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.PublishMsg(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	third := mustAppend(t, s, "x", testMsg("m3", "three"), ack.Sequence)
	got := collect(t, s.Read(ctx, "x", 0))
	if want := []uint64{first, ack.Sequence, third}; !slices.Equal(seqs(got), want) {
		t.Fatalf("Read = %v, want %v", seqs(got), want)
	}
	if v := got[1].Header["Nats-Sequence"]; !slices.Equal(v, []string{"not a number"}) {
		t.Errorf("stored header not kept: %v", got[1].Header)
	}
	if got[1].Time.IsZero() || time.Since(got[1].Time) > time.Minute {
		t.Errorf("time = %v, want the server's", got[1].Time)
	}
	s.cfg.ReadBatch = 1 // page by page: each page's end told by the server's count
	if got := collect(t, s.Read(ctx, "x", 0)); len(got) != 3 {
		t.Fatalf("Read in pages of 1: %v", seqs(got))
	}
	if _, err := s.Append(ctx, "x", events.Message{MsgID: "m4", Header: map[string][]string{"nats-time-stamp": {"x"}}, Data: []byte("4")}, third); !errors.Is(err, events.ErrReservedHeader) {
		t.Fatalf("Append with a server header: %v", err)
	}
}

// TestDropIfNew: a store whose Open created its streams, still empty, is
// dropped; one whose streams existed, or hold a message, never is.
func TestDropIfNew(t *testing.T) {
	for _, k := range []int{1, 3} {
		t.Run(fmt.Sprintf("partitions=%d", k), func(t *testing.T) {
			s, _, nc := newStore(t, Config{Partitions: k})
			ctx := t.Context()
			again, err := Open(ctx, nc, Config{Partitions: k})
			if err != nil {
				t.Fatal(err)
			}
			if dropped, err := again.DropIfNew(ctx); err != nil || dropped {
				t.Fatalf("a second Open of existing streams: dropped %v, %v", dropped, err)
			}
			if _, err := s.Append(ctx, "keep", testMsg("01JDZ8Q5N3C7K2W4X6Y8Z0A1B2", `{}`), 0); err != nil {
				t.Fatal(err)
			}
			if dropped, err := s.DropIfNew(ctx); err != nil || dropped {
				t.Fatalf("a new store holding a message: dropped %v, %v", dropped, err)
			}
			fresh, err := Open(ctx, nc, Config{Stream: "FRESH", Subject: "fresh.wf", Partitions: k})
			if err != nil {
				t.Fatal(err)
			}
			if dropped, err := fresh.DropIfNew(ctx); err != nil || !dropped {
				t.Fatalf("a new, empty store: dropped %v, %v", dropped, err)
			}
			if _, err := Open(ctx, nc, Config{Stream: "FRESH", Subject: "fresh.wf", Partitions: k, NoCreate: true}); !errors.Is(err, ErrStreamNotFound) {
				t.Fatalf("the dropped store opens: %v", err)
			}
		})
	}
}
