//go:build !unix

package jetstream

// lockDir does nothing where advisory file locks are not available: never
// start two embedded servers on one store directory.
func lockDir(dir string) (func(), error) { return func() {}, nil }
