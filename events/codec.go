package events

import (
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/workflow"
)

// The payload structs in types.go are the only definition of the wire
// format. A plan is how one Go type is written and read, derived once, at
// start-up, from the type itself — its fields, their types and their json
// tags, by encoding/json's rules — so a field added to a struct is on the
// wire with nothing else to change, and a type the codec cannot write
// exactly as encoding/json does stops the program at start-up (and every
// test) instead of being written differently.
//
// The encoder and decoder below interpret plans: a switch on the kind of
// each value, fields reached by offset, no reflection on the hot path but
// for maps and slices (rare in payloads). TestEveryFieldRoundTrips holds
// the result to encoding/json, field by field.

// planKind is how a value is written.
type planKind uint8

const (
	kString planKind = iota + 1
	kBool
	kInt
	kUint
	kFloat
	kBytes // []byte: base64
	kHash  // workflow.Hash32: hex
	kULID
	kTime
	kText    // another encoding.TextMarshaler (kinds)
	kPtr     // elem
	kStruct  // fields
	kSlice   // elem
	kMap     // keys strings or hashes, values elem
	kOutputs // TaskOutputs: a map of task outputs on the wire
)

// plan is how values of one type are written and read.
type plan struct {
	typ      reflect.Type
	kind     planKind
	size     uintptr // of kInt and kUint values
	max      uint64  // kUint: the largest value the type holds
	fields   []field // kStruct, in declaration order (encoding/json's)
	elem     *plan   // kPtr, kSlice, kMap (the value)
	hashKeys bool    // kMap: the keys are hashes (else strings)

	ptrType  unsafe.Pointer // the runtime type of *typ, for at and ptrIface
	valType  unsafe.Pointer // the runtime type of typ, for iface
	keySlice reflect.Type   // kMap: []key and []value, for sorting
	valSlice reflect.Type
}

// at returns the addressable reflect.Value of the value of p at v. It is
// reflect.NewAt(p.typ, v).Elem() without NewAt's lookup of the pointer
// type in reflect's cache (a measurable share of an encoding otherwise):
// an interface value is a type word and a data word.
func (p *plan) at(v unsafe.Pointer) reflect.Value { return reflect.ValueOf(p.ptrIface(v)).Elem() }

// ptrIface returns the pointer v, of type *typ, as an interface value.
func (p *plan) ptrIface(v unsafe.Pointer) any {
	var x any
	w := (*[2]unsafe.Pointer)(unsafe.Pointer(&x))
	w[0], w[1] = p.ptrType, v
	return x
}

// iface returns the value at v as an interface value that refers to it
// rather than to a copy (for a value-receiver method called at once; it
// must not be kept). Only for types that are not pointer-shaped: their
// interface values hold a pointer to the value.
func (p *plan) iface(v unsafe.Pointer) any {
	var x any
	w := (*[2]unsafe.Pointer)(unsafe.Pointer(&x))
	w[0], w[1] = p.valType, v
	return x
}

// field is one field of a struct plan.
type field struct {
	*plan
	name      string  // the JSON key
	quoted    string  // the key as written: "name":
	off       uintptr // offset in the struct
	omitEmpty bool    // ,omitempty
	omitZero  bool    // ,omitzero
	isZero    func(unsafe.Pointer) bool
}

var (
	typeTime    = reflect.TypeFor[time.Time]()
	typeULID    = reflect.TypeFor[ulid.ULID]()
	typeHash    = reflect.TypeFor[workflow.Hash32]()
	typeJSONMar = reflect.TypeFor[json.Marshaler]()
	typeTextMar = reflect.TypeFor[encoding.TextMarshaler]()
	typeTextUn  = reflect.TypeFor[encoding.TextUnmarshaler]()
	typeZeroer  = reflect.TypeFor[interface{ IsZero() bool }]()

	// typeOutputs is CheckpointSavedData's Completed: on the wire a map
	// of task outputs, in memory a slice (TaskOutputs), written and read
	// without reflection. TestOutputsAreAMap holds it to the bytes
	// encoding/json writes and reads for a map[workflow.TaskID][]byte.
	typeOutputs = reflect.TypeFor[TaskOutputs]()
)

// planFor derives the plan of t; it panics on a type it cannot write
// exactly as encoding/json does (payload types are fixed at compile time:
// the panic is a programming error, caught at start-up).
func planFor(t reflect.Type) *plan {
	p, err := buildPlan(t, map[reflect.Type]*plan{})
	if err != nil {
		panic(fmt.Sprintf("events: no wire plan for %s: %v", t, err))
	}
	return p
}

func buildPlan(t reflect.Type, seen map[reflect.Type]*plan) (*plan, error) {
	if p, ok := seen[t]; ok {
		return p, nil // a recursive type: the plan being built
	}
	typeWord := func(x any) unsafe.Pointer { return (*[2]unsafe.Pointer)(unsafe.Pointer(&x))[0] }
	p := &plan{typ: t, size: t.Size(), ptrType: typeWord(reflect.Zero(reflect.PointerTo(t)).Interface()),
		valType: typeWord(reflect.Zero(t).Interface())}
	switch {
	case t == typeTime:
		p.kind = kTime
		return p, nil
	case t == typeULID:
		p.kind = kULID
		return p, nil
	case t == typeHash:
		p.kind = kHash
		return p, nil
	case t == typeOutputs: // its MarshalJSON is this codec's
		p.kind = kOutputs
		return p, nil
	case t.Kind() == reflect.Pointer:
		// A pointer is written as what it points to (or null): its
		// element's methods are checked there.
	case t.Implements(typeJSONMar) || reflect.PointerTo(t).Implements(typeJSONMar):
		return nil, fmt.Errorf("%s has its own MarshalJSON", t)
	case t.Implements(typeTextMar):
		if !reflect.PointerTo(t).Implements(typeTextUn) {
			return nil, fmt.Errorf("%s has MarshalText but no UnmarshalText", t)
		}
		if pointerShaped(t) {
			return nil, fmt.Errorf("%s: a pointer-shaped TextMarshaler is not supported", t)
		}
		p.kind = kText
		return p, nil
	case reflect.PointerTo(t).Implements(typeTextMar):
		return nil, fmt.Errorf("%s has MarshalText on its pointer only", t)
	}
	switch t.Kind() {
	case reflect.String:
		p.kind = kString
	case reflect.Bool:
		p.kind = kBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		p.kind = kInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		p.kind = kUint
		p.max = math.MaxUint64 >> (64 - 8*t.Size())
	case reflect.Float64:
		p.kind = kFloat
	case reflect.Pointer:
		p.kind = kPtr
	case reflect.Struct:
		p.kind = kStruct
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !t.Elem().Implements(typeTextMar) && !reflect.PointerTo(t.Elem()).Implements(typeTextMar) {
			p.kind = kBytes
			return p, nil
		}
		p.kind = kSlice
	case reflect.Map:
		p.kind = kMap
		p.keySlice, p.valSlice = reflect.SliceOf(t.Key()), reflect.SliceOf(t.Elem())
		switch k := t.Key(); {
		case k == typeHash:
			p.hashKeys = true
		case k.Kind() == reflect.String && !k.Implements(typeTextMar):
		default:
			return nil, fmt.Errorf("map key %s (strings and hashes only)", k)
		}
	default:
		return nil, fmt.Errorf("kind %s is not supported", t.Kind())
	}
	seen[t] = p
	switch p.kind {
	case kPtr, kSlice, kMap:
		elem, err := buildPlan(t.Elem(), seen)
		if err != nil {
			return nil, err
		}
		p.elem = elem
	case kStruct:
		for i := range t.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			if sf.Anonymous {
				return nil, fmt.Errorf("embedded field %s.%s", t, sf.Name)
			}
			f, err := buildField(sf, seen)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", t, sf.Name, err)
			}
			if f != nil {
				p.fields = append(p.fields, *f)
			}
		}
	}
	return p, nil
}

func buildField(sf reflect.StructField, seen map[reflect.Type]*plan) (*field, error) {
	tag, ok := sf.Tag.Lookup("json")
	if !ok {
		return nil, fmt.Errorf("no json tag (every wire field names its key)")
	}
	if tag == "-" {
		return nil, nil
	}
	name, opts, _ := strings.Cut(tag, ",")
	if name == "" || !plainKey(name) {
		return nil, fmt.Errorf("json key %q (a wire key is lower-case letters, digits and underscores)", name)
	}
	f := &field{name: name, quoted: `"` + name + `":`, off: sf.Offset}
	for opt := range strings.SplitSeq(opts, ",") {
		switch opt {
		case "":
		case "omitempty":
			f.omitEmpty = true
		case "omitzero":
			f.omitZero = true
			f.isZero = zeroTest(sf.Type)
		default:
			return nil, fmt.Errorf("json tag option %q is not supported", opt)
		}
	}
	p, err := buildPlan(sf.Type, seen)
	if err != nil {
		return nil, err
	}
	f.plan = p
	return f, nil
}

// pointerShaped reports whether an interface value holds a value of t
// itself rather than a pointer to it.
func pointerShaped(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	case reflect.Struct:
		return t.NumField() == 1 && pointerShaped(t.Field(0).Type)
	case reflect.Array:
		return t.Len() == 1 && pointerShaped(t.Elem())
	}
	return false
}

// plainKey reports whether a key is written as it is (no escaping).
func plainKey(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// zeroTest is encoding/json's omitzero test for t: its IsZero method, or
// the zero value.
func zeroTest(t reflect.Type) func(unsafe.Pointer) bool {
	switch {
	case t == typeTime:
		return func(v unsafe.Pointer) bool { return (*time.Time)(v).IsZero() }
	case t == typeHash:
		return func(v unsafe.Pointer) bool { return (*workflow.Hash32)(v).IsZero() }
	case t.Implements(typeZeroer):
		return func(v unsafe.Pointer) bool {
			return reflect.NewAt(t, v).Elem().Interface().(interface{ IsZero() bool }).IsZero()
		}
	}
	return func(v unsafe.Pointer) bool { return reflect.NewAt(t, v).Elem().IsZero() }
}

// omitted reports whether the field's value at v is left out.
func (f *field) omitted(v unsafe.Pointer) bool {
	return f.omitEmpty && f.empty(v) || f.omitZero && f.isZero(v)
}

// empty is encoding/json's omitempty test: false, 0, a nil pointer, an
// empty string, slice or map. Structs and arrays (hashes, ids, times) are
// never empty.
func (p *plan) empty(v unsafe.Pointer) bool {
	switch p.kind {
	case kString:
		return len(*(*string)(v)) == 0
	case kBool:
		return !*(*bool)(v)
	case kInt:
		return loadInt(v, p.size) == 0
	case kUint:
		return loadUint(v, p.size) == 0
	case kFloat:
		return *(*float64)(v) == 0
	case kBytes, kSlice, kOutputs:
		return len(*(*[]byte)(v)) == 0 // every slice header holds its length there
	case kPtr:
		return *(*unsafe.Pointer)(v) == nil
	case kMap:
		return *(*unsafe.Pointer)(v) == nil || p.at(v).Len() == 0
	case kText:
		rv := p.at(v)
		switch rv.Kind() {
		case reflect.Array, reflect.Struct:
			return rv.Kind() == reflect.Array && rv.Len() == 0
		}
		return rv.IsZero()
	}
	return false
}

func loadInt(v unsafe.Pointer, size uintptr) int64 {
	switch size {
	case 1:
		return int64(*(*int8)(v))
	case 2:
		return int64(*(*int16)(v))
	case 4:
		return int64(*(*int32)(v))
	}
	return *(*int64)(v)
}

func loadUint(v unsafe.Pointer, size uintptr) uint64 {
	switch size {
	case 1:
		return uint64(*(*uint8)(v))
	case 2:
		return uint64(*(*uint16)(v))
	case 4:
		return uint64(*(*uint32)(v))
	}
	return *(*uint64)(v)
}

// storeInt stores n in a signed integer of the given size, refusing a
// value it does not hold (as encoding/json does).
func storeInt(v unsafe.Pointer, size uintptr, n int64) bool {
	switch size {
	case 1:
		*(*int8)(v) = int8(n)
	case 2:
		*(*int16)(v) = int16(n)
	case 4:
		*(*int32)(v) = int32(n)
	default:
		*(*int64)(v) = n
		return true
	}
	return loadInt(v, size) == n
}

func storeUint(v unsafe.Pointer, size uintptr, n uint64) {
	switch size {
	case 1:
		*(*uint8)(v) = uint8(n)
	case 2:
		*(*uint16)(v) = uint16(n)
	case 4:
		*(*uint32)(v) = uint32(n)
	default:
		*(*uint64)(v) = n
	}
}

// ---- Writing ----------------------------------------------------------

// value writes the value of plan p at v.
func (e *encoder) value(p *plan, v unsafe.Pointer) {
	switch p.kind {
	case kString:
		e.str(*(*string)(v))
	case kBool:
		if *(*bool)(v) {
			e.raw("true")
		} else {
			e.raw("false")
		}
	case kInt:
		e.int(loadInt(v, p.size))
	case kUint:
		e.uint(loadUint(v, p.size))
	case kFloat:
		e.float(*(*float64)(v))
	case kBytes:
		e.bytesVal(*(*[]byte)(v))
	case kHash:
		e.hash(*(*workflow.Hash32)(v))
	case kULID:
		e.ulid(*(*ulid.ULID)(v))
	case kTime:
		e.time(*(*time.Time)(v))
	case kText:
		e.text(p.iface(v).(encoding.TextMarshaler))
	case kPtr:
		if q := *(*unsafe.Pointer)(v); q != nil {
			e.value(p.elem, q)
		} else {
			e.raw("null")
		}
	case kStruct:
		e.raw("{")
		for i := range p.fields {
			f := &p.fields[i]
			fv := unsafe.Add(v, f.off)
			if (f.omitEmpty || f.omitZero) && f.omitted(fv) {
				continue
			}
			e.quotedKey(f.quoted, f.name)
			e.value(f.plan, fv)
		}
		e.raw("}")
	case kSlice:
		s := p.at(v)
		if s.IsNil() {
			e.raw("null")
			return
		}
		e.raw("[")
		for i := range s.Len() {
			if i > 0 {
				e.raw(",")
			}
			e.value(p.elem, s.Index(i).Addr().UnsafePointer())
		}
		e.raw("]")
	case kMap:
		e.mapValue(p, v)
	case kOutputs:
		e.outputs(*(*TaskOutputs)(v))
	}
}

// mapValue writes a map as encoding/json does: keys sorted by their text
// (for hashes, hex: the byte order).
func (e *encoder) mapValue(p *plan, v unsafe.Pointer) {
	m := p.at(v)
	if m.IsNil() {
		e.raw("null")
		return
	}
	n := m.Len()
	keys, vals := reflect.MakeSlice(p.keySlice, n, n), reflect.MakeSlice(p.valSlice, n, n)
	order := make([]int, n)
	var it reflect.MapIter
	it.Reset(m)
	for i := 0; it.Next(); i++ {
		keys.Index(i).SetIterKey(&it)
		vals.Index(i).SetIterValue(&it)
		order[i] = i
	}
	keyAt := func(i int) unsafe.Pointer { return keys.Index(i).Addr().UnsafePointer() }
	switch {
	case n < 2:
	case p.hashKeys:
		slices.SortFunc(order, func(a, b int) int {
			x, y := (*workflow.Hash32)(keyAt(a)), (*workflow.Hash32)(keyAt(b))
			return strings.Compare(string(x[:]), string(y[:]))
		})
	default:
		slices.SortFunc(order, func(a, b int) int { return strings.Compare(*(*string)(keyAt(a)), *(*string)(keyAt(b))) })
	}
	e.raw("{")
	for j, i := range order {
		if j > 0 {
			e.raw(",")
		}
		if p.hashKeys {
			e.hash(*(*workflow.Hash32)(keyAt(i)))
		} else {
			e.str(*(*string)(keyAt(i)))
		}
		e.raw(":")
		e.value(p.elem, vals.Index(i).Addr().UnsafePointer())
	}
	e.raw("}")
}

// outputs writes task outputs as encoding/json writes a
// map[workflow.TaskID][]byte: an object, keys in order.
func (e *encoder) outputs(t TaskOutputs) {
	if t == nil {
		e.raw("null")
		return
	}
	if !t.ordered() {
		t = slices.Clone(t)
		t.Sort()
		for i := 1; i < len(t); i++ {
			if t[i].Task == t[i-1].Task {
				e.fail(fmt.Errorf("task outputs name task %s twice", t[i].Task))
				return
			}
		}
	}
	e.raw("{")
	for i := range t {
		if i > 0 {
			e.raw(",")
		}
		e.hash(t[i].Task)
		e.raw(":")
		e.bytesVal(t[i].Output)
	}
	e.raw("}")
}

// ---- Reading ----------------------------------------------------------

// value reads the next value into the value of plan p at v, by
// encoding/json's rules: null leaves a value unchanged and sets a
// pointer, slice or map to nil; an unknown field is refused.
func (l *lexer) value(p *plan, v unsafe.Pointer) error {
	switch p.kind {
	case kString:
		if l.null() {
			return nil
		}
		s, err := l.str()
		*(*string)(v) = s
		return err
	case kBool:
		if l.null() {
			return nil
		}
		b, err := l.boolean()
		*(*bool)(v) = b
		return err
	case kInt:
		if l.null() {
			return nil
		}
		n, err := l.int64()
		if err == nil && !storeInt(v, p.size, n) {
			return l.errorf("number %d out of range of %s", n, p.typ)
		}
		return err
	case kUint:
		if l.null() {
			return nil
		}
		n, err := l.uint64(p.max)
		storeUint(v, p.size, n)
		return err
	case kFloat:
		if l.null() {
			return nil
		}
		f, err := l.float64()
		*(*float64)(v) = f
		return err
	case kBytes:
		b, err := l.bytes()
		*(*[]byte)(v) = b
		return err
	case kHash:
		return l.text((*workflow.Hash32)(v))
	case kULID:
		return l.text((*ulid.ULID)(v))
	case kTime:
		return l.text((*time.Time)(v))
	case kText:
		return l.text(p.ptrIface(v).(encoding.TextUnmarshaler))
	case kPtr:
		q := (*unsafe.Pointer)(v)
		if l.null() {
			*q = nil
			return nil
		}
		if *q == nil {
			*q = reflect.New(p.elem.typ).UnsafePointer()
		}
		return l.value(p.elem, *q)
	case kStruct:
		return l.object(func(k []byte) error {
			for i := range p.fields {
				if f := &p.fields[i]; f.name == string(k) {
					return l.value(f.plan, unsafe.Add(v, f.off))
				}
			}
			return unknownField(k)
		})
	case kSlice:
		s := p.at(v)
		if l.null() {
			s.SetZero()
			return nil
		}
		s.Set(reflect.MakeSlice(p.typ, 0, 0)) // [] is an empty slice, not nil
		return l.array(func() error {
			n := s.Len()
			s.Grow(1)
			s.SetLen(n + 1)
			return l.value(p.elem, s.Index(n).Addr().UnsafePointer())
		})
	case kOutputs:
		return l.outputs((*TaskOutputs)(v))
	case kMap:
		m := p.at(v)
		if l.null() {
			m.SetZero()
			return nil
		}
		if m.IsNil() {
			m.Set(reflect.MakeMap(p.typ))
		}
		key := reflect.New(p.typ.Key()).Elem()
		val := reflect.New(p.typ.Elem()).Elem()
		return l.object(func(k []byte) error {
			if p.hashKeys {
				if err := (*workflow.Hash32)(key.Addr().UnsafePointer()).UnmarshalText(k); err != nil {
					return err
				}
			} else {
				key.SetString(string(k))
			}
			val.SetZero()
			if err := l.value(p.elem, val.Addr().UnsafePointer()); err != nil {
				return err
			}
			m.SetMapIndex(key, val)
			return nil
		})
	}
	return fmt.Errorf("no plan for %s", p.typ)
}

// outputs reads task outputs as encoding/json reads a
// map[workflow.TaskID][]byte: null is nil, {} an empty set, and of a key
// given twice the last wins; the result is in task order.
func (l *lexer) outputs(t *TaskOutputs) error {
	if l.null() {
		*t = nil
		return nil
	}
	out := TaskOutputs{}
	err := l.object(func(k []byte) error {
		var id workflow.Hash32
		if err := id.UnmarshalText(k); err != nil {
			return err
		}
		b, err := l.bytes()
		if err != nil {
			return err
		}
		out = append(out, TaskOutput{Task: id, Output: b})
		return nil
	})
	*t = out.canonical()
	return err
}

// ---- The payload registry -----------------------------------------------

// payloadTypes lists one value of every payload type, in the order
// [Types] returns their event types. Everything else about a type — its
// event type, its wire plan, its constructor — is derived from it.
var payloadTypes = []Payload{
	(*SnapshotCreatedData)(nil), (*SnapshotDeletedData)(nil), (*SignalStoredData)(nil), (*SignalClearedData)(nil),
	(*TaskCompletedData)(nil), (*CheckpointSavedData)(nil), (*WorkflowCompletedData)(nil), (*WorkflowFailedData)(nil),
	(*WorkflowCancelledData)(nil), (*WorkflowPausedData)(nil), (*WorkflowUnpausedData)(nil), (*EventSentData)(nil),
	(*EventConsumedData)(nil), (*TaskClaimedData)(nil), (*TaskClaimReleasedData)(nil), (*DefinitionRegisteredData)(nil),
}

// payloadCodec is what the registry knows of one payload type.
type payloadCodec struct {
	typ  reflect.Type // the struct
	plan *plan
}

// new returns a zero payload of the type and its address.
func (c *payloadCodec) new() (Payload, unsafe.Pointer) {
	v := reflect.New(c.typ)
	return v.Interface().(Payload), v.UnsafePointer()
}

// registry maps each known type to its payload's codec.
var registry = func() map[Type]*payloadCodec {
	r := make(map[Type]*payloadCodec, len(payloadTypes))
	for _, p := range payloadTypes {
		t := reflect.TypeOf(p).Elem()
		if _, dup := r[p.EventType()]; dup {
			panic(fmt.Sprintf("events: two payload types for %q", p.EventType()))
		}
		r[p.EventType()] = &payloadCodec{typ: t, plan: planFor(t)}
	}
	return r
}()

// payloadAddr returns the address of the struct a payload points to, and
// its codec; ok is false for a payload type not in the registry or a nil
// payload.
func payloadAddr(p Payload) (c *payloadCodec, addr unsafe.Pointer, ok bool) {
	if p == nil {
		return nil, nil, false
	}
	c, ok = registry[p.EventType()]
	v := reflect.ValueOf(p)
	if !ok || v.Type() != reflect.PointerTo(c.typ) || v.IsNil() {
		return nil, nil, false
	}
	return c, v.UnsafePointer(), true
}

// Types returns every known event type, in a stable order.
func Types() []Type {
	ts := make([]Type, len(payloadTypes))
	for i, p := range payloadTypes {
		ts[i] = p.EventType()
	}
	return ts
}

// Known reports whether t is part of this version's vocabulary.
func Known(t Type) bool { _, ok := registry[t]; return ok }
