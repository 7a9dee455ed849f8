package perms

import (
	"net"
	"testing"

	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
)

// TestEmbeddedListensOnNoPort: by default the embedded server has no
// network listener at all: no client URL, no address, and only in-process
// connections work.
func TestEmbeddedListensOnNoPort(t *testing.T) {
	emb, err := jetstream.StartEmbedded(t.Context(), jetstream.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() { _ = emb.Close() })
	if u := emb.ClientURL(); u != "" {
		t.Errorf("ClientURL() = %q, want \"\" (no listener)", u)
	}
	if a := emb.Server().Addr(); a != nil {
		t.Errorf("the server listens on %v", a)
	}
	if a := emb.Server().MonitorAddr(); a != nil {
		t.Errorf("the server has a monitoring listener on %v", a)
	}
	for name, a := range map[string]*net.TCPAddr{"cluster": emb.Server().ClusterAddr(), "profiler": emb.Server().ProfilerAddr()} {
		if a != nil {
			t.Errorf("the server has a %s listener on %v", name, a)
		}
	}
	nc, err := emb.Conn()
	if err != nil {
		t.Fatalf("in-process connection: %v", err)
	}
	nc.Close()
}

// TestEmbeddedListenHasNoAuthentication documents the gap: with
// EmbeddedConfig.Listen set, any network client connects without
// credentials and can write to the stream, since EmbeddedConfig has no
// authentication option. Run a server.Server with Users or Accounts
// yourself (as startServer does) and jetstream.Open on it to require
// authentication; see docs/RELIABILITY.md.
func TestEmbeddedListenAuthentication(t *testing.T) {
	ctx := t.Context()
	// Without User, a listening embedded server lets anyone in: the
	// documented default, for loopback use.
	open, err := jetstream.StartEmbedded(ctx, jetstream.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() { _ = open.Close() })
	stranger, err := jetstream.Connect(ctx, open.ClientURL(), jetstream.ConnectConfig{}, jetstream.Config{Logger: discard})
	if err != nil {
		t.Fatalf("unauthenticated connect to a server without User: %v", err)
	}
	stranger.Close()

	// With User and Password, it requires them.
	locked, err := jetstream.StartEmbedded(ctx, jetstream.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", User: "svc", Password: "pw"})
	if err != nil {
		t.Fatalf("StartEmbedded with a user: %v", err)
	}
	t.Cleanup(func() { _ = locked.Close() })
	if s, err := jetstream.Connect(ctx, locked.ClientURL(), jetstream.ConnectConfig{}, jetstream.Config{Logger: discard}); err == nil {
		s.Close()
		t.Fatal("a client without credentials was let in")
	}
	if s, err := jetstream.Connect(ctx, locked.ClientURL(), jetstream.ConnectConfig{User: "svc", Password: "wrong"}, jetstream.Config{Logger: discard}); err == nil {
		s.Close()
		t.Fatal("a client with a wrong password was let in")
	}
	good, err := jetstream.Connect(ctx, locked.ClientURL(), jetstream.ConnectConfig{User: "svc", Password: "pw"}, jetstream.Config{Logger: discard})
	if err != nil {
		t.Fatalf("connect with the right credentials: %v", err)
	}
	defer good.Close()
	store, err := lifecycle.New(good, lifecycle.Config{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: "authed", DefinitionHash: defHash, FirstTask: first}); err != nil {
		t.Fatalf("authenticated PrepareRun: %v", err)
	}
	// The in-process connection passes the credentials itself.
	nc, err := locked.Conn()
	if err != nil {
		t.Fatalf("in-process connection to an authenticating server: %v", err)
	}
	nc.Close()
}
