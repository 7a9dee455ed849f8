package audit

import (
	"bytes"
	"strings"
	"testing"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

// The same round trip on the JetStream log: verify, export, import into
// another stream, verify again, and into memory.
func TestJetStreamRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server")
	}
	nc := natstest.Connect(t, natstest.Start(t))
	src, err := jetstream.Open(t.Context(), nc, jetstream.Config{})
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

	dst, err := jetstream.Open(t.Context(), nc, jetstream.Config{Stream: "COPY", Subject: "copy.wf"})
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
