package events_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/internal/golden"
)

// Wire-format fixtures live in testdata/v<N>/, one directory per schema
// version. Each fixture is a pair:
//
//	<name>.json     the message payload, byte for byte as Commit.Encode writes it
//	<name>.headers  the message headers, one "Key: value" line each, sorted
//
// TestWireGolden regenerates them from fixed inputs (run with -update to
// accept a change). TestWireFixturesDecode reads every fixture of every
// version directory and must pass for ever: data written by a released
// version must always decode.
//
// NEVER rewrite a released version directory. Once v1 ships, put a FROZEN
// file in testdata/v1/ (golden.Check then refuses to rewrite it); a format
// change then bumps events.SchemaVersion and adds testdata/v2/.

func fixtureCommits() map[string]events.Commit {
	m := map[string]events.Commit{
		"terminate_existing": terminateExisting(),
		"minimal":            minimal(),
	}
	for _, typ := range events.Types() {
		m[string(typ)] = single(typ)
	}
	return m
}

func versionDir(v int) string { return filepath.Join("testdata", "v"+strconv.Itoa(v)) }

func formatHeaders(h map[string][]string) []byte {
	var b bytes.Buffer
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}) {
		for _, v := range h[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	return b.Bytes()
}

func parseHeaders(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	h := map[string][]string{}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSuffix(line, "\n")
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("bad header line %q", line)
		}
		h[k] = append(h[k], v)
	}
	return h
}

func TestWireGolden(t *testing.T) {
	t.Parallel()
	dir := versionDir(events.SchemaVersion)
	for name, c := range fixtureCommits() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			msg, err := c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join(dir, name+".json"), msg.Data)
			golden.Check(t, filepath.Join(dir, name+".headers"), formatHeaders(msg.Header))
		})
	}
}

func TestWireFixturesDecode(t *testing.T) {
	t.Parallel()
	dirs, err := filepath.Glob(filepath.Join("testdata", "v*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no fixture directories under testdata/")
	}
	seen := 0
	for _, dir := range dirs {
		v, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(dir), "v"))
		if err != nil {
			t.Fatalf("bad version directory %s", dir)
		}
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range files {
			seen++
			t.Run(path, func(t *testing.T) {
				t.Parallel()
				data := golden.Read(t, path)
				headers := parseHeaders(t, golden.Read(t, strings.TrimSuffix(path, ".json")+".headers"))
				ids := headers[events.HeaderMsgID]
				if len(ids) != 1 {
					t.Fatalf("fixture has Msg-Id %q", ids)
				}
				msg := events.Message{Seq: 1, MsgID: ids[0], Header: headers, Data: data}
				rec, err := events.Decode(msg, "")
				if err != nil {
					t.Fatalf("a version %d fixture no longer decodes: %v", v, err)
				}
				if got := strings.Join(typeStrings(rec.Commit.Types()), ","); !slices.Equal(headers[events.HeaderEvents], []string{got}) {
					t.Errorf("Runlog-Events header %q, payload types %q", headers[events.HeaderEvents], got)
				}
				if v != events.SchemaVersion {
					return // older versions must decode; they re-encode as the current version
				}
				again, err := rec.Commit.Encode()
				if err != nil {
					t.Fatalf("re-encode: %v", err)
				}
				if !bytes.Equal(again.Data, data) {
					t.Errorf("re-encoded payload differs (- fixture, + re-encoded):\n%s", golden.Diff(string(data), string(again.Data)))
				}
				if got, want := formatHeaders(again.Header), formatHeaders(headers); !bytes.Equal(got, want) {
					t.Errorf("re-encoded headers differ:\n%s", golden.Diff(string(want), string(got)))
				}
			})
		}
	}
	if seen == 0 {
		t.Fatal("no fixtures found")
	}
}

func TestCurrentVersionHasFixtures(t *testing.T) {
	t.Parallel()
	for name := range fixtureCommits() {
		if _, err := os.Stat(filepath.Join(versionDir(events.SchemaVersion), name+".json")); err != nil {
			t.Errorf("missing fixture: %v (run go test ./events -run Golden -update)", err)
		}
	}
}
