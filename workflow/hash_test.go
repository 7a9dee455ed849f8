package workflow_test

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/runlog/runlog/workflow"
)

const (
	hexLower = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210"
	hexUpper = "00112233445566778899AABBCCDDEEFF0123456789ABCDEFFEDCBA9876543210"
	hexMixed = "00112233445566778899aAbBcCdDeEfF0123456789AbCdEffEdCbA9876543210"
)

func TestParseHash32(t *testing.T) {
	t.Parallel()
	want := workflow.Hash32{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
		0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10}
	for _, tt := range []struct{ name, in string }{
		{"lowercase", hexLower},
		{"uppercase", hexUpper},
		{"mixed case", hexMixed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for fn, parse := range map[string]func(string) (workflow.Hash32, error){
				"ParseHash32":         workflow.ParseHash32,
				"ParseDefinitionHash": workflow.ParseDefinitionHash,
			} {
				h, err := parse(tt.in)
				if err != nil {
					t.Fatalf("%s(%q) = %v", fn, tt.in, err)
				}
				if h != want {
					t.Errorf("%s(%q) = %x, want %x", fn, tt.in, h[:], want[:])
				}
				if h.String() != hexLower {
					t.Errorf("String() = %q, want lowercase %q", h.String(), hexLower)
				}
			}
		})
	}
}

func TestParseHash32Errors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, in string
		reason   string
	}{
		{"empty", "", "wrong length 0"},
		{"63 chars", hexLower[:63], "wrong length 63"},
		{"65 chars", hexLower + "0", "wrong length 65"},
		{"128 chars", hexLower + hexLower, "wrong length 128"},
		{"g", "g" + hexLower[1:], "invalid character 'g' at offset 0"},
		{"space at end", hexLower[:63] + " ", "invalid character ' ' at offset 63"},
		{"0x prefix", "0x" + hexLower[2:], "invalid character 'x' at offset 1"},
		{"multibyte char", "é" + hexLower[2:], "invalid character"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := workflow.ParseHash32(tt.in)
			if err == nil {
				t.Fatalf("ParseHash32(%q) = %v, want an error", tt.in, h)
			}
			if !h.IsZero() {
				t.Errorf("ParseHash32(%q) returned a non-zero hash with its error", tt.in)
			}
			if !errors.Is(err, workflow.ErrInvalidHash) {
				t.Errorf("errors.Is(%v, ErrInvalidHash) = false", err)
			}
			e, ok := errors.AsType[*workflow.HashError](err)
			if !ok {
				t.Fatalf("error %T is not a *HashError", err)
			}
			if e.Input != tt.in {
				t.Errorf("HashError.Input = %q, want %q", e.Input, tt.in)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not contain %q", err, tt.reason)
			}
			if _, err := workflow.ParseDefinitionHash(tt.in); !errors.Is(err, workflow.ErrInvalidHash) {
				t.Errorf("ParseDefinitionHash(%q) = %v, want ErrInvalidHash", tt.in, err)
			}
		})
	}
}

func TestHash32JSON(t *testing.T) {
	t.Parallel()
	h, err := workflow.ParseDefinitionHash(hexUpper)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `"`+hexLower+`"`; got != want {
		t.Fatalf("json.Marshal = %s, want %s (a quoted 64-character lowercase string)", got, want)
	}

	type doc struct {
		Def  workflow.DefinitionHash `json:"def"`
		Task workflow.TaskID         `json:"task"`
		Ptr  *workflow.Hash32        `json:"ptr,omitempty"`
	}
	in := doc{Def: h, Task: workflow.NewTaskID("first"), Ptr: &h}
	b, err = json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("Unmarshal(%s) = %v", b, err)
	}
	if out.Def != in.Def || out.Task != in.Task || out.Ptr == nil || *out.Ptr != h {
		t.Fatalf("round trip of %s = %+v, want %+v", b, out, in)
	}

	// Uppercase is accepted on input.
	var up doc
	if err := json.Unmarshal([]byte(`{"def":"`+hexUpper+`","task":"`+hexLower+`"}`), &up); err != nil {
		t.Fatal(err)
	}
	if up.Def != h {
		t.Errorf("uppercase JSON decoded to %v, want %v", up.Def, h)
	}

	for _, bad := range []string{
		`{"def":"abc"}`,
		`{"def":"` + "z" + hexLower[1:] + `"}`,
		`{"def":12}`,
		`{"def":[0,1,2]}`,
	} {
		var d doc
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("Unmarshal(%s) = nil, want an error", bad)
		}
	}
	var d doc
	if err := json.Unmarshal([]byte(`{"def":"abc"}`), &d); !errors.Is(err, workflow.ErrInvalidHash) {
		t.Errorf("Unmarshal of a short hash = %v, want it to wrap ErrInvalidHash", err)
	}
}

func TestHash32TextRoundTrip(t *testing.T) {
	t.Parallel()
	for _, h := range []workflow.Hash32{{}, workflow.Sha256(nil), workflow.DefinitionHashOf("hash-1"), workflow.NewTaskID("t")} {
		text, err := h.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back workflow.Hash32
		if err := back.UnmarshalText(text); err != nil {
			t.Fatalf("UnmarshalText(%s) = %v", text, err)
		}
		if back != h {
			t.Errorf("round trip %v -> %s -> %v", h, text, back)
		}
	}
	// A failed UnmarshalText leaves the hash unchanged.
	h := workflow.DefinitionHashOf("keep")
	if err := h.UnmarshalText([]byte("nope")); err == nil {
		t.Fatal("UnmarshalText(nope) = nil")
	}
	if h != workflow.DefinitionHashOf("keep") {
		t.Error("failed UnmarshalText changed the hash")
	}
}

func TestHashConstructors(t *testing.T) {
	t.Parallel()
	if got, want := workflow.DefinitionHashOf("hash-1"), workflow.Hash32(sha256.Sum256([]byte("hash-1"))); got != want {
		t.Errorf("DefinitionHashOf hashes with SHA-256: got %v, want %v", got, want)
	}
	if got, want := workflow.NewTaskID("task"), workflow.Sha256([]byte("task")); got != want {
		t.Errorf("NewTaskID = %v, want %v", got, want)
	}
	// DefinitionHashOf hashes its argument; it does not parse hex.
	if got := workflow.DefinitionHashOf(hexLower); got.String() == hexLower {
		t.Error("DefinitionHashOf parsed hex instead of hashing")
	}
	var zero workflow.Hash32
	if !zero.IsZero() || workflow.Sha256(nil).IsZero() {
		t.Error("IsZero is wrong")
	}
	if got := zero.String(); got != strings.Repeat("0", 64) {
		t.Errorf("zero hash String() = %q", got)
	}
}
