package jetstream

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/internal/natstest"
)

// TestPartitionedLayout: a store of 4 partitions is 4 streams with
// disjoint subjects, each recording the layout; every instance lands in
// its partition; a reopen adopts the recorded number.
func TestPartitionedLayout(t *testing.T) {
	s, _, nc := newStore(t, Config{Partitions: 4})
	if s.Partitions() != 4 || !slices.Equal(s.Streams(), []string{"RUNLOG_P0", "RUNLOG_P1", "RUNLOG_P2", "RUNLOG_P3"}) {
		t.Fatalf("Partitions %d, Streams %v", s.Partitions(), s.Streams())
	}
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for p, name := range s.Streams() {
		st, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		c := st.CachedInfo().Config
		want := map[string]string{MetaPartitions: "4", MetaPartition: fmt.Sprint(p), MetaPartitioner: Partitioner}
		for k, v := range want {
			if c.Metadata[k] != v {
				t.Errorf("%s: metadata %s = %q, want %q", name, k, c.Metadata[k], v)
			}
		}
		if !slices.Equal(c.Subjects, []string{fmt.Sprintf("runlog.wf.%d.>", p)}) || !c.DenyDelete || !c.DenyPurge {
			t.Errorf("%s: config %+v", name, c)
		}
	}
	if _, err := js.Stream(t.Context(), "RUNLOG"); !errors.Is(err, natsjs.ErrStreamNotFound) {
		t.Errorf("stream RUNLOG: %v, want none", err)
	}

	// Every instance in its partition's stream.
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = fmt.Sprintf("inst-%02d", i)
		mustAppend(t, s, ids[i], testMsg(ids[i]+"-1", "one"), 0)
	}
	perStream := map[string]uint64{}
	for _, id := range ids {
		perStream[PartitionStream("RUNLOG", PartitionOf(id, 4), 4)]++
	}
	for _, name := range s.Streams() {
		st, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().State.Msgs; got != perStream[name] {
			t.Errorf("%s holds %d messages, want %d", name, got, perStream[name])
		}
		if perStream[name] == 0 {
			t.Errorf("%s: no instance of 40 placed there", name)
		}
	}

	// Reopened without a number: the store's.
	s2, err := Open(t.Context(), nc, Config{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Partitions() != 4 {
		t.Fatalf("reopened with %d partitions", s2.Partitions())
	}
	for _, id := range ids {
		if got := collect(t, s2.Read(t.Context(), id, 0)); len(got) != 1 || string(got[0].Data) != "one" {
			t.Fatalf("Read(%s) after reopen = %v", id, got)
		}
	}

	// Listings cover every partition.
	all, err := s2.Instances(t.Context(), "", 0)
	if err != nil || !slices.Equal(all, ids) {
		t.Fatalf("Instances = %v, %v; want %v", all, err, ids)
	}
	page, err := s2.Instances(t.Context(), ids[9], 5)
	if err != nil || !slices.Equal(page, ids[10:15]) {
		t.Fatalf("Instances(after %s, 5) = %v, %v", ids[9], page, err)
	}
	var listed []string
	for id, err := range s2.AllInstances(t.Context(), "") {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, id)
	}
	if !slices.Equal(slices.Sorted(slices.Values(listed)), ids) {
		t.Fatalf("AllInstances = %v", listed)
	}
	// A cursor anywhere resumes after it, across partitions.
	for _, cut := range []int{0, 7, 19, 38} {
		var rest []string
		for id, err := range s2.AllInstances(t.Context(), listed[cut]) {
			if err != nil {
				t.Fatal(err)
			}
			rest = append(rest, id)
		}
		if !slices.Equal(rest, listed[cut+1:]) {
			t.Errorf("AllInstances(after %s) = %v, want %v", listed[cut], rest, listed[cut+1:])
		}
	}
	counts, err := s2.InstanceCounts(t.Context())
	if err != nil || len(counts) != 40 {
		t.Fatalf("InstanceCounts = %d entries, %v", len(counts), err)
	}

	// Scan reads every partition, each in order.
	seen := map[string]int{}
	last := map[int]uint64{}
	for m, err := range s2.Scan(t.Context(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		if m.InstanceErr != nil {
			t.Fatalf("scan: %v", m.InstanceErr)
		}
		if m.Partition != PartitionOf(m.Instance, 4) || m.Seq <= last[m.Partition] {
			t.Fatalf("scan: %s at partition %d seq %d (last %d)", m.Instance, m.Partition, m.Seq, last[m.Partition])
		}
		last[m.Partition] = m.Seq
		seen[m.Instance]++
	}
	if len(seen) != 40 {
		t.Fatalf("scan saw %d instances", len(seen))
	}
	if _, err := firstErr(s2.Scan(t.Context(), 3)); err == nil || !strings.Contains(err.Error(), "ScanPartition") {
		t.Errorf("Scan(after 3) on 4 partitions: %v, want an error naming ScanPartition", err)
	}
	p := PartitionOf(ids[0], 4)
	n := 0
	for m, err := range s2.ScanPartition(t.Context(), p, 0) {
		if err != nil || m.Partition != p {
			t.Fatalf("ScanPartition(%d): %+v, %v", p, m, err)
		}
		n++
	}
	if uint64(n) != perStream[PartitionStream("RUNLOG", p, 4)] {
		t.Errorf("ScanPartition(%d) read %d messages", p, n)
	}
	if _, err := firstErr(s2.ScanPartition(t.Context(), 4, 0)); err == nil {
		t.Error("ScanPartition(4) of 4: no error")
	}

	// Digests describe one sequence: not yet for partitioned stores.
	if _, _, err := s2.Heads(t.Context()); !errors.Is(err, ErrPartitionedDigest) {
		t.Errorf("Heads: %v, want ErrPartitionedDigest", err)
	}
}

// firstErr returns the first error an iterator yields.
func firstErr[T any](seq func(func(T, error) bool)) (T, error) {
	var zero T
	for v, err := range seq {
		if err != nil {
			return v, err
		}
	}
	return zero, nil
}

// TestPartitionMismatch: a client configured with another number of
// partitions, or a store whose streams disagree, is refused with a clear
// error, and nothing is created or changed.
func TestPartitionMismatch(t *testing.T) {
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	streams := func() []string {
		var names []string
		for n := range js.StreamNames(t.Context()).Name() {
			names = append(names, n)
		}
		slices.Sort(names)
		return names
	}
	open := func(cfg Config) (*Log, error) {
		cfg.Logger = testLogger(t)
		return Open(t.Context(), nc, cfg)
	}

	// A one-stream store (today's layout) refuses a client with 4.
	one := Config{Stream: "ONE", Subject: "one"}
	if _, err := open(one); err != nil {
		t.Fatal(err)
	}
	cfg4 := one
	cfg4.Partitions = 4
	if _, err := open(cfg4); !errors.Is(err, ErrPartitionMismatch) || !strings.Contains(err.Error(), "has 1 partition,") {
		t.Fatalf("Open(4) on a one-stream store: %v", err)
	}
	cfg1 := one
	cfg1.Partitions = 1
	if s, err := open(cfg1); err != nil || s.Partitions() != 1 {
		t.Fatalf("Open(1) on a one-stream store: %v", err)
	}

	// A store of 4 refuses 2 and 1.
	four := Config{Stream: "FOUR", Subject: "four", Partitions: 4}
	if _, err := open(four); err != nil {
		t.Fatal(err)
	}
	before := streams()
	for _, k := range []int{1, 2, 8} {
		c := four
		c.Partitions = k
		if _, err := open(c); !errors.Is(err, ErrPartitionMismatch) || !strings.Contains(err.Error(), "has 4 partitions") {
			t.Fatalf("Open(%d) on a store of 4: %v", k, err)
		}
	}
	if after := streams(); !slices.Equal(after, before) {
		t.Fatalf("refused opens changed the streams: %v → %v", before, after)
	}

	// A partition that records another layout.
	bad := Config{Stream: "BAD", Subject: "bad", Partitions: 2}
	bcfg, err := bad.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	for p, meta := range []map[string]string{
		partitionMeta(0, 2),
		{MetaPartitions: "3", MetaPartition: "1", MetaPartitioner: Partitioner},
	} {
		sc := streamConfig(bcfg, &partition{index: p, name: PartitionStream("BAD", p, 2), prefix: partitionPrefix("bad", p, 2)}, 2)
		sc.Metadata = meta
		if _, err := js.CreateStream(t.Context(), sc); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := open(Config{Stream: "BAD", Subject: "bad"}); !errors.Is(err, ErrPartitionMismatch) || !strings.Contains(err.Error(), "BAD_P1 records partition 1 of 3") {
		t.Fatalf("Open on disagreeing partitions: %v", err)
	}

	// Another placement function.
	fn := Config{Stream: "FN", Subject: "fn", Partitions: 2}
	fcfg, _ := fn.withDefaults()
	sc := streamConfig(fcfg, &partition{index: 0, name: "FN_P0", prefix: "fn.0"}, 2)
	sc.Metadata[MetaPartitioner] = "crc32-id"
	if _, err := js.CreateStream(t.Context(), sc); err != nil {
		t.Fatal(err)
	}
	if _, err := open(Config{Stream: "FN", Subject: "fn"}); !errors.Is(err, ErrPartitionMismatch) || !strings.Contains(err.Error(), `"crc32-id"`) {
		t.Fatalf("Open with another placement function: %v", err)
	}

	// Both layouts' streams for one store: the one-stream layout is
	// looked up first (its clients need no permission on other streams),
	// so every client sees one partition.
	if _, err := js.CreateStream(t.Context(), natsjs.StreamConfig{Name: "ONE_P0", Subjects: []string{"elsewhere.>"}, Metadata: partitionMeta(0, 2)}); err != nil {
		t.Fatal(err)
	}
	if s, err := open(one); err != nil || s.Partitions() != 1 {
		t.Fatalf("Open with both layouts present: %v", err)
	}
	if _, err := open(cfg4); !errors.Is(err, ErrPartitionMismatch) {
		t.Fatalf("Open(4) with both layouts present: %v", err)
	}

	// Out of range.
	if _, err := open(Config{Stream: "X", Partitions: MaxPartitions + 1}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Open(%d partitions): %v", MaxPartitions+1, err)
	}
}

// TestPartitionMissingStream: a partition stream missing (a creation cut
// short) is created by the next writer's Open and refused by a reader.
func TestPartitionMissingStream(t *testing.T) {
	s, _, nc := newStore(t, Config{Partitions: 3})
	mustAppend(t, s, "a", testMsg("a1", "x"), 0)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	victim := "RUNLOG_P2"
	if PartitionOf("a", 3) == 2 {
		victim = "RUNLOG_P1"
	}
	// Deletes of the stream itself are allowed (deny_delete is about
	// messages): as an operator would.
	if err := js.DeleteStream(t.Context(), victim); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), nc, Config{ReadOnly: true, Logger: testLogger(t)}); !errors.Is(err, natsjs.ErrStreamNotFound) || !strings.Contains(err.Error(), "of 3") {
		t.Fatalf("read-only Open with a partition missing: %v", err)
	}
	w, err := Open(t.Context(), nc, Config{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open with a partition missing: %v", err)
	}
	if _, err := js.Stream(t.Context(), victim); err != nil {
		t.Fatalf("%s not created again: %v", victim, err)
	}
	if got := collect(t, w.Read(t.Context(), "a", 0)); len(got) != 1 {
		t.Fatalf("Read(a) = %v", got)
	}
}

// TestPartitionForeignMessage: a message another program published on
// a partition's subjects for an instance of another partition is not
// that instance's: Scan reports it, reads of the instance never see it.
func TestPartitionForeignMessage(t *testing.T) {
	s, _, nc := newStore(t, Config{Partitions: 2})
	id := "order-1"
	p := PartitionOf(id, 2)
	mustAppend(t, s, id, testMsg("m1", "mine"), 0)
	wrong := fmt.Sprintf("runlog.wf.%d.%s", 1-p, EncodeID(id))
	if _, err := nc.Request(wrong, []byte("forged"), nats.DefaultTimeout); err != nil {
		t.Fatal(err)
	}
	var foreign int
	for m, err := range s.Scan(t.Context(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		if m.InstanceErr != nil {
			foreign++
			if !errors.Is(m.InstanceErr, ErrInvalidSubject) || m.Partition != 1-p {
				t.Errorf("foreign message: partition %d, %v", m.Partition, m.InstanceErr)
			}
		}
	}
	if foreign != 1 {
		t.Fatalf("scan reported %d foreign messages, want 1", foreign)
	}
	if got := collect(t, s.Read(t.Context(), id, 0)); len(got) != 1 || string(got[0].Data) != "mine" {
		t.Fatalf("Read(%s) = %v", id, got)
	}
	ids, err := s.Instances(t.Context(), "", 0)
	if err != nil || !slices.Equal(ids, []string{id}) {
		t.Fatalf("Instances = %v, %v", ids, err)
	}
}
