package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/workflow"
)

// TestEveryFieldRoundTrips holds the plan-driven codec (codec.go) to
// encoding/json, field by field, mechanically: for every event type, a
// payload with every field set (reflection, recursively: pointers
// allocated, one map entry, one slice element, non-zero numbers, texts
// and times) must encode to the bytes encoding/json writes for it, and
// those bytes must decode back to the same payload. The codec derives
// its plans from the same structs, so a field added to one is on the
// wire; this test proves the plan writes and reads it as encoding/json
// would (tag options, omitempty and omitzero, kinds, map key order).
func TestEveryFieldRoundTrips(t *testing.T) {
	at := time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)
	for i, typ := range Types() {
		p, _ := registry[typ].new()
		f := &filler{t: t, at: at}
		f.fill(reflect.ValueOf(p).Elem(), string(typ))
		ref, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("%s: encoding/json: %v (the filler made a value the type refuses: teach it)", typ, err)
		}
		for _, name := range f.names {
			if !bytes.Contains(ref, []byte(`"`+name+`":`)) {
				t.Errorf("%s: field %q is not in encoding/json's bytes %s (the filler left it empty)", typ, name, ref)
			}
		}
		c := Commit{ID: ulid.ULID{1, byte(i)}, Instance: "fields", Time: at, Command: "test", Actor: "a", Prev: workflow.Sha256([]byte{byte(i)}),
			Events: []Event{{ID: ulid.ULID{2, byte(i)}, Type: typ, Run: ulid.ULID{3}, Data: p}}}
		fast, err := encodeCommit(&c)
		if err != nil {
			t.Errorf("%s: encoder: %v", typ, err)
			continue
		}
		want, err := referenceEncode(&c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast, want) {
			t.Errorf("%s: the encoder and encoding/json disagree:\nrunlog:        %s\nencoding/json: %s", typ, fast, want)
			continue
		}
		rec, err := Decode(Message{Seq: 1, Data: want}, "fields")
		if err != nil {
			t.Errorf("%s: the decoder refuses encoding/json's bytes: %v\n%s", typ, err, want)
			continue
		}
		if got := rec.Commit.Events[0].Data; !reflect.DeepEqual(got, p) {
			t.Errorf("%s: decoded payload differs:\ngot:  %+v\nwant: %+v", typ, got, p)
		}
	}
}

// filler sets every field of a value to something non-zero and records
// the JSON names of the fields it set (for the check that each is
// written).
type filler struct {
	t     *testing.T
	at    time.Time
	n     int
	names []string
}

func (f *filler) fill(v reflect.Value, path string) {
	f.n++
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(f.at.Add(time.Duration(f.n) * time.Second)))
		return
	case reflect.TypeFor[workflow.SignalKind]():
		v.Set(reflect.ValueOf(workflow.Pause))
		return
	case reflect.TypeFor[workflow.PositionKind]():
		v.Set(reflect.ValueOf(workflow.AtSignal))
		return
	case reflect.TypeFor[TaskOutputs]():
		// A map on the wire (TestOutputsAreAMap): one entry, whose
		// fields are its key and value, not keys of their own.
		var o TaskOutput
		f.fill(reflect.ValueOf(&o.Task).Elem(), path+"{key}")
		f.fill(reflect.ValueOf(&o.Output).Elem(), path+"{value}")
		v.Set(reflect.ValueOf(TaskOutputs{o}))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		f.fill(v.Elem(), path)
	case reflect.Struct:
		for i := range v.NumField() {
			sf := v.Type().Field(i)
			if !sf.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			f.names = append(f.names, name)
			f.fill(v.Field(i), path+"."+sf.Name)
		}
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d <é>", f.n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(f.n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(f.n))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(f.n) + 0.5)
	case reflect.Array:
		for i := range v.Len() {
			f.fill(v.Index(i), path)
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		f.fill(s.Index(0), path+"[0]")
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		f.fill(k, path+"{key}")
		f.fill(e, path+"{value}")
		m.SetMapIndex(k, e)
		v.Set(m)
	default:
		f.t.Fatalf("%s: the filler does not know kind %s", path, v.Kind())
	}
}

// TestOutputsAreAMap holds TaskOutputs (CheckpointSavedData's Completed)
// to the type it stands for on the wire, map[workflow.TaskID][]byte, as
// encoding/json writes and reads it: the commit codec and TaskOutputs'
// own JSON methods both, on several entries built out of order (key
// order), a nil output and an empty one; and on the way in null, an
// empty object, a null output, a key given twice (the last wins), keys
// out of order, and keys that are not task ids.
func TestOutputsAreAMap(t *testing.T) {
	m := map[workflow.TaskID][]byte{}
	var outs TaskOutputs
	for i := range 5 {
		id, out := workflow.NewTaskID(fmt.Sprint("task-", i)), bytes.Repeat([]byte{byte(i)}, i)
		m[id] = out
		outs = append(outs, TaskOutput{Task: id, Output: out})
	}
	m[workflow.NewTaskID("nil")] = nil
	outs = append(outs, TaskOutput{Task: workflow.NewTaskID("nil")})
	if outs.ordered() {
		t.Fatal("the test's outputs are in order already: they must not be")
	}
	type asMap struct {
		Completed map[workflow.TaskID][]byte `json:"completed,omitempty"`
	}
	want, err := json.Marshal(asMap{m})
	if err != nil {
		t.Fatal(err)
	}
	e := &encoder{}
	e.payload(&CheckpointSavedData{Completed: outs})
	if e.err != nil {
		t.Fatal(e.err)
	}
	viaJSON, err := json.Marshal(&CheckpointSavedData{Completed: outs})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.b, want) || !bytes.Equal(viaJSON, want) {
		t.Errorf("encodings differ:\ncodec:           %s\nencoding/json:   %s\nas a map:        %s", e.b, viaJSON, want)
	}

	a, b := workflow.NewTaskID("a").String(), workflow.NewTaskID("b").String()
	inputs := []string{string(want), `{"completed":null}`, `{"completed":{}}`, `{"completed":{"` + a + `":null}}`,
		`{"completed":{"` + a + `":"AQ==","` + b + `":"Ag==","` + a + `":"Aw=="}}`, `{"completed":{"` + b + `":"AQ==","` + a + `":""}}`,
		`{"completed":{"x":"AQ=="}}`, `{"completed":{"` + a + `":1}}`, `{"completed":[]}`}
	for _, in := range inputs {
		var ref asMap
		refErr := json.Unmarshal([]byte(in), &ref)
		got := &CheckpointSavedData{}
		err := (&lexer{data: []byte(in)}).value(registry[CheckpointSaved].plan, unsafe.Pointer(got))
		viaJSON := &CheckpointSavedData{}
		jsonErr := json.Unmarshal([]byte(in), viaJSON)
		if (refErr == nil) != (err == nil) || (refErr == nil) != (jsonErr == nil) {
			t.Errorf("%s: as a map: %v; codec: %v; encoding/json: %v", in, refErr, err, jsonErr)
			continue
		}
		if refErr != nil {
			continue
		}
		for name, d := range map[string]*CheckpointSavedData{"codec": got, "encoding/json": viaJSON} {
			if (ref.Completed == nil) != (d.Completed == nil) || len(ref.Completed) != len(d.Completed) || !d.Completed.ordered() {
				t.Errorf("%s: %s read %+v, as a map %+v", in, name, d.Completed, ref.Completed)
				continue
			}
			for id, out := range ref.Completed {
				if got, ok := d.Completed.Get(id); !ok || !bytes.Equal(got, out) || (got == nil) != (out == nil) {
					t.Errorf("%s: %s read task %s as %q (%v), as a map %q", in, name, id, got, ok, out)
				}
			}
		}
	}

	// A task named twice has no map to stand for: it is not written.
	twice := TaskOutputs{{Task: workflow.NewTaskID("a")}, {Task: workflow.NewTaskID("a"), Output: []byte("x")}}
	if _, err := json.Marshal(&CheckpointSavedData{Completed: twice}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("outputs naming a task twice encoded: %v", err)
	}
}

// TestPlanRefusesWhatItCannotWrite: a field the codec cannot write
// exactly as encoding/json does stops at start-up with its path named,
// rather than being written some other way.
func TestPlanRefusesWhatItCannotWrite(t *testing.T) {
	type rawMsg struct {
		R json.RawMessage `json:"r"`
	}
	cases := map[string]reflect.Type{
		"no json tag": reflect.TypeFor[struct{ A string }](),
		"string option": reflect.TypeFor[struct {
			N int `json:"n,string"`
		}](),
		"float32": reflect.TypeFor[struct {
			F float32 `json:"f"`
		}](),
		"interface": reflect.TypeFor[struct {
			X any `json:"x"`
		}](),
		"int keys": reflect.TypeFor[struct {
			M map[int]string `json:"m"`
		}](),
		"own MarshalJSON": reflect.TypeFor[rawMsg](),
		"upper-case key": reflect.TypeFor[struct {
			A string `json:"A"`
		}](),
		"embedded": reflect.TypeFor[struct{ workflow.TaskHint }](),
		"nested in a map": reflect.TypeFor[struct {
			M map[string]struct {
				C chan int `json:"c"`
			} `json:"m"`
		}](),
		"pointer to array": reflect.TypeFor[struct {
			P *[2]int `json:"p"`
		}](),
	}
	for name, typ := range cases {
		if _, err := buildPlan(typ, map[reflect.Type]*plan{}); err == nil {
			t.Errorf("%s: %s has a plan", name, typ)
		}
	}
	if _, err := buildPlan(reflect.TypeFor[workflow.Snapshot](), map[reflect.Type]*plan{}); err != nil {
		t.Errorf("workflow.Snapshot: %v", err)
	}
}

func TestIsServerHeader(t *testing.T) {
	for _, h := range ServerHeaders {
		for _, name := range []string{h, strings.ToLower(h), strings.ToUpper(h)} {
			if !IsServerHeader(name) {
				t.Errorf("IsServerHeader(%q) = false", name)
			}
		}
	}
	for _, name := range []string{"", "Nats-", "Nats-Msg-Id", "Nats-Expected-Last-Subject-Sequence", "Runlog-Events", "Nats-Sequence-Note", "X-Nats-Sequence"} {
		if IsServerHeader(name) {
			t.Errorf("IsServerHeader(%q) = true", name)
		}
	}
}
