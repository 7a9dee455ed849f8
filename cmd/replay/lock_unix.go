//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockFile is the file replay locks in an embedded store directory.
const lockFile = "replay.lock"

// lockDir takes an exclusive advisory lock on dir, so that two replay
// processes never run two NATS servers on one store directory (the
// server itself does not lock it, and two servers on one directory
// corrupt it). The lock goes away with the process.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock store directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("the store in %s is in use by another process (an embedded store has one user at a time): "+
				"wait for it to finish; to share a store, run one server on it and connect every user to that server with --server "+
				"(never start a second server on a directory in use: two servers on one directory lose writes)", dir)
		}
		return nil, fmt.Errorf("lock store directory %s: %w", dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
