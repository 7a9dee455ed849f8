// Package atomicfile writes a file whole or not at all: through a
// temporary file in the same directory, synced, given its mode, then
// renamed over the target, so that a reader never sees half of it and a
// crash leaves the old file or the new one.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
)

// Write writes file with write, mode perm. On error the target is
// unchanged and the temporary file removed.
func Write(file string, perm os.FileMode, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	// The mode first: the content is never readable under a wider one.
	if err := tmp.Chmod(perm); err != nil {
		return fail(err)
	}
	if err := write(tmp); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
