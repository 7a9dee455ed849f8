//go:build unix

package jetstream

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// dirLockFile is the file StartEmbedded locks in the store directory.
const dirLockFile = "runlog.lock"

// lockDir takes an exclusive advisory lock on dir for the life of the
// embedded server: nats-server does not lock its store directory, and two
// servers on one directory corrupt it. The lock goes away with the
// process, also when it is killed.
func lockDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("jetstream: store directory %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, dirLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("jetstream: lock store directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is used by another embedded server (in this or another process); "+
				"share one server instead (EmbeddedConfig.Listen, then Connect)", ErrDirInUse, dir)
		}
		return nil, fmt.Errorf("jetstream: lock store directory %s: %w", dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
