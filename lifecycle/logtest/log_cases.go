package logtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
)

// logCases check the lifecycle.Log contract itself.
var logCases = []testCase{
	{"AppendExpectZeroOnEmpty", testAppendExpectZero},
	{"AppendWrongExpectStoresNothing", testWrongExpect},
	{"AppendWrongExpectOnEmpty", testWrongExpectOnEmpty},
	{"ExpectIsPerInstance", testExpectPerInstance},
	{"SequencesIncreaseAcrossInstances", testSequencesIncrease},
	{"ReadOrderedAndExclusive", testReadOrdered},
	{"ReadUnknownInstance", testReadUnknown},
	{"InstanceIDsNeverCollide", testIDsNeverCollide},
	{"ReappendSameMsgID", testReappend},
	{"ReappendOlderMsgIDStoresNothing", testReappendOlder},
	{"ReadStopEarlyThenRangeAgain", testStopEarly},
	{"ReadRangesAfresh", testRangeAfresh},
	{"ReadCancelledContext", testReadCancelled},
	{"ReadCancelledWhileRanging", testReadCancelledMidway},
	{"AppendCancelledContext", testAppendCancelled},
	{"ConcurrentAppendsOneWinner", testConcurrentAppends},
	{"ListerEveryIDOnce", testListerEveryID},
	{"ListerIncreasingOrder", testListerOrder},
	{"AppendRefusesServerHeaders", testServerHeaders},
	{"ReadSaysWhatEachMessageFollows", testAfterSeq},
	{"MessageAtOnlyTheInstance", testMessageAt},
}

// testMessageAt: Last.MessageAt finds an instance's message by sequence,
// and nothing at a sequence of another instance's message, 0, or beyond.
func testMessageAt(t *testing.T, log lifecycle.Log) {
	l, ok := log.(lifecycle.Last)
	if !ok {
		t.Skip("the log has no Last capability")
	}
	g := new(idGen)
	ma := logMsg(t, g, "a", "1")
	a1 := mustAppend(t, log, "a", ma, 0)
	b1 := mustAppend(t, log, "b", logMsg(t, g, "b", "1"), 0)
	a2 := mustAppend(t, log, "a", logMsg(t, g, "a", "2"), a1)
	m, ok, err := l.MessageAt(t.Context(), "a", a1)
	if err != nil || !ok || m.Seq != a1 || !m.AfterKnown || m.AfterSeq != 0 {
		t.Fatalf("MessageAt(a, %d) = %+v, %v, %v", a1, m, ok, err)
	}
	if err := sameMessage(m, ma); err != nil {
		t.Errorf("MessageAt(a, %d): %v", a1, err)
	}
	for _, seq := range []uint64{0, b1, a2 + 100} {
		if seq == a1 || seq == a2 {
			continue // a partitioned log: b's partition has a sequence of its own
		}
		if m, ok, err := l.MessageAt(t.Context(), "a", seq); err != nil || ok {
			t.Errorf("MessageAt(a, %d) = seq %d, %v, %v: want nothing", seq, m.Seq, ok, err)
		}
	}
}

// testAfterSeq: every message read back says which sequence its append
// expected (the instance's previous message, 0 for the first), from Read
// and from LastMessage: the store's one-read catch-up depends on it.
func testAfterSeq(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	var want []uint64
	var last uint64
	for i, id := range []string{"a", "b", "a", "a"} {
		if id != "a" {
			mustAppend(t, log, id, logMsg(t, g, id, fmt.Sprint(i)), 0)
			continue
		}
		want = append(want, last)
		last = mustAppend(t, log, id, logMsg(t, g, id, fmt.Sprint(i)), last)
	}
	got := readAll(t, log, "a", 0)
	for i, m := range got {
		if !m.AfterKnown || m.AfterSeq != want[i] {
			t.Errorf("message %d (seq %d): AfterSeq %d known %v, want %d", i, m.Seq, m.AfterSeq, m.AfterKnown, want[i])
		}
	}
	if l, ok := log.(lifecycle.Last); ok {
		m, ok, err := l.LastMessage(t.Context(), "a")
		if err != nil || !ok || !m.AfterKnown || m.AfterSeq != want[len(want)-1] {
			t.Errorf("LastMessage: AfterSeq %d known %v (%v, %v), want %d", m.AfterSeq, m.AfterKnown, ok, err, want[len(want)-1])
		}
	}
}

// testServerHeaders: a message carrying a header the server sets on what
// it delivers (a forged sequence, time, subject) is refused in any letter
// case, and nothing is stored.
func testServerHeaders(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	for _, name := range []string{"Nats-Sequence", "Nats-Time-Stamp", "nats-subject", "NATS-NUM-PENDING", "Nats-Stream", "Nats-Last-Sequence"} {
		msg := logMsg(t, g, "forged", name)
		msg.Header = cloneHeader(msg.Header)
		msg.Header[name] = []string{"1"}
		_, err := log.Append(t.Context(), "forged", msg, 0)
		if !errors.Is(err, events.ErrReservedHeader) {
			t.Errorf("Append with a %s header: err = %v, want ErrReservedHeader", name, err)
		} else if !strings.Contains(err.Error(), name) {
			t.Errorf("Append with a %s header: the error does not name it: %v", name, err)
		}
	}
	if got := readAll(t, log, "forged", 0); len(got) != 0 {
		t.Fatalf("refused appends stored %d messages", len(got))
	}
	// A header that only looks like one is stored.
	msg := logMsg(t, g, "forged", "lookalike")
	msg.Header = cloneHeader(msg.Header)
	msg.Header["Nats-Sequence-Note"] = []string{"1"}
	mustAppend(t, log, "forged", msg, 0)
}

func cloneHeader(h map[string][]string) map[string][]string {
	out := make(map[string][]string, len(h)+1)
	for k, v := range h {
		out[k] = slices.Clone(v)
	}
	return out
}

func testAppendExpectZero(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	msg := logMsg(t, g, "inst-1", "first")
	msg.Seq = 999999 // Append ignores Seq and Time
	seq := mustAppend(t, log, "inst-1", msg, 0)
	got := readAll(t, log, "inst-1", 0)
	if len(got) != 1 {
		t.Fatalf("Read after one append yields %d messages", len(got))
	}
	if got[0].Seq != seq {
		t.Errorf("stored Seq = %d, Append returned %d", got[0].Seq, seq)
	}
	if got[0].Time.IsZero() {
		t.Error("stored message has no Time")
	}
	if err := sameMessage(got[0], msg); err != nil {
		t.Errorf("read back: %v", err)
	}
	if _, err := events.Decode(got[0], "inst-1"); err != nil {
		t.Errorf("read-back message does not decode: %v", err)
	}
	// The next append expects the returned sequence.
	seq2 := mustAppend(t, log, "inst-1", logMsg(t, g, "inst-1", "second"), seq)
	if seq2 <= seq {
		t.Errorf("second sequence %d <= first %d", seq2, seq)
	}
}

func testWrongExpect(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	seq := mustAppend(t, log, "inst-1", logMsg(t, g, "inst-1", "first"), 0)
	for _, expect := range []uint64{0, seq - 1, seq + 1, seq + 1000} {
		if expect == seq {
			continue
		}
		_, err := log.Append(t.Context(), "inst-1", logMsg(t, g, "inst-1", fmt.Sprint("wrong-", expect)), expect)
		if !errors.Is(err, lifecycle.ErrWrongSequence) {
			t.Errorf("Append with expect %d (last is %d) = %v, want ErrWrongSequence", expect, seq, err)
		}
	}
	got := readAll(t, log, "inst-1", 0)
	if len(got) != 1 || got[0].Seq != seq {
		t.Fatalf("after refused appends the instance holds %d messages, want only the first", len(got))
	}
}

func testWrongExpectOnEmpty(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	for _, expect := range []uint64{1, 5, 1 << 40} {
		_, err := log.Append(t.Context(), "empty", logMsg(t, g, "empty", "x"), expect)
		if !errors.Is(err, lifecycle.ErrWrongSequence) {
			t.Errorf("Append on an empty instance with expect %d = %v, want ErrWrongSequence", expect, err)
		}
	}
	if got := readAll(t, log, "empty", 0); len(got) != 0 {
		t.Fatalf("refused appends stored %d messages", len(got))
	}
	// The instance is still empty: expect 0 works.
	mustAppend(t, log, "empty", logMsg(t, g, "empty", "ok"), 0)
}

func testExpectPerInstance(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	a := mustAppend(t, log, "a", logMsg(t, g, "a", "a1"), 0)
	// b has nothing: a's last sequence is not b's.
	if _, err := log.Append(t.Context(), "b", logMsg(t, g, "b", "b1"), a); !errors.Is(err, lifecycle.ErrWrongSequence) {
		t.Errorf("Append to b expecting a's sequence = %v, want ErrWrongSequence", err)
	}
	b := mustAppend(t, log, "b", logMsg(t, g, "b", "b1"), 0)
	for i := 2; b == a; i++ {
		// A partitioned log numbers each partition on its own: make b's
		// last sequence differ from a's.
		b = mustAppend(t, log, "b", logMsg(t, g, "b", fmt.Sprint("b", i)), b)
	}
	// a's last is still a, although the log's last is b.
	if _, err := log.Append(t.Context(), "a", logMsg(t, g, "a", "a2"), b); !errors.Is(err, lifecycle.ErrWrongSequence) {
		t.Errorf("Append to a expecting b's sequence = %v, want ErrWrongSequence", err)
	}
	mustAppend(t, log, "a", logMsg(t, g, "a", "a2"), a)
}

// partitioned is implemented by a log whose instances are spread over
// partitions with a sequence each (jetstream.Log.Partitions).
type partitioned interface{ Partitions() int }

// onePartition reports whether log numbers all its messages in one
// sequence.
func onePartition(log lifecycle.Log) bool {
	p, ok := log.(partitioned)
	return !ok || p.Partitions() <= 1
}

func testSequencesIncrease(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	last := map[string]uint64{}
	var prev uint64
	one := onePartition(log)
	for i, id := range []string{"a", "b", "a", "c", "b", "a"} {
		seq := mustAppend(t, log, id, logMsg(t, g, id, fmt.Sprint(i)), last[id])
		if seq <= last[id] {
			t.Fatalf("append %d to %s got sequence %d after %d: an instance's sequences must increase", i, id, seq, last[id])
		}
		if one && seq <= prev {
			t.Fatalf("append %d got sequence %d after %d: sequences must increase across the log", i, seq, prev)
		}
		prev, last[id] = seq, seq
	}
}

func testReadOrdered(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	var xs []uint64
	var xmsgs []events.Message
	var lastX, lastY uint64
	for i := range 6 {
		m := logMsg(t, g, "x", fmt.Sprint("x-", i))
		lastX = mustAppend(t, log, "x", m, lastX)
		xs, xmsgs = append(xs, lastX), append(xmsgs, m)
		lastY = mustAppend(t, log, "y", logMsg(t, g, "y", fmt.Sprint("y-", i)), lastY)
	}
	for _, after := range []uint64{0, xs[0] - 1, xs[0], xs[2], xs[2] + 1 /* between x's messages (y's sequence) in one sequence */, xs[5] - 1, xs[5], xs[5] + 1000} {
		// The messages after after: those with a greater sequence.
		tc := struct {
			after uint64
			from  int // index of the first message expected
		}{after, 0}
		for tc.from < len(xs) && xs[tc.from] <= after {
			tc.from++
		}
		got := readAll(t, log, "x", tc.after)
		want := xs[tc.from:]
		seqs := make([]uint64, len(got))
		for i, m := range got {
			seqs[i] = m.Seq
		}
		if !slices.Equal(seqs, want) {
			t.Errorf("Read(x, after %d) = sequences %v, want %v", tc.after, seqs, want)
			continue
		}
		for i, m := range got {
			if err := sameMessage(m, xmsgs[tc.from+i]); err != nil {
				t.Errorf("Read(x, after %d)[%d]: %v", tc.after, i, err)
			}
		}
	}
}

func testReadUnknown(t *testing.T, log lifecycle.Log) {
	if got, err := collect(t, log.Read(t.Context(), "never-written", 0)); err != nil || len(got) != 0 {
		t.Errorf("Read of an unknown instance on an empty log = %d messages, %v", len(got), err)
	}
	g := new(idGen)
	mustAppend(t, log, "known", logMsg(t, g, "known", "k"), 0)
	for _, id := range []string{"never-written", "know", "known2", "Known", "known.x", "known*", ">"} {
		if got, err := collect(t, log.Read(t.Context(), id, 0)); err != nil || len(got) != 0 {
			t.Errorf("Read(%q) = %d messages, %v; want nothing", id, len(got), err)
		}
	}
}

// collidingIDs are instance ids that a careless id-to-subject mapping
// would confuse: NATS tokens and wildcards, escape look-alikes, case,
// whitespace, Unicode and the maximum length.
var collidingIDs = []string{
	"a.b", "a=2Eb", "a=2eb", "a%2Eb", "a_b", "a-b", "a~b", "a+b", "a/b", "a\\b",
	"a*b", "a>b", "a b", "a  b", "a\tb", "a\nb", "a\x00b",
	"ab", "AB", "Ab", "a", "A", "a.", ".a", "a..b", ".", "..",
	"*", ">", "=", "==", "=2E", "%", "_", "-", " ", "a=", "a==",
	"é", "e\u0301", "日本語", "🚀", "a.🚀.b",
	"YS5i", "YS5i=", "ME", "mfrgg", // base64/base32 look-alikes of other ids
	strings.Repeat("x", 256),
	strings.Repeat("x", 255),
	strings.Repeat(".", 256),
	strings.Repeat("é", 128),
	strings.Repeat("🚀", 64),
}

func testIDsNeverCollide(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	first := map[string]events.Message{}
	seqs := map[string]uint64{}
	for _, id := range collidingIDs {
		m := logMsg(t, g, id, "first "+id)
		seq, err := log.Append(t.Context(), id, m, 0)
		if err != nil {
			t.Errorf("Append to %q with expect 0 = %v (does another id map to the same place?)", id, err)
			continue
		}
		first[id], seqs[id] = m, seq
	}
	for _, id := range collidingIDs {
		want, ok := first[id]
		if !ok {
			continue
		}
		got := readAll(t, log, id, 0)
		if len(got) != 1 {
			t.Errorf("Read(%q) = %d messages, want exactly its own", id, len(got))
			continue
		}
		if err := sameMessage(got[0], want); err != nil {
			t.Errorf("Read(%q) returned another id's message: %v", id, err)
		}
		if _, err := events.Decode(got[0], id); err != nil {
			t.Errorf("Read(%q): %v", id, err)
		}
	}
	// The per-instance sequence check works for each id.
	for _, id := range collidingIDs {
		seq, ok := seqs[id]
		if !ok {
			continue
		}
		if _, err := log.Append(t.Context(), id, logMsg(t, g, id, "stale"), 0); !errors.Is(err, lifecycle.ErrWrongSequence) {
			t.Errorf("Append to %q expecting 0 after a message = %v, want ErrWrongSequence", id, err)
		}
		mustAppend(t, log, id, logMsg(t, g, id, "second "+id), seq)
	}
	for _, id := range collidingIDs {
		if _, ok := seqs[id]; ok {
			if got := readAll(t, log, id, 0); len(got) != 2 {
				t.Errorf("Read(%q) = %d messages, want 2", id, len(got))
			}
		}
	}
}

func testReappend(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	base := mustAppend(t, log, "inst", logMsg(t, g, "inst", "base"), 0)
	msg := logMsg(t, g, "inst", "retried")
	seq := mustAppend(t, log, "inst", msg, base)
	// A retry whose first attempt landed: same Msg-Id, same (now stale)
	// expectation.
	for i, expect := range []uint64{base, seq} {
		got, err := log.Append(t.Context(), "inst", msg, expect)
		if err != nil {
			t.Errorf("re-append %d of the last message (expect %d) = %v, want nil", i, expect, err)
			continue
		}
		if got != seq {
			t.Errorf("re-append %d returned sequence %d, want the original %d", i, got, seq)
		}
	}
	msgs := readAll(t, log, "inst", 0)
	if len(msgs) != 2 {
		t.Fatalf("after re-appends the instance holds %d messages, want 2", len(msgs))
	}
	if err := sameMessage(msgs[1], msg); err != nil {
		t.Error(err)
	}
	// The log goes on from the original sequence.
	mustAppend(t, log, "inst", logMsg(t, g, "inst", "next"), seq)
}

func testReappendOlder(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	old := logMsg(t, g, "inst", "old")
	s1 := mustAppend(t, log, "inst", old, 0)
	s2 := mustAppend(t, log, "inst", logMsg(t, g, "inst", "newer"), s1)
	// Whatever the log answers for an old Msg-Id, it stores no second copy.
	for _, expect := range []uint64{0, s1, s2} {
		seq, err := log.Append(t.Context(), "inst", old, expect)
		if err == nil && seq != s1 {
			t.Errorf("re-append of an older message (expect %d) = sequence %d, nil; want its original sequence %d or an error", expect, seq, s1)
		}
	}
	if got := readAll(t, log, "inst", 0); len(got) != 2 {
		t.Fatalf("re-appends of an older message stored %d messages, want 2", len(got))
	}
}

func testStopEarly(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	var last uint64
	for i := range 5 {
		last = mustAppend(t, log, "inst", logMsg(t, g, "inst", fmt.Sprint(i)), last)
	}
	seq := log.Read(t.Context(), "inst", 0)
	for range 3 {
		n := 0
		for _, err := range seq {
			if err != nil {
				t.Fatal(err)
			}
			n++
			break // the iterator must not call yield again
		}
		if n != 1 {
			t.Fatalf("ranged %d times before break", n)
		}
	}
	n := 0
	for _, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n == 3 {
			break
		}
	}
	if got := readAll(t, log, "inst", 0); len(got) != 5 {
		t.Errorf("a full range after early stops yields %d messages, want 5", len(got))
	}
	msgs, err := collect(t, seq)
	if err != nil || len(msgs) != 5 {
		t.Errorf("the same iterator ranged again yields %d messages, %v; want 5", len(msgs), err)
	}
	// The log still works.
	mustAppend(t, log, "inst", logMsg(t, g, "inst", "after"), last)
}

func testRangeAfresh(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	s1 := mustAppend(t, log, "inst", logMsg(t, g, "inst", "1"), 0)
	seq := log.Read(t.Context(), "inst", 0)
	if msgs, err := collect(t, seq); err != nil || len(msgs) != 1 {
		t.Fatalf("first range: %d messages, %v", len(msgs), err)
	}
	mustAppend(t, log, "inst", logMsg(t, g, "inst", "2"), s1)
	if msgs, err := collect(t, seq); err != nil || len(msgs) != 2 {
		t.Fatalf("ranging again after an append: %d messages, %v; want 2 (it reads afresh)", len(msgs), err)
	}
}

func testReadCancelled(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	var last uint64
	for i := range 3 {
		last = mustAppend(t, log, "inst", logMsg(t, g, "inst", fmt.Sprint(i)), last)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	msgs, err := collect(t, log.Read(ctx, "inst", 0))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Read with a cancelled context = %d messages, %v; want it to end with context.Canceled", len(msgs), err)
	}
	if errors.Is(err, lifecycle.ErrWrongSequence) {
		t.Error("a cancelled read matches ErrWrongSequence")
	}
}

func testReadCancelledMidway(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	var last uint64
	const n = 600 // more than one read batch of a paging implementation
	for i := range n {
		last = mustAppend(t, log, "inst", logMsg(t, g, "inst", fmt.Sprint(i)), last)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	count := 0
	var err error
	for m, e := range log.Read(ctx, "inst", 0) {
		if err != nil {
			t.Fatalf("yielded (%d, %v) after the error %v", m.Seq, e, err)
		}
		if e != nil {
			err = e
			continue
		}
		count++
		if count == 1 {
			cancel()
		}
	}
	if count == n && err == nil {
		t.Fatalf("Read yielded all %d messages and no error after its context was cancelled", n)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Read cancelled midway ended with %v after %d messages; want context.Canceled", err, count)
	}
}

func testAppendCancelled(t *testing.T, log lifecycle.Log) {
	g := new(idGen)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := log.Append(ctx, "inst", logMsg(t, g, "inst", "x"), 0)
	if err == nil {
		t.Fatal("Append with a cancelled context = nil")
	}
	if errors.Is(err, lifecycle.ErrWrongSequence) {
		t.Errorf("Append with a cancelled context = %v: must not match ErrWrongSequence", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a cancelled context = %v, want it to match context.Canceled", err)
	}
	if got := readAll(t, log, "inst", 0); len(got) != 0 {
		t.Errorf("Append with a cancelled context stored %d messages", len(got))
	}
}

func testConcurrentAppends(t *testing.T, log lifecycle.Log) {
	const writers, rounds = 16, 4
	g := new(idGen)
	var last uint64
	for round := range rounds {
		msgs := make([]events.Message, writers)
		for i := range msgs {
			msgs[i] = logMsg(t, g, "inst", fmt.Sprintf("round %d writer %d", round, i))
		}
		seqs := make([]uint64, writers)
		errs := make([]error, writers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range writers {
			wg.Go(func() {
				<-start
				seqs[i], errs[i] = log.Append(t.Context(), "inst", msgs[i], last)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: writers %d and %d both appended expecting %d", round, winner, i, last)
				}
				winner = i
			case !errors.Is(err, lifecycle.ErrWrongSequence):
				t.Errorf("round %d writer %d: %v, want ErrWrongSequence", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won", round)
		}
		got := readAll(t, log, "inst", last)
		if len(got) != 1 {
			t.Fatalf("round %d: %d messages stored, want exactly the winner's", round, len(got))
		}
		if err := sameMessage(got[0], msgs[winner]); err != nil || got[0].Seq != seqs[winner] {
			t.Fatalf("round %d: stored message is not the winner's: %v", round, err)
		}
		last = seqs[winner]
	}
}

// lister is the optional capability of listing instance ids
// (lifecycle.Lister).
type lister interface {
	Instances(ctx context.Context, after string, limit int) ([]string, error)
}

func listAll(t *testing.T, log lifecycle.Log) (lister, []string) {
	t.Helper()
	l, ok := log.(lister)
	if !ok {
		t.Skipf("%T does not list instances", log)
	}
	g := new(idGen)
	for _, id := range collidingIDs {
		mustAppend(t, log, id, logMsg(t, g, id, id), 0)
	}
	got, err := l.Instances(t.Context(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return l, got
}

// testListerEveryID: every id comes back exactly, once, and paging with
// the last id of a page as the cursor walks the same list.
func testListerEveryID(t *testing.T, log lifecycle.Log) {
	l, got := listAll(t, log)
	want := slices.Clone(collidingIDs)
	sort.Strings(want)
	sorted := slices.Clone(got)
	sort.Strings(sorted)
	if !slices.Equal(sorted, want) {
		t.Errorf("Instances() = %q,\nwant the ids %q", got, want)
	}
	var paged []string
	after := ""
	for range len(want) + 1 {
		page, err := l.Instances(t.Context(), after, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 7 {
			t.Fatalf("page of %d ids, limit 7", len(page))
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[len(page)-1]
	}
	if !slices.Equal(paged, got) {
		t.Errorf("paged Instances() = %q,\nunpaged %q", paged, got)
	}
}

// testListerOrder: lifecycle.Lister promises the ids "in increasing order".
func testListerOrder(t *testing.T, log lifecycle.Log) {
	_, got := listAll(t, log)
	for i := 1; i < len(got); i++ {
		if got[i-1] >= got[i] {
			t.Errorf("Instances() is not in increasing order of the ids (as lifecycle.Lister documents): %q before %q", got[i-1], got[i])
			return
		}
	}
}
