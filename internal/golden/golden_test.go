package golden

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, want, got string
		contains        []string
	}{
		{"equal", "a\nb\n", "a\nb\n", nil},
		{"changed line", "a\nb\nc\n", "a\nB\nc\n", []string{"- b\n", "+ B\n", "  a\n", "  c\n"}},
		{"added line", "a\nc\n", "a\nb\nc\n", []string{"+ b\n"}},
		{"removed line", "a\nb\nc\n", "a\nc\n", []string{"- b\n"}},
		{"missing final newline", "a\nb\n", "a\nb", []string{"- b\n", "+ b (no newline at end)\n"}},
		{"single line", `{"a":1,"b":2}`, `{"a":1,"b":3}`, []string{"first difference at byte 11"}},
		{"elides far context", "1\n2\n3\n4\n5\n6\n7\n8\n9\nx\n", "1\n2\n3\n4\n5\n6\n7\n8\n9\ny\n", []string{"  ...\n", "  7\n", "- x\n+ y\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := Diff(tt.want, tt.got)
			if tt.contains == nil && d != "" {
				t.Fatalf("Diff of equal inputs = %q, want empty", d)
			}
			for _, c := range tt.contains {
				if !strings.Contains(d, c) {
					t.Errorf("Diff(%q, %q) =\n%s\nwant it to contain %q", tt.want, tt.got, d, c)
				}
			}
			if strings.Contains(d, "  1\n") && tt.name == "elides far context" {
				t.Errorf("Diff kept far context:\n%s", d)
			}
		})
	}
}

func TestCheckMatches(t *testing.T) {
	if Updating() {
		t.Skip("-update set")
	}
	path := filepath.Join(t.TempDir(), "x.golden")
	if err := os.WriteFile(path, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Check(t, path, []byte("hello\n"))
}

func TestFrozen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.json")
	if frozen(path) {
		t.Fatal("frozen without marker")
	}
	if err := os.WriteFile(filepath.Join(dir, FrozenMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !frozen(path) {
		t.Fatal("not frozen with marker")
	}
}
