package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsServe is the natsserve command of the scripts: a plain nats-server
// serving a store directory, as `nats-server -js -sd DIR` does (no lock
// of runlog's), until it is killed.
func natsServe() {
	args := os.Args[1:]
	if len(args) != 3 || args[0] != "-js" || args[1] != "-sd" {
		fmt.Fprintln(os.Stderr, "usage: natsserve -js -sd DIR")
		os.Exit(2)
	}
	srv, err := server.NewServer(&server.Options{JetStream: true, StoreDir: args[2], DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		fmt.Fprintln(os.Stderr, "not ready")
		os.Exit(1)
	}
	fmt.Println("serving", args[2])
	select {}
}

// A cut block file: every command warns that the store was damaged,
// verify reports the missing messages, and a digest made before names the
// instances that lost history.
func TestDamagedStore(t *testing.T) {
	t.Parallel()
	dir := seeded(t)
	key := filepath.Join(t.TempDir(), "key.nk")
	pub := strings.TrimSpace(mustRun(t, "key", "new", key).stdout)
	digest := filepath.Join(t.TempDir(), "digest.json")
	mustRun(t, "digest", "--dir", dir, "--key", key, "-o", digest)
	if r := mustRun(t, "verify", "--dir", dir); strings.Contains(r.stderr, "WARNING") {
		t.Fatalf("a whole store warns: %s", r.stderr)
	}

	blk := filepath.Join(dir, "jetstream", "$G", "streams", "RUNLOG", "msgs", "1.blk")
	fi, err := os.Stat(blk)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(blk, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	r := replay(t, "list", "--dir", dir)
	if r.code != exitOK || !strings.Contains(r.stderr, "WARNING: the store in") || !strings.Contains(r.stderr, "are missing") {
		t.Fatalf("list on a damaged store: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	r = replay(t, "verify", "--dir", dir)
	if r.code != exitProblems || !strings.Contains(r.stdout, "stream: the stream holds") {
		t.Fatalf("verify alone: exit %d\n%s", r.code, r.stdout)
	}
	r = replay(t, "verify", "--dir", dir, "--digest", digest, "--key", pub)
	if r.code != exitProblems || !strings.Contains(r.stdout, "the instance's history is gone") && !strings.Contains(r.stdout, "removed") {
		t.Fatalf("verify with the digest: exit %d\n%s", r.code, r.stdout)
	}
	t.Logf("verify --digest:\n%s", r.stdout)
}
