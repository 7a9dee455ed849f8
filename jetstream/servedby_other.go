//go:build !linux

package jetstream

// servedBy cannot see other processes without Linux's /proc: never serve
// a store directory with two servers.
func servedBy(dir string) (int, string) { return 0, "" }
