package visibility

// SetBatch sets the number of messages a catch-up folds before it
// commits, for tests that want batches to end inside histories.
func SetBatch(ix *Index, n int) { ix.batchMessages = n }
