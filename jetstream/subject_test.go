package jetstream

import (
	"errors"
	"strings"
	"testing"
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

func TestInstanceFromSubject(t *testing.T) {
	s := &Store{cfg: Config{Subject: "runlog.wf"}}
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
