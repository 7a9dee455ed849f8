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

// TestMapFastPathAgrees holds the typed path of the task-output map
// (the Completed of nearly every checkpoint) to the general map code and
// to encoding/json: several entries (key order), a nil output, an empty
// one, and null and empty maps on the way in.
func TestMapFastPathAgrees(t *testing.T) {
	outs := map[workflow.TaskID][]byte{}
	for i := range 5 {
		outs[workflow.NewTaskID(fmt.Sprint("task-", i))] = bytes.Repeat([]byte{byte(i)}, i)
	}
	outs[workflow.NewTaskID("nil")] = nil
	d := &CheckpointSavedData{Completed: outs}
	want, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	inputs := [][]byte{want, []byte(`{"completed":null}`), []byte(`{"completed":{}}`), []byte(`{"completed":{"` + workflow.NewTaskID("x").String() + `":null}}`)}
	type result struct {
		enc  []byte
		decs []*CheckpointSavedData
		errs []string
	}
	run := func(slow bool) (r result) {
		slowMaps = slow
		defer func() { slowMaps = false }()
		e := &encoder{}
		e.payload(d)
		if e.err != nil {
			t.Fatal(e.err)
		}
		r.enc = e.b
		for _, in := range inputs {
			got := &CheckpointSavedData{}
			err := (&lexer{data: in}).value(registry[CheckpointSaved].plan, unsafe.Pointer(got))
			r.decs = append(r.decs, got)
			r.errs = append(r.errs, fmt.Sprint(err))
		}
		return r
	}
	fast, slow := run(false), run(true)
	if !bytes.Equal(fast.enc, want) || !bytes.Equal(slow.enc, want) {
		t.Errorf("encodings differ:\nfast:          %s\ngeneral:       %s\nencoding/json: %s", fast.enc, slow.enc, want)
	}
	for i, in := range inputs {
		ref := &CheckpointSavedData{}
		if err := json.Unmarshal(in, ref); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast.decs[i], ref) || !reflect.DeepEqual(slow.decs[i], ref) || fast.errs[i] != "<nil>" || slow.errs[i] != "<nil>" {
			t.Errorf("%s: fast %+v (%s), general %+v (%s), encoding/json %+v", in, fast.decs[i], fast.errs[i], slow.decs[i], slow.errs[i], ref)
		}
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
