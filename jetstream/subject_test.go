package jetstream

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// tokenSafe reports whether tok is one literal subject token of the
// characters EncodeID produces.
func tokenSafe(tok string) bool {
	if tok == "" {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if !kept(tok[i]) && tok[i] != '=' {
			return false
		}
	}
	return true
}

func TestEncodeID(t *testing.T) {
	long := strings.Repeat("x", 256)
	longDots := strings.Repeat(".", 256)
	tests := []struct{ id, want string }{
		{"order-42", "order-42"},
		{"A_z-09", "A_z-09"},
		{".", "=2E"},
		{"*", "=2A"},
		{">", "=3E"},
		{" ", "=20"},
		{"a.b", "a=2Eb"},
		{"a*b", "a=2Ab"},
		{"a>b", "a=3Eb"},
		{"a b", "a=20b"},
		{"=", "=3D"},
		{"a=2Eb", "a=3D2Eb"},
		{"é", "=C3=A9"},
		{"日本", "=E6=97=A5=E6=9C=AC"},
		{"\x00\xff", "=00=FF"},
		{"tab\there", "tab=09here"},
		{"/", "=2F"},
		{long, long},
		{longDots, strings.Repeat("=2E", 256)},
	}
	for _, tt := range tests {
		got := EncodeID(tt.id)
		if got != tt.want {
			t.Errorf("EncodeID(%q) = %q, want %q", tt.id, got, tt.want)
		}
		if !tokenSafe(got) {
			t.Errorf("EncodeID(%q) = %q is not a safe subject token", tt.id, got)
		}
		back, err := DecodeID(got)
		if err != nil || back != tt.id {
			t.Errorf("DecodeID(%q) = %q, %v; want %q", got, back, err, tt.id)
		}
	}
}

func TestEncodeIDInjective(t *testing.T) {
	ids := []string{
		"a.b", "a*b", "a>b", "a b", "a=b", "a=2Eb", "a=2Ab", "a=3Eb", "a=20b", "a=3Db",
		"ab", "a_b", "a-b", "a..b", "a.b.", ".a.b", "A.B", "a.B", "=", "==", "=3D", "=2E",
		".", "..", "*", ">", " ", "  ", "é", "e\u0301", "日本", "日本.", "\x00", "\x00\x00",
		strings.Repeat("a", 256), strings.Repeat("a", 255) + ".",
	}
	seen := make(map[string]string, len(ids))
	for _, id := range ids {
		tok := EncodeID(id)
		if other, ok := seen[tok]; ok {
			t.Errorf("EncodeID(%q) = EncodeID(%q) = %q", id, other, tok)
		}
		seen[tok] = id
	}
}

func TestDecodeIDRefusesNonCanonical(t *testing.T) {
	for _, tok := range []string{
		"",        // empty
		"a.b",     // '.' is never in a token
		"a*",      // wildcard
		">",       // wildcard
		"a b",     // space
		"é",       // raw non-ASCII
		"=",       // truncated escape
		"=2",      // truncated escape
		"a=",      // truncated escape
		"=2e",     // lower-case hex
		"=zz",     // not hex
		"=G0",     // not hex
		"=41",     // 'A' is kept, never escaped
		"=5F",     // '_' is kept
		"=2D",     // '-' is kept
		"x=30",    // '0' is kept
		"=3d",     // lower-case escape of '='
		"a=2E=2g", // second escape bad
	} {
		got, err := DecodeID(tok)
		if !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("DecodeID(%q) = %q, %v; want an error matching ErrInvalidSubject", tok, got, err)
		}
	}
}

// layoutStore returns a store with k partitions on prefix, with no
// connection: enough for the subject functions.
func layoutStore(prefix string, k int) *Log {
	s := &Log{cfg: Config{Stream: "RUNLOG", Subject: prefix}}
	for p := range k {
		s.all = append(s.all, &partition{index: p, name: PartitionStream("RUNLOG", p, k), prefix: partitionPrefix(prefix, p, k)})
	}
	s.parts = s.all
	return s
}

func TestInstanceFromSubject(t *testing.T) {
	s := layoutStore("runlog.wf", 1)
	for _, id := range []string{"a.b", "x", "日本", "=", "a>b"} {
		subj := s.SubjectFor(id)
		if strings.Count(subj, ".") != 2 {
			t.Errorf("SubjectFor(%q) = %q: want exactly one token after the prefix", id, subj)
		}
		got, err := s.InstanceFromSubject(subj)
		if err != nil || got != id {
			t.Errorf("InstanceFromSubject(%q) = %q, %v; want %q", subj, got, err, id)
		}
	}
	for _, subj := range []string{"other.x", "runlog.wf", "runlog.wf.", "runlog.wf.a.b", "runlog.wfx.a", "runlog.wf.=2e"} {
		if got, err := s.InstanceFromSubject(subj); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("InstanceFromSubject(%q) = %q, %v; want ErrInvalidSubject", subj, got, err)
		}
	}
}

func TestInstanceFromSubjectPartitioned(t *testing.T) {
	s := layoutStore("runlog.wf", 4)
	seen := map[int]bool{}
	for _, id := range []string{"a.b", "x", "日本", "=", "a>b", "order-1", "order-2", "order-3", "order-4"} {
		p := PartitionOf(id, 4)
		seen[p] = true
		subj := s.SubjectFor(id)
		if want := fmt.Sprintf("runlog.wf.%d.%s", p, EncodeID(id)); subj != want {
			t.Errorf("SubjectFor(%q) = %q, want %q", id, subj, want)
		}
		got, err := s.InstanceFromSubject(subj)
		if err != nil || got != id {
			t.Errorf("InstanceFromSubject(%q) = %q, %v; want %q", subj, got, err, id)
		}
		// The same token in another partition is not this instance's.
		other := fmt.Sprintf("runlog.wf.%d.%s", (p+1)%4, EncodeID(id))
		if got, err := s.InstanceFromSubject(other); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("InstanceFromSubject(%q) = %q, %v; want ErrInvalidSubject (wrong partition)", other, got, err)
		}
	}
	if len(seen) < 3 {
		t.Errorf("9 ids fell in %d of 4 partitions", len(seen))
	}
	for _, subj := range []string{"runlog.wf.x", "runlog.wf.4.x", "runlog.wf.01.x", "runlog.wf.-1.x", "runlog.wf.0", "runlog.wf.0.a.b", "runlog.wf.x.y"} {
		if got, err := s.InstanceFromSubject(subj); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("InstanceFromSubject(%q) = %q, %v; want ErrInvalidSubject", subj, got, err)
		}
	}
}

// TestPartitionOfIsTheServersMapping holds PartitionOf to nats-server's
// own {{partition(K,1)}} subject mapping over the instance's token (one
// definition of the placement, checked against the other), and pins a
// value: the function is part of the stored layout, so a change would
// strand every partitioned store's instances in the wrong partition.
func TestPartitionOfIsTheServersMapping(t *testing.T) {
	if got := PartitionOf("order-1", 4); got != 0x2b7fcd6d%4 { // FNV-1a 32 of "order-1"
		t.Errorf("PartitionOf(order-1, 4) = %d, want %d", got, 0x2b7fcd6d%4)
	}
	if PartitionOf("x", 1) != 0 || PartitionOf("x", 0) != 0 {
		t.Error("PartitionOf with k <= 1 is not 0")
	}
	for _, k := range []int{2, 3, 4, 16, 255} {
		tr, err := server.NewSubjectTransform("runlog.wf.*", fmt.Sprintf("runlog.wf.{{partition(%d,1)}}.{{wildcard(1)}}", k))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 200 {
			id := fmt.Sprintf("inst-%d.é/%d", i, i*7919)
			tok := EncodeID(id)
			got, err := tr.Match("runlog.wf." + tok)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("runlog.wf.%d.%s", PartitionOf(id, k), tok); got != want {
				t.Fatalf("k=%d id %q: the server maps to %q, PartitionOf gives %q", k, id, got, want)
			}
		}
	}
}

func FuzzEncodeID(f *testing.F) {
	for _, seed := range []string{
		"", "a", "a.b", "*", ">", " ", "=", "==3D", "a=2Eb", "é", "日本", "\x00", "\xff\xfe",
		"=2E", "=2e", "=41", strings.Repeat(".", 256), "order-42", "tab\t", "emoji 🙂",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		tok := EncodeID(id)
		if id == "" {
			if tok != "" {
				t.Fatalf("EncodeID(\"\") = %q", tok)
			}
		} else {
			if !tokenSafe(tok) {
				t.Fatalf("EncodeID(%q) = %q is not a safe subject token", id, tok)
			}
			if len(tok) > 3*len(id) {
				t.Fatalf("EncodeID(%q) = %q is more than three times longer", id, tok)
			}
			back, err := DecodeID(tok)
			if err != nil || back != id {
				t.Fatalf("DecodeID(EncodeID(%q)) = %q, %v", id, back, err)
			}
		}
		// Read as a token: whatever DecodeID accepts is canonical, so the
		// id has exactly one token.
		if d, err := DecodeID(id); err == nil {
			if again := EncodeID(d); again != id {
				t.Fatalf("DecodeID(%q) = %q, which encodes to %q: not canonical", id, d, again)
			}
		} else if !errors.Is(err, ErrInvalidSubject) {
			t.Fatalf("DecodeID(%q): error %v does not match ErrInvalidSubject", id, err)
		}
	})
}
