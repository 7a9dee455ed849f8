package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"iter"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
	"github.com/runlog/runlog/workflow"
)

var exportTime = time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)

func export(t *testing.T, src Source, opts ExportOptions) []byte {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return exportTime }
	}
	var buf bytes.Buffer
	if _, err := Export(t.Context(), src, &buf, opts); err != nil {
		t.Fatalf("Export: %v", err)
	}
	return buf.Bytes()
}

func lines(b []byte) [][]byte {
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func TestExportFormat(t *testing.T) {
	l := cleanLog(t)
	msgs := all(t, l)
	out := export(t, l, ExportOptions{})
	ls := lines(out)
	if got, want := string(ls[0]), `{"runlog_export":1,"created":"2026-11-26T07:00:00Z","schema":1}`; got != want {
		t.Fatalf("header line\n got %s\nwant %s", got, want)
	}
	i := 1
	for _, id := range order {
		for _, m := range msgs[id] {
			var raw map[string]json.RawMessage
			must(t, json.Unmarshal(ls[i], &raw))
			var ln fileLine
			must(t, json.Unmarshal(ls[i], &ln))
			if ln.Instance != id || ln.Seq != m.Seq || ln.MsgID != m.MsgID || !ln.Time.Equal(m.Time) || !reflect.DeepEqual(ln.Headers, m.Header) {
				t.Fatalf("line %d: %s\ndoes not match message %+v", i+1, ls[i], m)
			}
			// runlog's payloads are compact JSON: embedded verbatim.
			if !bytes.Equal(raw["data"], m.Data) || raw["data_b64"] != nil {
				t.Fatalf("line %d: data not embedded verbatim:\n got %s\nwant %s", i+1, raw["data"], m.Data)
			}
			i++
		}
	}
	if i != len(ls) {
		t.Fatalf("%d lines, want %d", len(ls), i)
	}

	// IDs choose and order the instances.
	out = export(t, l, ExportOptions{IDs: []string{"c", "a"}})
	ls = lines(out)
	if len(ls) != 1+len(msgs["c"])+len(msgs["a"]) || !bytes.Contains(ls[1], []byte(`"instance":"c"`)) {
		t.Fatalf("export of c, a:\n%s", out)
	}
}

// reverseLister is a Scanner that lists its instances in reverse id
// order, in one pass.
type reverseLister struct{ *memlog.Log }

func (r reverseLister) AllInstances(ctx context.Context, after string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		ids, err := r.Instances(ctx, "", 0)
		if err != nil {
			yield("", err)
			return
		}
		slices.Reverse(ids)
		for _, id := range ids {
			if !yield(id, nil) {
				return
			}
		}
	}
}

// A source that lists all its instances in one pass is listed so, in its
// order, instead of page by page.
func TestExportScannerOrder(t *testing.T) {
	l := cleanLog(t)
	var got []string
	for _, ln := range lines(export(t, reverseLister{l}, ExportOptions{}))[1:] {
		var fl fileLine
		must(t, json.Unmarshal(ln, &fl))
		if len(got) == 0 || got[len(got)-1] != fl.Instance {
			got = append(got, fl.Instance)
		}
	}
	if want := []string{"c", "b", "a"}; !slices.Equal(got, want) {
		t.Fatalf("exported instances in the order %v, want the lister's %v", got, want)
	}
}

func TestExportPayloadBytes(t *testing.T) {
	// Payloads that compacting or HTML escaping would change, or that are
	// not JSON, go as data_b64; those that survive go as data. Either way
	// the bytes come back.
	payloads := map[string]struct {
		data []byte
		b64  bool
	}{
		"compact":      {[]byte(`{"a":"<&>` + "\u2028" + `","b":[1,2]}`), false},
		"indented":     {[]byte("{\n  \"a\": 1\n}"), true},
		"not json":     {[]byte("\x00\xff binary"), true},
		"not object":   {[]byte(`"text"`), true},
		"invalid utf8": {[]byte("{\"a\":\"\xff\"}"), true},
		"empty":        {[]byte{}, true},
	}
	l := memlog.New(nil)
	for id, p := range payloads {
		_, err := l.Append(t.Context(), id, events.Message{MsgID: "m-" + id, Data: p.data}, 0)
		must(t, err)
	}
	out := export(t, l, ExportOptions{})
	for _, b := range lines(out)[1:] {
		var ln fileLine
		must(t, json.Unmarshal(b, &ln))
		p := payloads[ln.Instance]
		var got []byte
		if p.b64 {
			if ln.DataB64 == nil || ln.Data != nil {
				t.Errorf("%s: want data_b64: %s", ln.Instance, b)
				continue
			}
			got = *ln.DataB64
		} else {
			if ln.Data == nil || ln.DataB64 != nil {
				t.Errorf("%s: want data: %s", ln.Instance, b)
				continue
			}
			got = ln.Data
		}
		if !bytes.Equal(got, p.data) {
			t.Errorf("%s: payload changed: got %q, want %q", ln.Instance, got, p.data)
		}
	}
}

func TestExportStripsPublishChecks(t *testing.T) {
	l := memlog.New(nil)
	_, err := l.Append(t.Context(), "x", events.Message{MsgID: "m", Data: []byte(`{}`),
		Header: map[string][]string{"Nats-Expected-Last-Subject-Sequence": {"7"}, "Nats-Expected-Stream": {"RUNLOG"}, "Runlog-Schema": {"1"}}}, 0)
	must(t, err)
	out := export(t, l, ExportOptions{})
	if bytes.Contains(out, []byte("Nats-Expected")) || !bytes.Contains(out, []byte(`"headers":{"Runlog-Schema":["1"]}`)) {
		t.Fatalf("export:\n%s", out)
	}
}

func importFile(t *testing.T, file []byte, dst lifecycle.Log, opts ImportOptions) (ImportStats, error) {
	t.Helper()
	return Import(t.Context(), bytes.NewReader(file), dst, opts)
}

// sameHistories checks that dst holds exactly src's messages (ids, headers,
// bytes) and folds to the same state.
func sameHistories(t *testing.T, src, dst Source) {
	t.Helper()
	want, got := all(t, src), all(t, dst)
	if len(got) != len(want) {
		t.Fatalf("destination has %d instances, want %d", len(got), len(want))
	}
	for id, ws := range want {
		gs := got[id]
		if len(gs) != len(ws) {
			t.Fatalf("%q: %d messages, want %d", id, len(gs), len(ws))
		}
		for i := range ws {
			if gs[i].MsgID != ws[i].MsgID || !bytes.Equal(gs[i].Data, ws[i].Data) || !reflect.DeepEqual(gs[i].Header, ws[i].Header) {
				t.Fatalf("%q message %d differs:\n got %+v\nwant %+v", id, i, gs[i], ws[i])
			}
		}
		a, b := fold(t, src, id), fold(t, dst, id)
		for _, c := range Diff(a, b) {
			if c.Field != "revision" && c.Field != "last_seq" {
				t.Errorf("%q: folded states differ: %s", id, c)
			}
		}
		if a.Head != b.Head || a.Commits != b.Commits || a.Events != b.Events {
			t.Errorf("%q: head/commits/events differ", id)
		}
	}
	if rep := verify(t, dst, VerifyOptions{}); !rep.OK() {
		t.Fatalf("destination does not verify")
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	src := cleanLog(t)
	file := export(t, src, ExportOptions{})
	dst := memlog.New(nil)
	var phases []string
	st, err := importFile(t, file, dst, ImportOptions{Progress: func(p Progress) { phases = append(phases, p.Phase) }})
	must(t, err)
	n := len(lines(file)) - 1
	if st.Instances != 3 || st.Messages != n || st.Appended != n || st.Present != 0 || st.Unchanged != 0 {
		t.Fatalf("stats %+v, want 3 instances, %d appended", st, n)
	}
	if p := slices.Compact(slices.Clone(phases)); len(p) != 2 || p[0] != "check" || p[1] != "write" {
		t.Errorf("progress phases %v, want check then write", phases)
	}
	sameHistories(t, src, dst)

	// The import exports to the same lines, but for the sequences and
	// stored times, which are the destination's.
	again := lines(export(t, dst, ExportOptions{}))
	for i, b := range lines(file) {
		var x, y fileLine
		if i == 0 {
			continue
		}
		must(t, json.Unmarshal(b, &x))
		must(t, json.Unmarshal(again[i], &y))
		x.Seq, x.Time, y.Seq, y.Time = 0, time.Time{}, 0, time.Time{}
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("line %d differs after a round trip:\n%s\n%s", i+1, b, again[i])
		}
	}

	// Re-importing is a no-op.
	st, err = importFile(t, file, dst, ImportOptions{})
	must(t, err)
	if st.Appended != 0 || st.Present != n || st.Unchanged != 3 {
		t.Fatalf("re-import stats %+v", st)
	}
	sameHistories(t, src, dst)
}

func TestImportBase64Payloads(t *testing.T) {
	// A history whose first commit is stored indented: its bytes must be
	// kept (the next commit chains to them), so it travels as data_b64.
	src := memlog.New(nil)
	l := cleanLog(t)
	a := read(t, l, "a")
	var ind bytes.Buffer
	must(t, json.Indent(&ind, a[0].Data, "", "  "))
	first := events.Message{MsgID: a[0].MsgID, Header: a[0].Header, Data: ind.Bytes()}
	rec := decode(t, a[1])
	rec.Commit.Prev = workflow.Sha256(first.Data)
	second := encode(t, rec.Commit)
	_, err := src.Append(t.Context(), "a", first, 0)
	must(t, err)
	_, err = src.Append(t.Context(), "a", second, 1)
	must(t, err)

	var buf bytes.Buffer
	st, err := Export(t.Context(), src, &buf, ExportOptions{})
	must(t, err)
	if st.Base64 != 1 || st.Messages != 2 {
		t.Fatalf("export stats %+v", st)
	}
	dst := memlog.New(nil)
	_, err = importFile(t, buf.Bytes(), dst, ImportOptions{})
	must(t, err)
	sameHistories(t, src, dst)
}

// onlyReader hides every method but Read: Import must spool it.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestImportNonSeekable(t *testing.T) {
	src := cleanLog(t)
	file := export(t, src, ExportOptions{})
	dir := t.TempDir()
	dst := memlog.New(nil)
	_, err := Import(t.Context(), onlyReader{bytes.NewReader(file)}, dst, ImportOptions{TempDir: dir})
	must(t, err)
	sameHistories(t, src, dst)
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("spool files left behind: %v", left)
	}
}

// editLine returns file with line n (1-based) changed by edit.
func editLine(t *testing.T, file []byte, n int, edit func(ln *fileLine)) []byte {
	t.Helper()
	ls := lines(file)
	var ln fileLine
	must(t, json.Unmarshal(ls[n-1], &ln))
	edit(&ln)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	must(t, enc.Encode(&ln))
	ls[n-1] = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	return append(bytes.Join(ls, []byte("\n")), '\n')
}

// lineOf returns the 1-based line of the k-th message of instance id.
func lineOf(t *testing.T, file []byte, id string, k int) int {
	t.Helper()
	seen := 0
	for i, b := range lines(file)[1:] {
		if bytes.Contains(b, []byte(`"instance":"`+id+`"`)) {
			if seen == k {
				return i + 2
			}
			seen++
		}
	}
	t.Fatalf("no message %d of %q", k, id)
	return 0
}

func wantNothingWritten(t *testing.T, dst *memlog.Log) {
	t.Helper()
	ids, err := dst.Instances(t.Context(), "", 0)
	must(t, err)
	if len(ids) != 0 {
		t.Fatalf("the destination holds %v: nothing should have been written", ids)
	}
}

func TestImportRefusesBrokenChain(t *testing.T) {
	src := cleanLog(t)
	file := export(t, src, ExportOptions{})
	n := lineOf(t, file, "b", 1) // b's StoreSignal: reason "customer asked"
	bad := editLine(t, file, n, func(ln *fileLine) {
		ln.Data = bytes.Replace(ln.Data, []byte("customer asked"), []byte("customer agreed"), 1)
	})
	dst := memlog.New(nil)
	_, err := importFile(t, bad, dst, ImportOptions{})
	if !errors.Is(err, ErrUnverified) {
		t.Fatalf("want ErrUnverified, got %v", err)
	}
	t.Log(err)
	ue, ok := errors.AsType[*UnverifiedError](err)
	if !ok || ue.Total != 1 || ue.Problems[0].Line != n+1 || ue.Problems[0].Kind != KindChain || ue.Problems[0].Instance != "b" {
		t.Fatalf("want one chain problem on line %d, got %+v", n+1, ue)
	}
	if !strings.Contains(err.Error(), "line "+seqString(uint64(n+1))) {
		t.Errorf("the error should name line %d: %v", n+1, err)
	}
	wantNothingWritten(t, dst)

	// The same edit on a non-seekable input: nothing written either.
	_, err = Import(t.Context(), onlyReader{bytes.NewReader(bad)}, dst, ImportOptions{TempDir: t.TempDir()})
	if !errors.Is(err, ErrUnverified) {
		t.Fatalf("want ErrUnverified, got %v", err)
	}
	wantNothingWritten(t, dst)
}

func TestImportRefusesBadFiles(t *testing.T) {
	src := cleanLog(t)
	file := export(t, src, ExportOptions{})
	ls := lines(file)
	join := func(ls ...[]byte) []byte { return append(bytes.Join(ls, []byte("\n")), '\n') }
	cases := map[string]struct {
		file []byte
		kind ProblemKind
		line int
	}{
		"empty":          {nil, KindFormat, 1},
		"no header":      {join(ls[1:]...), KindFormat, 1},
		"newer format":   {join(append([][]byte{[]byte(`{"runlog_export":2}`)}, ls[1:]...)...), KindFormat, 1},
		"not json":       {join(ls[0], []byte("{oops"), ls[1]), KindFormat, 2},
		"unknown field":  {join(ls[0], bytes.Replace(ls[1], []byte(`"seq"`), []byte(`"sequence"`), 1)), KindFormat, 2},
		"missing data":   {editLine(t, file, 2, func(ln *fileLine) { ln.Data = nil }), KindFormat, 2},
		"line removed":   {join(append([][]byte{ls[0], ls[1]}, ls[3:]...)...), KindChain, 3},
		"lines swapped":  {join(append([][]byte{ls[0], ls[1], ls[3], ls[2]}, ls[4:]...)...), KindChain, 3},
		"duplicate line": {join(append([][]byte{ls[0], ls[1]}, ls[1:]...)...), KindDuplicate, 3},
		"garbage data":   {editLine(t, file, 3, func(ln *fileLine) { ln.Data = nil; b := []byte("junk"); ln.DataB64 = &b }), KindDecode, 3},
		"wrong instance": {editLine(t, file, 3, func(ln *fileLine) { ln.Instance = "z" }), KindForeign, 3},
		"bad header":     {editLine(t, file, 2, func(ln *fileLine) { ln.Headers = map[string][]string{events.HeaderEvents: {"x"}} }), KindHeader, 2},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dst := memlog.New(nil)
			_, err := importFile(t, c.file, dst, ImportOptions{})
			ue, ok := errors.AsType[*UnverifiedError](err)
			if !ok || !errors.Is(err, ErrUnverified) {
				t.Fatalf("want an UnverifiedError, got %v", err)
			}
			t.Log(err)
			if p := ue.Problems[0]; p.Kind != c.kind || p.Line != c.line {
				t.Fatalf("first problem %v, want %s on line %d", p, c.kind, c.line)
			}
			wantNothingWritten(t, dst)
		})
	}
}

func TestImportListsFirstProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"runlog_export":1}` + "\n")
	for range 30 {
		b.WriteString("not a line\n")
	}
	_, err := importFile(t, []byte(b.String()), memlog.New(nil), ImportOptions{MaxProblems: 5})
	ue, ok := errors.AsType[*UnverifiedError](err)
	if !ok || len(ue.Problems) != 5 || ue.Total != 30 || !strings.Contains(err.Error(), "and 25 more") {
		t.Fatalf("got %v", err)
	}
}

func TestImportResumesPrefix(t *testing.T) {
	src := cleanLog(t)
	file := export(t, src, ExportOptions{})
	msgs := all(t, src)
	// The destination already holds "b" in full and the first two
	// messages of "a": an earlier import that stopped half-way.
	part := map[string][]events.Message{"a": msgs["a"][:2], "b": msgs["b"]}
	dst := craft(t, []string{"a", "b"}, part)
	st, err := importFile(t, file, dst, ImportOptions{})
	must(t, err)
	want := len(msgs["a"]) - 2 + len(msgs["c"])
	if st.Appended != want || st.Present != 2+len(msgs["b"]) || st.Unchanged != 1 {
		t.Fatalf("stats %+v, want %d appended", st, want)
	}
	sameHistories(t, src, dst)
}

func TestImportRefusesConflict(t *testing.T) {
	src := cleanLog(t)
	file := export(t, src, ExportOptions{})
	dst := memlog.New(nil)
	// Another history of "c" in the destination.
	s := newStore(t, dst)
	_, err := s.PrepareRun(t.Context(), lifecycle.PrepareRunRequest{InstanceID: "c", DefinitionHash: def, FirstTask: workflow.TaskHint{ID: taskC}})
	must(t, err)
	before := all(t, dst)

	_, err = importFile(t, file, dst, ImportOptions{})
	ce, ok := errors.AsType[*ConflictError](err)
	if !ok || !errors.Is(err, ErrConflict) || ce.Total != 1 || ce.Problems[0].Instance != "c" || ce.Problems[0].Kind != KindConflict {
		t.Fatalf("want a conflict on %q, got %v", "c", err)
	}
	t.Log(err)
	if after := all(t, dst); !reflect.DeepEqual(after, before) {
		t.Fatalf("the destination changed: %v", after)
	}

	// A destination whose history does not verify: a conflict.
	msgs0 := all(t, src)
	broken := craft(t, []string{"a"}, map[string][]events.Message{"a": {msgs0["a"][0], {Data: []byte("junk")}}})
	_, err = importFile(t, file, broken, ImportOptions{})
	if ce, ok := errors.AsType[*ConflictError](err); !ok || !strings.Contains(ce.Problems[0].Detail, "does not verify") {
		t.Fatalf("want a conflict, got %v", err)
	}

	// A destination that holds more than the file: a conflict too.
	msgs := all(t, src)
	short := export(t, craft(t, []string{"a"}, map[string][]events.Message{"a": msgs["a"][:3]}), ExportOptions{})
	full := craft(t, []string{"a"}, msgs)
	if _, err := importFile(t, short, full, ImportOptions{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("want ErrConflict, got %v", err)
	}
}

func TestImportInputChangedBetweenPasses(t *testing.T) {
	src := cleanLog(t)
	file := export(t, src, ExportOptions{})
	n := lineOf(t, file, "a", 3)
	changed := editLine(t, file, n, func(ln *fileLine) {
		ln.Data = bytes.Replace(ln.Data, []byte(`"approval"`), []byte(`"approved"`), 1)
	})
	// A reader that serves the good file first, the changed one after a
	// rewind.
	r := &swapReader{first: bytes.NewReader(file), second: bytes.NewReader(changed)}
	dst := memlog.New(nil)
	st, err := Import(t.Context(), r, dst, ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "changed since it was verified") {
		t.Fatalf("want an error about the changed input, got %v", err)
	}
	// Nothing unverified was written: "a" stops before the changed line.
	got := read(t, dst, "a")
	want := read(t, src, "a")[:3]
	if len(got) != 3 || st.Appended != 3 {
		t.Fatalf("wrote %d messages of a (stats %+v), want the 3 before the changed line", len(got), st)
	}
	for i := range got {
		if !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("message %d differs", i)
		}
	}
}

// swapReader reads first until Seek is called, then second.
type swapReader struct {
	first, second *bytes.Reader
	swapped       bool
}

func (s *swapReader) Read(p []byte) (int, error) {
	if s.swapped {
		return s.second.Read(p)
	}
	return s.first.Read(p)
}

func (s *swapReader) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekCurrent && off == 0 && !s.swapped {
		return s.first.Seek(0, io.SeekCurrent)
	}
	s.swapped = true
	return s.second.Seek(off, whence)
}

func TestImportLineTooLong(t *testing.T) {
	src := cleanLog(t)
	file := export(t, src, ExportOptions{})
	_, err := importFile(t, file, memlog.New(nil), ImportOptions{MaxLineBytes: 200})
	if !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), "line 2: format: line longer than 200 bytes") {
		t.Fatalf("got %v", err)
	}
	_, err = importFile(t, file, memlog.New(nil), ImportOptions{MaxLineBytes: 20})
	if !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), "line 1: format: line longer than 20 bytes") {
		t.Fatalf("got %v", err)
	}
}
