// Package golden compares test output with golden files kept under
// testdata/, and rewrites them when the test binary runs with -update:
//
//	go test ./events/ -run Golden -update
//
// Golden files pin output that is a contract: the wire format
// (events/testdata/v<N>/), folded projections (projection/testdata/), the
// replay command's output. A mismatch fails the test with a line diff.
//
// Released wire-format version directories (events/testdata/v1/ once v1 has
// shipped, and every later one) must never be rewritten: data written by a
// released version must decode forever. Put a file named FROZEN in such a
// directory; Check then refuses to rewrite any file in it, even with
// -update, and a test that wants to change it must instead add a new
// version directory.
package golden

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/ with the current output (never in a FROZEN directory)")

// FrozenMarker is the name of the file that marks a directory as released:
// Check never rewrites a golden file in a directory holding it.
const FrozenMarker = "FROZEN"

// Updating reports whether the test binary runs with -update.
func Updating() bool { return *update }

// Check compares got with the content of the golden file at path. With
// -update it writes got to path instead (creating its directory), unless
// the directory is frozen. A missing file is a failure that says to run
// with -update.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if frozen(path) {
			t.Fatalf("golden: %s is in a released (%s) directory and is never rewritten: add a new version directory instead", path, FrozenMarker)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatalf("golden: %v", err)
		}
		old, err := os.ReadFile(path)
		if err == nil && bytes.Equal(old, got) {
			return
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatalf("golden: %v", err)
		}
		t.Logf("golden: updated %s", path)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden: %v (run the test with -update to create it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("golden: %s differs from the output (- golden, + got; run with -update to accept):\n%s", path, Diff(string(want), string(got)))
	}
}

// Read returns the content of the golden file at path, failing the test if
// it cannot be read.
func Read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden: %v", err)
	}
	return b
}

func frozen(path string) bool {
	_, err := os.Stat(filepath.Join(filepath.Dir(path), FrozenMarker))
	return err == nil
}

// Diff returns a line diff of want and got: lines only in want are
// prefixed with "- ", lines only in got with "+ ", and up to 3 common lines
// of context around each change with two spaces; longer common runs are
// elided as "  ...". When both sides are a single line (compact JSON), it
// shows where they first differ instead.
func Diff(want, got string) string {
	if want == got {
		return ""
	}
	a, b := splitLines(want), splitLines(got)
	if len(a) == 1 && len(b) == 1 {
		i := 0
		for i < len(a[0]) && i < len(b[0]) && a[0][i] == b[0][i] {
			i++
		}
		lo := max(0, i-40)
		return fmt.Sprintf("first difference at byte %d:\n- ...%s\n+ ...%s\n", i, clip(a[0][lo:], 120), clip(b[0][lo:], 120))
	}
	// Longest common subsequence of lines; golden files are small.
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var lines []diffLine
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			lines = append(lines, diffLine{' ', a[i]})
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			lines = append(lines, diffLine{'-', a[i]})
			i++
		default:
			lines = append(lines, diffLine{'+', b[j]})
			j++
		}
	}
	const context = 3
	var out strings.Builder
	elided := false
	for k, l := range lines {
		if l.op == ' ' && !nearChange(lines, k, context) {
			if !elided {
				out.WriteString("  ...\n")
				elided = true
			}
			continue
		}
		elided = false
		fmt.Fprintf(&out, "%c %s\n", l.op, l.text)
	}
	return out.String()
}

type diffLine struct {
	op   byte
	text string
}

func nearChange(lines []diffLine, k, context int) bool {
	for d := -context; d <= context; d++ {
		if k+d >= 0 && k+d < len(lines) && lines[k+d].op != ' ' {
			return true
		}
	}
	return false
}

func splitLines(s string) []string {
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, l := range lines {
		if strings.HasSuffix(l, "\n") {
			lines[i] = l[:len(l)-1]
		} else {
			lines[i] = l + " (no newline at end)"
		}
	}
	return lines
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
