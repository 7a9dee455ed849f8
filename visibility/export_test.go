package visibility

// SetBatch sets the number of messages a catch-up folds before it
// commits, for tests that want batches to end inside histories.
func SetBatch(ix *Index, n int) { ix.batchMessages = n }

// SetFoldCache sets the number of folds the index keeps in memory (0:
// every instance changed again is folded from its history).
func SetFoldCache(ix *Index, n int) { ix.folds = newFoldCache(n) }
