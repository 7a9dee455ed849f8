package perms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// The publish permissions runlog needs on the default stream ("RUNLOG",
// subjects "runlog.wf.>"), found by experiment (TestMinimalPermissions):
// each entry is needed by some operation, and together they suffice.
// Both users also need to subscribe to "_INBOX.>" for replies.
var (
	// writerPublish lets lifecycle.Store write and read, on a stream that
	// exists already (add "$JS.API.STREAM.CREATE.RUNLOG" to let the writer
	// create it):
	//   - runlog.wf.>                   the appends themselves
	//   - $JS.API.STREAM.INFO.RUNLOG    jetstream.Open looks the stream up
	//   - $JS.API.DIRECT.GET.RUNLOG     reads: batched direct gets
	//   - $JS.API.DIRECT.GET.RUNLOG.>   catch-up: the last message of the
	//                                   instance first (direct get by subject)
	//   - $JS.API.STREAM.MSG.GET.RUNLOG after a conflict, Append reads the
	//                                   subject's last message from the
	//                                   leader (did an earlier try land?)
	writerPublish = []string{
		"runlog.wf.>",
		"$JS.API.STREAM.INFO.RUNLOG",
		"$JS.API.DIRECT.GET.RUNLOG",
		"$JS.API.DIRECT.GET.RUNLOG.>",
		"$JS.API.STREAM.MSG.GET.RUNLOG",
	}
	// readerPublish lets jetstream.Log read (Read, Instances, Scan,
	// LastMessage, Follow; lifecycle.Store.Load; audit.Verify) and
	// nothing else: no publish on runlog.wf.>.
	//   - $JS.API.STREAM.INFO.RUNLOG         Open (NoCreate), Instances, InstanceCounts,
	//                                        Scan (the stream's last sequence)
	//   - $JS.API.DIRECT.GET.RUNLOG          Read: batched direct gets
	//   - $JS.API.DIRECT.GET.RUNLOG.>        LastMessage: direct get by subject
	//   - $JS.API.CONSUMER.CREATE.RUNLOG.>   Follow, Scan: their ordered consumers
	//   - $JS.API.CONSUMER.MSG.NEXT.RUNLOG.> Follow, Scan: pulls
	//   - $JS.API.CONSUMER.DELETE.RUNLOG.>   Follow, Scan: delete their consumer at the end
	readerPublish = []string{
		"$JS.API.STREAM.INFO.RUNLOG",
		"$JS.API.DIRECT.GET.RUNLOG",
		"$JS.API.DIRECT.GET.RUNLOG.>",
		"$JS.API.CONSUMER.CREATE.RUNLOG.>",
		"$JS.API.CONSUMER.MSG.NEXT.RUNLOG.>",
		"$JS.API.CONSUMER.DELETE.RUNLOG.>",
	}
	inbox = []string{"_INBOX.>"}
)

const (
	adminUser, adminPass   = "admin", "admin-secret"
	writerUser, writerPass = "writer", "writer-secret"
	readerUser, readerPass = "reader", "reader-secret"
)

var (
	discard = slog.New(slog.DiscardHandler)
	defHash = workflow.DefinitionHashOf("perms workflow v1")
	first   = workflow.TaskHint{ID: workflow.NewTaskID("first")}
)

// startServer starts a nats-server with JetStream on a loopback port with
// three users: admin (no restriction), writer and reader (publish limited
// to the given subjects, subscribe to _INBOX.> only). It returns the
// client URL.
func startServer(t *testing.T, writerPub, readerPub []string) string {
	t.Helper()
	limited := func(name, pass string, pub []string) *server.User {
		return &server.User{Username: name, Password: pass, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: pub},
			Subscribe: &server.SubjectPermission{Allow: inbox},
		}}
	}
	s, err := server.NewServer(&server.Options{
		JetStream: true,
		StoreDir:  t.TempDir(),
		Host:      "127.0.0.1",
		Port:      -1,
		NoLog:     true,
		NoSigs:    true,
		Users: []*server.User{
			{Username: adminUser, Password: adminPass},
			limited(writerUser, writerPass, writerPub),
			limited(readerUser, readerPass, readerPub),
		},
	})
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s.ClientURL()
}

// conn is a store on a connection of its own, kept for the tests that
// look at the connection's permission errors.
type conn struct {
	*jetstream.Log
	nc *nats.Conn
}

func connect(t *testing.T, ctx context.Context, url, user, pass string, cfg jetstream.Config) (*conn, error) {
	t.Helper()
	cfg.Logger = discard
	nc, err := nats.Connect(url, nats.UserInfo(user, pass), nats.Name("runlog-perms-test"))
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	s, err := jetstream.Open(ctx, nc, cfg)
	if err != nil {
		return nil, err
	}
	return &conn{Log: s, nc: nc}, nil
}

// createStream has the admin create the stream (with runlog's own
// configuration: jetstream.Connect creates it when missing).
func createStream(t *testing.T, url string) *conn { return createPartitioned(t, url, 0) }

// createPartitioned is createStream of a store of k partitions.
func createPartitioned(t *testing.T, url string, k int) *conn {
	t.Helper()
	admin, err := connect(t, t.Context(), url, adminUser, adminPass, jetstream.Config{Partitions: k})
	if err != nil {
		t.Fatalf("admin: connect: %v", err)
	}
	return admin
}

// step bounds one operation of a scenario, so that a missing permission
// (the server drops the request; the client waits for a reply) ends it
// instead of hanging. Not an assertion on time: success never depends on
// it.
const step = 5 * time.Second

// writerWork runs the lifecycle operations as the writer, against the
// stream the admin created, and returns the first failure.
func writerWork(t *testing.T, url string, limit time.Duration) (violation, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	var log *conn
	defer func() {
		if log != nil {
			violation = log.nc.LastError()
		}
	}()
	log, err = connect(t, ctx, url, writerUser, writerPass, jetstream.Config{})
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	a, err := lifecycle.New(log, lifecycle.Config{Logger: discard})
	if err != nil {
		return nil, err
	}
	b, err := lifecycle.New(log, lifecycle.Config{Logger: discard})
	if err != nil {
		return nil, err
	}
	id := "order.42 ünïcode"
	p, err := a.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defHash, Input: []byte("in"), FirstTask: first})
	if err != nil {
		return nil, fmt.Errorf("PrepareRun: %w", err)
	}
	// Store b has not seen the id: it tries to create it, conflicts, and
	// reads what it missed (the conflict path of Append).
	if _, err := b.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defHash, FirstTask: first}); !errors.Is(err, lifecycle.ErrAlreadyExists) {
		return nil, fmt.Errorf("PrepareRun from a second store: %v, want ErrAlreadyExists", err)
	}
	snap := p.Snapshot.Clone()
	snap.MarkTaskCompleted(first.ID, []byte("out"), snap.CreatedAt)
	snap.UpdatePosition(workflow.AtTaskPosition(workflow.NewTaskID("second")), snap.CreatedAt)
	if _, err := a.SaveSnapshot(ctx, snap, p.Revision); err != nil {
		return nil, fmt.Errorf("SaveSnapshot: %w", err)
	}
	if _, err := b.SaveTaskResult(ctx, id, p.Revision, workflow.NewTaskID("branch"), []byte("b")); err != nil {
		return nil, fmt.Errorf("SaveTaskResult: %w", err)
	}
	if err := b.StoreSignal(ctx, id, workflow.Pause, workflow.SignalRequest{Reason: "ops"}); err != nil {
		return nil, fmt.Errorf("StoreSignal: %w", err)
	}
	if c, err := a.CheckControlSignals(ctx, id, nil); err != nil || c != lifecycle.ControlPaused {
		return nil, fmt.Errorf("CheckControlSignals: %v %v", c, err)
	}
	if _, err := a.Unpause(ctx, id); err != nil {
		return nil, fmt.Errorf("Unpause: %w", err)
	}
	if err := a.SendEvent(ctx, id, "approval", []byte("yes")); err != nil {
		return nil, fmt.Errorf("SendEvent: %w", err)
	}
	if c, err := b.ConsumeEvent(ctx, lifecycle.ConsumeRequest{InstanceID: id, Name: "approval"}); err != nil || !c.OK {
		return nil, fmt.Errorf("ConsumeEvent: %v %v", c, err)
	}
	if _, err := b.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: defHash, FirstTask: first, Policy: workflow.TerminateExisting}); err != nil {
		return nil, fmt.Errorf("PrepareRun TerminateExisting: %w", err)
	}
	if err := a.DeleteSnapshot(ctx, id, "done"); err != nil {
		return nil, fmt.Errorf("DeleteSnapshot: %w", err)
	}
	if st, err := lifecycle.New(log, lifecycle.Config{Logger: discard}); err != nil {
		return nil, err
	} else if s, err := st.Load(ctx, id); err != nil || s.Exists || s.Commits != 10 {
		return nil, fmt.Errorf("Load: exists %t, %d commits, %v; want deleted after 10 commits", s.Exists, s.Commits, err)
	}
	return nil, nil
}

// readerWork runs every read as the reader and returns the first failure.
// The history was written by writerWork.
func readerWork(t *testing.T, url string, limit time.Duration) (violation, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	var log *conn
	defer func() {
		if log != nil {
			violation = log.nc.LastError()
		}
	}()
	log, err = connect(t, ctx, url, readerUser, readerPass, jetstream.Config{NoCreate: true})
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	id := "order.42 ünïcode"
	store, err := lifecycle.New(log, lifecycle.Config{Logger: discard})
	if err != nil {
		return nil, err
	}
	st, err := store.Load(ctx, id)
	if err != nil || st.Commits != 10 {
		return nil, fmt.Errorf("Load: %d commits, %v", st.Commits, err)
	}
	n := 0
	for _, err := range log.Read(ctx, id, 0) {
		if err != nil {
			return nil, fmt.Errorf("Read: %w", err)
		}
		n++
	}
	if n != 10 {
		return nil, fmt.Errorf("Read: %d messages, want 10", n)
	}
	if ids, err := log.Instances(ctx, "", 0); err != nil || !slices.Equal(ids, []string{id}) {
		return nil, fmt.Errorf("Instances: %q %v", ids, err)
	}
	n = 0
	for _, err := range log.Scan(ctx, 0) {
		if err != nil {
			return nil, fmt.Errorf("Scan: %w", err)
		}
		n++
	}
	if n != 10 {
		return nil, fmt.Errorf("Scan: %d messages, want 10", n)
	}
	if m, ok, err := log.LastMessage(ctx, id); err != nil || !ok || m.Seq != st.LastSeq {
		return nil, fmt.Errorf("LastMessage: %d %t %v, want seq %d", m.Seq, ok, err, st.LastSeq)
	}
	n = 0
	for _, err := range log.Follow(ctx, id, 0) {
		if err != nil {
			return nil, fmt.Errorf("Follow: %w", err)
		}
		if n++; n == 10 {
			break
		}
	}
	rep, err := audit.Verify(ctx, log, audit.VerifyOptions{})
	if err != nil || !rep.OK() || rep.Messages != 10 {
		return nil, fmt.Errorf("audit.Verify: %+v %v", rep, err)
	}
	return nil, nil
}

// TestWriterAndReader: with the minimal permissions, the writer runs every
// lifecycle operation on a stream the admin created and the reader every
// read; the reader's attempt to append fails on a permissions violation
// and nothing is stored.
func TestWriterAndReader(t *testing.T) {
	url := startServer(t, writerPublish, readerPublish)
	admin := createStream(t, url)
	if v, err := writerWork(t, url, 4*step); err != nil || v != nil {
		t.Fatalf("writer: %v (connection: %v)", err, v)
	}
	if v, err := readerWork(t, url, 4*step); err != nil || v != nil {
		t.Fatalf("reader: %v (connection: %v)", err, v)
	}
	msgs := streamMsgs(t, admin)

	// The reader tries to write, through the log and through a store.
	ctx := t.Context()
	reader, err := connect(t, ctx, url, readerUser, readerPass, jetstream.Config{NoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	store, err := lifecycle.New(reader, lifecycle.Config{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithTimeout(ctx, step)
	_, perr := store.PrepareRun(actx, lifecycle.PrepareRunRequest{InstanceID: "forbidden", DefinitionHash: defHash, FirstTask: first})
	cancel()
	actx, cancel = context.WithTimeout(ctx, step)
	_, aerr := reader.Append(actx, "forbidden", events.Message{MsgID: "01JDZ8Q5N3C7K2W4X6Y8Z0A1B2", Data: []byte("{}")}, 0)
	cancel()
	for name, err := range map[string]error{"PrepareRun": perr, "Append": aerr} {
		if err == nil {
			t.Fatalf("reader %s: succeeded", name)
		}
		t.Logf("reader %s: %v", name, err)
	}
	// The server refused the publish as a permissions violation: the
	// connection's last error says so.
	if last := reader.nc.LastError(); !errors.Is(last, nats.ErrPermissionViolation) {
		t.Errorf("reader connection's last error: %v, want a permissions violation", last)
	} else {
		t.Logf("reader connection: %v", last)
	}
	// The caller is told the cause, not a timeout: the error of the write
	// itself matches nats.ErrPermissionViolation.
	for name, err := range map[string]error{"PrepareRun": perr, "Append": aerr} {
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("reader %s: %v: want an error matching nats.ErrPermissionViolation (the server refused the publish; "+
				"jetstream.Log.Append waits for an acknowledgement that never comes and reports a timeout)", name, err)
		}
	}
	if n := streamMsgs(t, admin); n != msgs {
		t.Errorf("the stream went from %d to %d messages after the reader's attempt", msgs, n)
	}
	if _, ok, err := admin.LastMessage(ctx, "forbidden"); ok || err != nil {
		t.Errorf("a message was stored for the reader: %t %v", ok, err)
	}
}

// partitionedSet is a permission set of the one-stream store for a store
// of k partitions: each entry naming the stream RUNLOG names each
// partition's stream instead (RUNLOG_P0 …), and the look-up of RUNLOG
// itself stays (jetstream.Open looks for the one-stream layout first).
func partitionedSet(set []string, k int) []string {
	var out []string
	for _, e := range set {
		if !strings.Contains(e, ".RUNLOG") {
			out = append(out, e)
			continue
		}
		if e == "$JS.API.STREAM.INFO.RUNLOG" {
			out = append(out, e)
		}
		for p := range k {
			out = append(out, strings.Replace(e, ".RUNLOG", "."+jetstream.PartitionStream("RUNLOG", p, k), 1))
		}
	}
	return out
}

// TestWriterAndReaderPartitioned: the minimal sets, mapped to the
// partitions' streams, suffice on a store of 4 partitions.
func TestWriterAndReaderPartitioned(t *testing.T) {
	url := startServer(t, partitionedSet(writerPublish, 4), partitionedSet(readerPublish, 4))
	createPartitioned(t, url, 4)
	if v, err := writerWork(t, url, 4*step); err != nil || v != nil {
		t.Fatalf("writer: %v (connection: %v)", err, v)
	}
	if v, err := readerWork(t, url, 4*step); err != nil || v != nil {
		t.Fatalf("reader: %v (connection: %v)", err, v)
	}
}

// TestReaderCannotCreateStream: a reader with NoCreate on a server
// without the stream gets an error matching ErrStreamNotFound, and
// nothing is created.
func TestReaderCannotCreateStream(t *testing.T) {
	url := startServer(t, writerPublish, readerPublish)
	_, err := connect(t, t.Context(), url, readerUser, readerPass, jetstream.Config{NoCreate: true})
	if err == nil {
		t.Fatal("reader opened a stream that does not exist")
	}
	t.Logf("reader: %v", err)
}

// TestMinimalPermissions re-derives the permission sets: each entry of
// writerPublish and readerPublish is removed in turn, and the scenario
// must then fail or meet a permissions violation. It costs up to a few
// seconds per entry, so it runs only with RUNLOG_PERMS_EXPLORE=1.
func TestMinimalPermissions(t *testing.T) {
	if os.Getenv("RUNLOG_PERMS_EXPLORE") == "" {
		t.Skip("set RUNLOG_PERMS_EXPLORE=1 to re-derive the minimal permission sets")
	}
	const limit = 8 * time.Second
	for i, subj := range writerPublish {
		t.Run("writer without "+subj, func(t *testing.T) {
			url := startServer(t, slices.Delete(slices.Clone(writerPublish), i, i+1), readerPublish)
			createStream(t, url)
			v, err := writerWork(t, url, limit)
			if err == nil && v == nil {
				t.Errorf("the writer needs no %s", subj)
			}
			t.Logf("needed: %v; connection: %v", err, v)
		})
	}
	for i, subj := range readerPublish {
		t.Run("reader without "+subj, func(t *testing.T) {
			url := startServer(t, writerPublish, slices.Delete(slices.Clone(readerPublish), i, i+1))
			createStream(t, url)
			if v, err := writerWork(t, url, limit); err != nil || v != nil {
				t.Fatalf("writer: %v %v", err, v)
			}
			v, err := readerWork(t, url, limit)
			if err == nil && v == nil {
				t.Errorf("the reader needs no %s", subj)
			}
			t.Logf("needed: %v; connection: %v", err, v)
		})
	}
}

func streamMsgs(t *testing.T, s *conn) uint64 {
	t.Helper()
	js, err := natsjs.New(s.nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), s.Stream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
