// Package render is the one place where runlog's readers put domain
// values into words: positions, signal requests, times, hashes, quoted
// text and counts, for the timelines of audit and the text outputs of
// replay alike (JSON outputs carry the values themselves).
package render

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/runlog/runlog/workflow"
)

// MaxText is how many runes Quote keeps.
const MaxText = 80

// Short returns the first 12 hex characters of a hash or task id.
func Short(h workflow.Hash32) string { return h.String()[:12] }

// Time returns t in RFC 3339 with nanoseconds, UTC; "" for the zero time.
func Time(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Quote returns s quoted on one line, cut to MaxText runes.
func Quote(s string) string {
	if utf8.RuneCountInString(s) > MaxText {
		rs := []rune(s)
		return strconv.Quote(string(rs[:MaxText])) + "…"
	}
	return strconv.Quote(s)
}

// Names gives the name of a task by its id, when known (nil: none).
type Names func(workflow.TaskID) (string, bool)

// Task shows a task: its name when names knows it, else its id cut to 12
// hex characters. A name that is not a plain word is quoted.
func Task(id workflow.TaskID, names Names) string {
	if names != nil {
		if n, ok := names(id); ok {
			return Name(n)
		}
	}
	return Short(id)
}

// Name shows a name (a task's, a workflow's): as it is when it is a plain
// word, else quoted.
func Name(s string) string {
	if plainName(s) {
		return s
	}
	return Quote(s)
}

// plainName reports whether a name reads unquoted: letters, digits and
// - _ . : / only.
func plainName(s string) bool {
	if s == "" || utf8.RuneCountInString(s) > MaxText {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r == '.' || r == ':' || r == '/' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return false
		}
	}
	return true
}

// PositionNamed shows a position on one line, such as "AtTask(3f2a1b4c5d6e)"
// or "AtSignal(node 3f2a1b4c5d6e, \"approval\", next ab12cd34ef56)".
//
// It shows the tasks by the names names knows ("AtTask(reserve-stock)"),
// by id otherwise; names may be nil.
func PositionNamed(p workflow.Position, names Names) string {
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	switch p.Kind {
	case workflow.NotStarted:
		return "NotStarted"
	case workflow.AtTask:
		return fmt.Sprintf("AtTask(%s)", Task(p.TaskID, names))
	}
	add("node %s", Short(p.NodeID))
	if p.SignalName != "" {
		add("%s", Quote(p.SignalName))
	}
	if p.Kind == workflow.InLoop {
		add("iteration %d", p.Iteration)
	}
	if len(p.Branches) > 0 {
		add("%d branches done", len(p.Branches))
	}
	if !p.EnteredAt.IsZero() {
		add("entered %s", Time(p.EnteredAt))
	}
	if p.WakeAt != nil {
		add("wake %s", Time(*p.WakeAt))
	}
	if p.NextTaskID != nil {
		add("next %s", Task(*p.NextTaskID, names))
	}
	if !p.TaskID.IsZero() {
		add("task %s", Task(p.TaskID, names))
	}
	return fmt.Sprintf("%s(%s)", p.Kind, strings.Join(parts, ", "))
}

// Request describes a cancel or pause request: `requested by support:
// "customer asked" (at 2026-...)`, the time left out when it is zero or
// equals known (the commit's own time).
func Request(by, reason string, at, known time.Time) string {
	s := "requested"
	if by != "" {
		s += " by " + by
	}
	if reason != "" {
		s += ": " + Quote(reason)
	}
	if !at.IsZero() && !at.Equal(known) {
		s += " (at " + Time(at) + ")"
	}
	return s
}

// Count returns "1 commit", "2 commits".
func Count(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// S is the plural suffix for n: "" for 1, else "s".
func S(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
