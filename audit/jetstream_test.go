package audit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

// The same round trip on the JetStream log: verify, export, import into
// another stream, verify again, and into memory; on one stream, and on 4
// partitions.
// The JetStream log is every kind of source audit reads, and a place to
// publish digests.
var (
	_ Scanner         = (*jetstream.Log)(nil)
	_ HeadSource      = (*jetstream.Log)(nil)
	_ StreamChecker   = (*jetstream.Log)(nil)
	_ DigestPublisher = (*jetstream.Log)(nil)
)

func TestJetStreamRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server")
	}
	for _, k := range []int{1, 4} {
		t.Run(fmt.Sprintf("partitions=%d", k), func(t *testing.T) { testJetStreamRoundTrip(t, k) })
	}
}

func testJetStreamRoundTrip(t *testing.T, k int) {
	nc := natstest.Connect(t, natstest.Start(t))
	src, err := jetstream.Open(t.Context(), nc, jetstream.Config{Partitions: k})
	must(t, err)
	buildHistories(t, src)
	// An instance id that needs encoding in a subject.
	odd := "ord.42 ü>*"
	store, err := lifecycle.New(src, lifecycle.Config{})
	must(t, err)
	_, err = store.PrepareRun(t.Context(), lifecycle.PrepareRunRequest{InstanceID: odd, DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}})
	must(t, err)
	ids := []string{"a", "b", "c", odd}
	if rep := verify(t, src, VerifyOptions{Heads: true, PageSize: 2}); !rep.OK() || rep.Instances != 4 || len(rep.Heads) != 4 {
		t.Fatalf("JetStream history: %+v", rep)
	}

	var file bytes.Buffer
	st, err := Export(t.Context(), src, &file, ExportOptions{IDs: ids})
	must(t, err)
	if st.Base64 != 0 || st.Instances != 4 {
		t.Fatalf("export stats %+v", st)
	}
	if strings.Contains(file.String(), "Nats-Expected") {
		t.Errorf("the export carries the source stream's publish checks")
	}

	dst, err := jetstream.Open(t.Context(), nc, jetstream.Config{Stream: "COPY", Subject: "copy.wf", Partitions: k})
	must(t, err)
	ist, err := Import(t.Context(), bytes.NewReader(file.Bytes()), dst, ImportOptions{})
	must(t, err)
	if ist.Appended != st.Messages {
		t.Fatalf("import stats %+v, want %d appended", ist, st.Messages)
	}
	for _, id := range ids {
		want, got := read(t, src, id), read(t, dst, id)
		if len(got) != len(want) {
			t.Fatalf("%q: %d messages, want %d", id, len(got), len(want))
		}
		for i := range want {
			if got[i].MsgID != want[i].MsgID || !bytes.Equal(got[i].Data, want[i].Data) ||
				strings.Join(got[i].Header[events.HeaderEvents], ",") != strings.Join(want[i].Header[events.HeaderEvents], ",") {
				t.Fatalf("%q message %d differs", id, i)
			}
		}
	}
	if rep := verify(t, dst, VerifyOptions{}); !rep.OK() {
		t.Fatalf("imported history does not verify")
	}
	// Re-import: nothing appended.
	ist, err = Import(t.Context(), bytes.NewReader(file.Bytes()), dst, ImportOptions{})
	must(t, err)
	if ist.Appended != 0 || ist.Unchanged != 4 {
		t.Fatalf("re-import stats %+v", ist)
	}
	mem := memlog.New(nil)
	_, err = Import(t.Context(), bytes.NewReader(file.Bytes()), mem, ImportOptions{})
	must(t, err)
	if rep := verify(t, mem, VerifyOptions{}); !rep.OK() || rep.Messages != st.Messages {
		t.Fatalf("memory copy: %+v", rep)
	}
}

// A message published on an instance's subject with server-set headers of
// its own (a forged Nats-Sequence, Nats-Time-Stamp and Nats-Num-Pending)
// must not fool the readers: sequences and times come from the server,
// the instance stays writable, reads do not stop at a forged count, both
// verify modes report the forged headers at the message's real sequence,
// and an export of it is refused by import.
func TestJetStreamForgedServerHeaders(t *testing.T) {
	ctx := t.Context()
	src, nc := jetstreamSource(t)

	// The history is written on a memory log, then copied: the first
	// message appended normally, the second published raw with forged
	// headers. Its bytes are a genuine commit chained to the first.
	mem := memlog.New(nil)
	ms := newStore(t, mem)
	_, err := ms.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "victim", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskA}})
	must(t, err)
	must(t, ms.SendEvent(ctx, "victim", "paid", []byte(`{}`)))
	orig := read(t, mem, "victim")
	first, err := src.Append(ctx, "victim", orig[0], 0)
	must(t, err)
	raw := nats.NewMsg(src.SubjectFor("victim"))
	for k, v := range orig[1].Header {
		raw.Header[k] = v
	}
	raw.Header.Set("Nats-Sequence", "1")
	raw.Header.Set("Nats-Time-Stamp", "2001-01-01T00:00:00Z")
	raw.Header.Set("Nats-Num-Pending", "0")
	raw.Data = orig[1].Data
	js, err := natsjs.New(nc)
	must(t, err)
	ack, err := js.PublishMsg(ctx, raw)
	must(t, err)
	forged := ack.Sequence

	last, ok, err := src.LastMessage(ctx, "victim")
	must(t, err)
	if !ok || last.Seq != forged || last.Time.Year() < 2026 {
		t.Fatalf("LastMessage = seq %d time %v, want seq %d and the server's time", last.Seq, last.Time, forged)
	}
	// The instance is still writable: the next decision expects the
	// real sequence.
	store, err := lifecycle.New(src, lifecycle.Config{})
	must(t, err)
	must(t, store.SendEvent(ctx, "victim", "shipped", []byte(`{}`)))
	got := read(t, src, "victim")
	if len(got) != 3 || got[0].Seq != first || got[1].Seq != forged || got[2].Seq <= forged {
		t.Fatalf("Read: %d messages %v, want 3 from seqs %d, %d", len(got), seqsOf(got), first, forged)
	}
	if v := got[1].Header["Nats-Sequence"]; len(v) != 1 || v[0] != "1" {
		t.Errorf("the stored forged header is not kept for the audit: %v", got[1].Header)
	}

	for _, opts := range []VerifyOptions{{}, {IDs: []string{"victim"}}} {
		rep := verify(t, src, opts)
		ps := problemsOf(rep, "victim")
		if rep.OK() || len(ps) != 1 || ps[0].Kind != KindHeader || ps[0].Seq != forged || !strings.Contains(ps[0].Detail, "Nats-Sequence") {
			t.Fatalf("Verify(%v): %v, want one header problem at seq %d naming Nats-Sequence", opts.IDs, ps, forged)
		}
	}

	var file bytes.Buffer
	_, err = Export(ctx, src, &file, ExportOptions{IDs: []string{"victim"}})
	must(t, err)
	dst := memlog.New(nil)
	_, err = Import(ctx, bytes.NewReader(file.Bytes()), dst, ImportOptions{})
	ue, ok := errors.AsType[*UnverifiedError](err)
	if !ok || len(ue.Problems) != 1 || ue.Problems[0].Kind != KindHeader || ue.Problems[0].Line != 3 {
		t.Fatalf("Import of the forged export: %v, want one header problem on line 3", err)
	}
	if n := len(read(t, dst, "victim")); n != 0 {
		t.Fatalf("the refused import wrote %d messages", n)
	}
}

func seqsOf(ms []events.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

// A stream under which history can be lost is reported by Verify, even
// when every history in it is intact.
func TestJetStreamVerifyReportsUnsafeStream(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server")
	}
	ctx := t.Context()
	nc := natstest.Connect(t, natstest.Start(t))
	js, err := natsjs.New(nc)
	must(t, err)
	_, err = js.CreateStream(ctx, natsjs.StreamConfig{Name: "RUNLOG", Subjects: []string{"runlog.wf.>"}, AllowDirect: true, MaxAge: time.Hour, DenyPurge: true})
	must(t, err)
	if _, err := jetstream.Open(ctx, nc, jetstream.Config{}); !errors.Is(err, jetstream.ErrStreamMismatch) {
		t.Fatalf("Open = %v, want ErrStreamMismatch", err)
	}
	ro, err := jetstream.Open(ctx, nc, jetstream.Config{ReadOnly: true})
	must(t, err)
	for _, opts := range []VerifyOptions{{}, {IDs: []string{"a"}}} {
		rep, err := Verify(ctx, ro, opts)
		must(t, err)
		var kinds []string
		for _, p := range rep.Problems {
			if p.Kind == KindStream {
				kinds = append(kinds, p.Detail)
			}
		}
		if rep.OK() || len(kinds) != 2 || !strings.HasPrefix(kinds[0], "deny_delete is false") || !strings.HasPrefix(kinds[1], "max_age is 1h0m0s") {
			t.Fatalf("Verify(%v) stream problems %q, want deny_delete and max_age", opts.IDs, kinds)
		}
	}
}
