// Package logcount is a slog handler for fault tests: it counts the
// store's debug records (conflict retries, recovered appends) by message
// and passes the others on, so a test can report how often each recovery
// path ran.
package logcount

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// Handler counts debug records by message and passes the others to next.
// It is safe for concurrent use; handlers derived with WithAttrs and
// WithGroup share its counts.
type Handler struct {
	next slog.Handler
	mu   *sync.Mutex
	n    map[string]int
}

// New returns a counting handler in front of next.
func New(next slog.Handler) *Handler {
	return &Handler{next: next, mu: &sync.Mutex{}, n: make(map[string]int)}
}

// Enabled is true for debug records (counted) and whatever next enables.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool {
	return l <= slog.LevelDebug || h.next.Enabled(ctx, l)
}

// Handle counts a debug record or passes the record on.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level <= slog.LevelDebug {
		h.mu.Lock()
		h.n[r.Message]++
		h.mu.Unlock()
		return nil
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(as), mu: h.mu, n: h.n}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), mu: h.mu, n: h.n}
}

// Count returns how many debug records had the message msg.
func (h *Handler) Count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[msg]
}

// String summarises the recovery paths of the JetStream log and the store.
func (h *Handler) String() string {
	return fmt.Sprintf("%d append retries after a transient error, %d appends found already landed by the probe, %d duplicate acks, %d conflicts decided again",
		h.Count("jetstream: append failed, retrying"),
		h.Count("jetstream: append had already landed")+h.Count("jetstream: append had landed despite the error"),
		h.Count("jetstream: append acknowledged as a duplicate"),
		h.Count("runlog: conflict, deciding again"))
}
