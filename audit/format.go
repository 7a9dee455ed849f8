package audit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/workflow"
)

// maxText is the longest payload or text shown as is.
const maxText = 80

// payloadText shows a byte string: as text when it is printable UTF-8 of
// at most 80 bytes, else as "<N bytes sha256:abcdef012345…>". An empty
// payload is "<empty>".
func payloadText(b []byte) string {
	if len(b) == 0 {
		return "<empty>"
	}
	if len(b) <= maxText && printable(string(b)) {
		return string(b)
	}
	return fmt.Sprintf("<%d bytes sha256:%s…>", len(b), short(workflow.Sha256(b)))
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// quote returns s quoted on one line, cut to 80 runes.
func quote(s string) string {
	if utf8.RuneCountInString(s) > maxText {
		rs := []rune(s)
		return strconv.Quote(string(rs[:maxText])) + "…"
	}
	return strconv.Quote(s)
}

func optHash(h *workflow.Hash32) string {
	if h == nil {
		return ""
	}
	return short(*h)
}

func ulidText(id ulid.ULID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// positionText shows a position on one line, such as
// "AtTask(3f2a1b4c5d6e)" or "AtSignal(node 3f2a1b4c5d6e, \"approval\", next ab12cd34ef56)".
func positionText(p workflow.Position) string {
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	switch p.Kind {
	case workflow.NotStarted:
		return "NotStarted"
	case workflow.AtTask:
		return fmt.Sprintf("AtTask(%s)", short(p.TaskID))
	}
	add("node %s", short(p.NodeID))
	if p.SignalName != "" {
		add("%s", quote(p.SignalName))
	}
	if p.Kind == workflow.InLoop {
		add("iteration %d", p.Iteration)
	}
	if len(p.Branches) > 0 {
		add("%d branches done", len(p.Branches))
	}
	if !p.EnteredAt.IsZero() {
		add("entered %s", timeText(p.EnteredAt))
	}
	if p.WakeAt != nil {
		add("wake %s", timeText(*p.WakeAt))
	}
	if p.NextTaskID != nil {
		add("next %s", short(*p.NextTaskID))
	}
	if !p.TaskID.IsZero() {
		add("task %s", short(p.TaskID))
	}
	return fmt.Sprintf("%s(%s)", p.Kind, strings.Join(parts, ", "))
}

func signalText(r workflow.SignalRequest) string {
	s := "requested"
	if r.RequestedBy != "" {
		s += " by " + r.RequestedBy
	}
	if r.Reason != "" {
		s += ": " + quote(r.Reason)
	}
	if !r.RequestedAt.IsZero() {
		s += " at " + timeText(r.RequestedAt)
	}
	return s
}

func priorityText(p *uint8) string {
	if p == nil {
		return ""
	}
	return strconv.Itoa(int(*p))
}

func deadlineText(d *workflow.TaskDeadline) string {
	if d == nil {
		return ""
	}
	return fmt.Sprintf("task %s at %s (%dms)", short(d.TaskID), timeText(d.Deadline), d.TimeoutMS)
}

func retryText(r workflow.TaskRetryState) string {
	s := fmt.Sprintf("attempt %d/%d, backoff %s x%g", r.Attempts, r.Policy.MaxRetries, r.Policy.InitialDelay, r.Policy.BackoffMultiplier)
	if r.Policy.MaxDelay > 0 {
		s += fmt.Sprintf(" max %s", r.Policy.MaxDelay)
	}
	if !r.NextRetryAt.IsZero() {
		s += ", next " + timeText(r.NextRetryAt)
	}
	if r.LastError != "" {
		s += ", last error " + quote(r.LastError)
	}
	if r.LastFailedWorker != "" {
		s += " on " + r.LastFailedWorker
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
