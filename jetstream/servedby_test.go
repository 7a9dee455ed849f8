//go:build linux

package jetstream

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

const serveDirEnv = "RUNLOG_TEST_SERVE_DIR"

// TestHelperServeDir is not a test: run as a child process by
// TestEmbeddedRefusesServedDir, it serves the directory of $RUNLOG_TEST_SERVE_DIR
// with a plain nats-server (no runlog lock), as `nats-server -js -sd DIR`
// would, optionally writing to a stream first, and waits to be killed.
func TestHelperServeDir(t *testing.T) {
	dir := os.Getenv(serveDirEnv)
	if dir == "" {
		t.Skip("helper process")
	}
	srv, err := server.NewServer(&server.Options{JetStream: true, StoreDir: dir, DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		fmt.Println("error not ready")
		os.Exit(1)
	}
	if rest := flag.Args(); len(rest) > 0 && rest[len(rest)-1] == "write" {
		nc, err := nats.Connect("", nats.InProcessServer(srv))
		if err == nil {
			js, _ := natsjs.New(nc)
			_, err = js.CreateStream(t.Context(), natsjs.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}})
			if err == nil {
				_, err = js.Publish(t.Context(), "other.x", []byte("x"))
			}
		}
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	time.Sleep(time.Hour)
}

// A directory served by a nats-server of another process is refused,
// whether its command line names the directory or it holds the store's
// files open; once it is gone the directory opens.
func TestEmbeddedRefusesServedDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"command line", []string{"-js", "-sd", "DIR"}, "command line names it"},
		{"open files", []string{"write"}, "holds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"-test.run=^TestHelperServeDir$", "--"}
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, "DIR", dir))
			}
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), serveDirEnv+"="+dir)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || line != "ready\n" {
				t.Fatalf("helper: %q, %v", line, err)
			}
			_, err = StartEmbedded(t.Context(), EmbeddedConfig{Dir: dir})
			if !errors.Is(err, ErrDirInUse) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("StartEmbedded on a served directory = %v, want ErrDirInUse naming pid %d and %q", err, cmd.Process.Pid, tc.want)
			}
			t.Logf("refused: %v", err)
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			e, err := StartEmbedded(t.Context(), EmbeddedConfig{Dir: dir})
			if err != nil {
				t.Fatalf("StartEmbedded once the other server is gone: %v", err)
			}
			_ = e.Close()
		})
	}
}
