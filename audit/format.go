package audit

import (
	"fmt"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/internal/render"
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

func quote(s string) string { return render.Quote(s) }

func ulidText(id ulid.ULID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

func timeText(t time.Time) string { return render.Time(t) }

func signalText(r workflow.SignalRequest) string {
	return render.Request(r.RequestedBy, r.Reason, r.RequestedAt, time.Time{})
}

func priorityText(p *uint8) string {
	if p == nil {
		return ""
	}
	return strconv.Itoa(int(*p))
}

func deadlineText(d *workflow.TaskDeadline, names render.Names) string {
	if d == nil {
		return ""
	}
	return fmt.Sprintf("task %s at %s (%dms)", render.Task(d.TaskID, names), timeText(d.Deadline), d.TimeoutMS)
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

func plural(n int, word string) string { return render.Count(n, word) }
