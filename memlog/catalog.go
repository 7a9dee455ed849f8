package memlog

import (
	"context"

	"github.com/runlog/runlog/lifecycle"
)

// Catalog returns the log's definition catalog (lifecycle.Config.Catalog):
// a second in-memory Log, with the same clock, that holds one history
// per registered definition. Every call returns the same one.
func (l *Log) Catalog(context.Context) (lifecycle.Log, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.catalog == nil {
		l.catalog = New(l.now)
	}
	return l.catalog, nil
}
