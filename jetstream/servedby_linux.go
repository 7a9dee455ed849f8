package jetstream

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// servedBy looks for another process serving the store directory dir: a
// NATS server started on its own (nats-server -js -sd DIR) takes no lock
// that runlog could see, so two servers could write one directory and
// one of them would lose its writes. What such a server leaves that can
// be seen, on Linux, through /proc:
//   - its command line names the directory as the store directory
//     (-sd DIR, --store_dir DIR, -sd=DIR, relative to its working
//     directory or absolute);
//   - it holds files under DIR/jetstream open (a stream's last block,
//     once it has written).
//
// A server started from a configuration file that has not written since
// it started shows neither: servedBy cannot see it. Processes of other
// users are seen only when running as root. It returns the pid and what
// gave the process away, or 0.
func servedBy(dir string) (int, string) {
	abs, err := canonicalDir(dir, "")
	if err != nil {
		return 0, ""
	}
	store := abs + string(filepath.Separator) + "jetstream" + string(filepath.Separator)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, ""
	}
	self := os.Getpid()
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == self {
			continue
		}
		proc := filepath.Join("/proc", ent.Name())
		if how := namesStoreDir(proc, abs); how != "" {
			return pid, how
		}
		fds, err := os.ReadDir(filepath.Join(proc, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(proc, "fd", fd.Name()))
			if err == nil && strings.HasPrefix(target, store) {
				return pid, "it holds " + target + " open"
			}
		}
	}
	return 0, ""
}

// namesStoreDir reports how the command line of process proc names dir as
// its store directory, or "".
func namesStoreDir(proc, dir string) string {
	raw, err := os.ReadFile(filepath.Join(proc, "cmdline"))
	if err != nil || len(raw) == 0 {
		return ""
	}
	args := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
	cwd, _ := os.Readlink(filepath.Join(proc, "cwd"))
	for i, a := range args {
		var val string
		for _, flag := range []string{"-sd", "--sd", "-store_dir", "--store_dir"} {
			switch {
			case a == flag && i+1 < len(args):
				val = args[i+1]
			case strings.HasPrefix(a, flag+"="):
				val = a[len(flag)+1:]
			}
		}
		if val == "" {
			continue
		}
		if got, err := canonicalDir(val, cwd); err == nil && got == dir {
			return fmt.Sprintf("its command line names it as the store directory (%s)", strings.Join(args, " "))
		}
	}
	return ""
}

// canonicalDir returns dir made absolute (against cwd if relative and cwd
// is set) with symbolic links resolved.
func canonicalDir(dir, cwd string) (string, error) {
	if !filepath.IsAbs(dir) && cwd != "" {
		dir = filepath.Join(cwd, dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}
