package natstest_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/internal/natstest"
)

func TestStartDirRestart(t *testing.T) {
	dir := t.TempDir()
	s := natstest.StartDir(t, dir)
	if !s.JetStreamEnabled() {
		t.Fatal("JetStream not enabled")
	}
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), "s.x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()

	s2 := natstest.StartDir(t, dir)
	js2, err := jetstream.New(natstest.Connect(t, s2))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js2.Stream(t.Context(), "S")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("%d messages after restart, want 1", n)
	}
}

func TestStart(t *testing.T) {
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	if !nc.IsConnected() {
		t.Fatal("not connected")
	}
}
