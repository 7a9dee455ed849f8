package visibility

// SetFoldCache sets the number of folds the index keeps in memory (0:
// every instance changed again is folded from its history).
func SetFoldCache(ix *Index, n int) { ix.folds = newFoldCache(n) }
