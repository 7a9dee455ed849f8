package lin

import (
	"context"
	"iter"
	"sync"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
)

// tracingLog wraps a log and stamps, with the history's clock, when each
// Read is ranged over and each Append runs, by the actor of the operation
// that made the call (every operation of the workload runs with its own
// actor, which the store passes down in ctx).
//
// The stamps narrow each operation's interval to the log call its outcome
// was decided by: the store decides on a projection it read and appends
// the decision expecting the last sequence it read, so an operation that
// wrote took effect while its successful Append ran, and one that wrote
// nothing was decided on the state its last Read saw (docs/STORE.md: a
// decision that writes nothing is always confirmed by a read in the same
// call). See narrow.
type tracingLog struct {
	inner lifecycle.Log
	rec   *recorder

	mu    sync.Mutex
	spans map[string][]span
}

// span is one log call of an operation.
type span struct {
	append     bool   // an Append; else a Read
	msgID      string // Append: the commit id
	start, end int64
}

func newTracingLog(inner lifecycle.Log, rec *recorder) *tracingLog {
	return &tracingLog{inner: inner, rec: rec, spans: map[string][]span{}}
}

func (l *tracingLog) add(ctx context.Context, s span) {
	a := lifecycle.ActorFrom(ctx)
	if a == "" {
		return
	}
	l.mu.Lock()
	l.spans[a] = append(l.spans[a], s)
	l.mu.Unlock()
}

func (l *tracingLog) Read(ctx context.Context, instance string, after uint64) iter.Seq2[events.Message, error] {
	inner := l.inner.Read(ctx, instance, after)
	return func(yield func(events.Message, error) bool) {
		s := span{start: l.rec.now()}
		defer func() {
			s.end = l.rec.now()
			l.add(ctx, s)
		}()
		inner(yield)
	}
}

func (l *tracingLog) Append(ctx context.Context, instance string, msg events.Message, expect uint64) (uint64, error) {
	s := span{append: true, msgID: msg.MsgID, start: l.rec.now()}
	seq, err := l.inner.Append(ctx, instance, msg, expect)
	s.end = l.rec.now()
	l.add(ctx, s)
	return seq, err
}

// spansOf returns the log calls made by actor, in the order they started.
func (l *tracingLog) spansOf(actor string) []span {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.spans[actor]
}
