package main

import (
	"context"
	"fmt"
	"time"

	"github.com/runlog/runlog/internal/render"
	"github.com/runlog/runlog/lifecycle"
)

// runReindex rebuilds the runnable index (jetstream.Log.RunnableIndex)
// from the log: derived data, so the log is only read.
func runReindex(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("reindex takes no arguments")
	}
	st, err := e.open(ctx, true)
	if err != nil {
		return err
	}
	defer st.close()
	store, err := lifecycle.New(st.Log, lifecycle.Config{CacheSize: -1})
	if err != nil {
		return err
	}
	began := time.Now()
	x := st.Log.RunnableIndex()
	if err := x.Rebuild(ctx, store); err != nil {
		return fmt.Errorf("reindex: %w", err)
	}
	n := 0
	for _, err := range x.Entries(ctx) {
		if err != nil {
			return err
		}
		n++
	}
	fmt.Fprintf(e.stdout, "rebuilt the runnable index %s of %s from the log: %d runnable task%s, in %v\n",
		st.Log.RunnableBucket(), e.source(), n, render.S(n), time.Since(began).Round(time.Millisecond))
	return nil
}
