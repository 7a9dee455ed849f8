package logtest_test

import (
	"context"
	"fmt"
	"iter"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/lifecycle/logtest"
	"github.com/runlog/runlog/memlog"
)

func TestMemlog(t *testing.T) {
	if os.Getenv(brokenEnv) != "" {
		t.Skip("running a broken log")
	}
	logtest.Run(t, func(t *testing.T) lifecycle.Log {
		l := memlog.New(nil)
		t.Cleanup(func() { _ = l.Close() })
		return l
	})
}

// The suite must fail on logs that break the contract. Each broken log is
// run in a child test process (a failing suite cannot run in this one),
// and the child must report the cases that catch the defect.

const brokenEnv = "LOGTEST_BROKEN_LOG"

// broken wraps memlog with one defect.
type broken struct {
	*memlog.Log
	defect string
}

func (b *broken) key(id string) string {
	if b.defect == "colliding-ids" {
		return strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_").Replace(id)
	}
	return id
}

func (b *broken) last(ctx context.Context, id string) (events.Message, bool) {
	m, ok, err := b.Log.LastMessage(ctx, b.key(id))
	if err != nil {
		return events.Message{}, false
	}
	return m, ok
}

func (b *broken) Append(ctx context.Context, id string, msg events.Message, expect uint64) (uint64, error) {
	switch b.defect {
	case "no-sequence-check":
		m, _ := b.last(ctx, id)
		expect = m.Seq
	case "retry-is-conflict":
		if m, ok := b.last(ctx, id); ok && m.MsgID == msg.MsgID {
			return 0, fmt.Errorf("broken: %w", lifecycle.ErrWrongSequence)
		}
	}
	return b.Log.Append(ctx, b.key(id), msg, expect)
}

func (b *broken) Read(ctx context.Context, id string, after uint64) iter.Seq2[events.Message, error] {
	switch b.defect {
	case "inclusive-read":
		if after > 0 {
			after--
		}
	case "ignores-context":
		ctx = context.Background()
	}
	return b.Log.Read(ctx, b.key(id), after)
}

func TestBrokenLogChild(t *testing.T) {
	defect := os.Getenv(brokenEnv)
	if defect == "" {
		t.Skip("run by TestSuiteCatchesBrokenLogs")
	}
	logtest.Run(t, func(t *testing.T) lifecycle.Log { return &broken{Log: memlog.New(nil), defect: defect} })
}

func TestSuiteCatchesBrokenLogs(t *testing.T) {
	if os.Getenv(brokenEnv) != "" {
		t.Skip("child process")
	}
	if testing.Short() {
		t.Skip("runs the suite in child processes")
	}
	tests := []struct {
		defect string
		caught []string // cases that must fail
	}{
		{"no-sequence-check", []string{"Log/AppendWrongExpectStoresNothing", "Log/ConcurrentAppendsOneWinner", "Lifecycle/ConcurrentPrepareRunFail"}},
		{"inclusive-read", []string{"Log/ReadOrderedAndExclusive"}},
		{"retry-is-conflict", []string{"Log/ReappendSameMsgID"}},
		{"colliding-ids", []string{"Log/InstanceIDsNeverCollide", "Lifecycle/PrepareRunSpecialInstanceIDs"}},
		{"ignores-context", []string{"Log/ReadCancelledContext", "Log/ReadCancelledWhileRanging"}},
	}
	for _, tt := range tests {
		t.Run(tt.defect, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestBrokenLogChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), brokenEnv+"="+tt.defect)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a log with defect %q", tt.defect)
			}
			for _, c := range tt.caught {
				if !strings.Contains(string(out), "--- FAIL: TestBrokenLogChild/"+c) {
					t.Errorf("defect %q: case %s did not fail", tt.defect, c)
				}
			}
			if t.Failed() {
				t.Logf("child output:\n%s", lastLines(string(out), 60))
			}
		})
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
