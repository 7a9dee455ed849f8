package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/runlog/runlog/internal/atomicfile"
)

// ServerFileName is the file a listening embedded server writes in its
// store directory ([EmbeddedConfig.Listen]): where it listens and the
// credentials it requires, so that [OpenEmbedded] in another process
// finds the running server and connects to it instead of failing on the
// directory's lock. The file is mode 0600 in a directory of mode 0700:
// whoever can read it could open the store's files anyway.
const ServerFileName = "runlog-server.json"

// ServerFile is the content of [ServerFileName].
type ServerFile struct {
	PID      int       `json:"pid"` // the process serving the directory
	URL      string    `json:"url"` // its client URL
	User     string    `json:"user,omitempty"`
	Password string    `json:"password,omitempty"`
	Started  time.Time `json:"started"`
}

// ReadServerFile reads the server file of store directory dir. No file
// gives an error matching [os.ErrNotExist]. The file says where a server
// was listening; only the directory's lock says whether it still runs
// ([OpenEmbedded] reads the file only when the lock is held).
func ReadServerFile(dir string) (ServerFile, error) {
	var f ServerFile
	b, err := os.ReadFile(filepath.Join(dir, ServerFileName))
	if err != nil {
		return f, fmt.Errorf("jetstream: server file of %s: %w", dir, err)
	}
	if err := json.Unmarshal(b, &f); err != nil || f.URL == "" {
		return f, fmt.Errorf("jetstream: server file %s is not one a runlog server wrote (remove it if no server runs on %s): %v", filepath.Join(dir, ServerFileName), dir, err)
	}
	return f, nil
}

// writeServerFile writes the server file of a listening embedded server,
// mode 0600, atomically (a reader never sees half of it).
func writeServerFile(dir string, f ServerFile) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, ServerFileName), 0o600, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

// removeServerFile removes the server file if it is this process's.
func removeServerFile(dir string) {
	if f, err := ReadServerFile(dir); err == nil && f.PID == os.Getpid() {
		os.Remove(filepath.Join(dir, ServerFileName))
	}
}

// openServed opens the store on the server that serves dir, as its
// server file tells, for an [OpenEmbedded] refused by the directory's
// lock. It returns errIn (the lock's refusal) when dir has no server
// file: a process holds the directory without listening.
func openServed(ctx context.Context, dir string, cfg Config, errIn error) (*Log, error) {
	f, err := ReadServerFile(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errIn
	}
	if err != nil {
		return nil, errors.Join(errIn, err)
	}
	s, err := Connect(ctx, f.URL, ConnectConfig{Name: "runlog", User: f.User, Password: f.Password}, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is served by process %d at %s, but connecting to it failed: %w", ErrDirInUse, dir, f.PID, f.URL, err)
	}
	s.servedBy = f
	return s, nil
}

// ServedBy reports, for a store [OpenEmbedded] opened on the server
// another process runs on the directory, that server's file; ok is false
// for a store that runs its own server or was opened otherwise.
func (s *Log) ServedBy() (f ServerFile, ok bool) { return s.servedBy, s.servedBy.URL != "" }
