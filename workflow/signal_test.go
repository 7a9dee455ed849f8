package workflow_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/runlog/runlog/workflow"
)

func TestParseSignalKind(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want workflow.SignalKind
	}{
		{"cancel", workflow.Cancel},
		{"Cancel", workflow.Cancel},
		{"pause", workflow.Pause},
		{"Pause", workflow.Pause},
	} {
		got, err := workflow.ParseSignalKind(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSignalKind(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "CANCEL", "stop", "resume", "pause "} {
		_, err := workflow.ParseSignalKind(in)
		if !errors.Is(err, workflow.ErrInvalidSignalKind) {
			t.Errorf("ParseSignalKind(%q) = %v, want ErrInvalidSignalKind", in, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "cancel") || !strings.Contains(err.Error(), "pause")) {
			t.Errorf("error %q does not list the valid kinds", err)
		}
	}
}

func TestSignalKindText(t *testing.T) {
	t.Parallel()
	if got := workflow.SignalKinds(); !slices.Equal(got, []workflow.SignalKind{workflow.Cancel, workflow.Pause}) {
		t.Fatalf("SignalKinds() = %v", got)
	}
	var zero workflow.SignalKind
	if zero.Valid() {
		t.Error("the zero SignalKind is valid")
	}
	if _, err := zero.MarshalText(); !errors.Is(err, workflow.ErrInvalidSignalKind) {
		t.Errorf("MarshalText(0) = %v", err)
	}
	for k, name := range map[workflow.SignalKind]string{workflow.Cancel: "cancel", workflow.Pause: "pause"} {
		if !k.Valid() || k.String() != name {
			t.Errorf("%d: Valid %v String %q", k, k.Valid(), k.String())
		}
		text, err := k.MarshalText()
		if err != nil || string(text) != name {
			t.Errorf("MarshalText = %q, %v", text, err)
		}
		var back workflow.SignalKind
		if err := back.UnmarshalText(text); err != nil || back != k {
			t.Errorf("UnmarshalText(%q) = %v, %v", text, back, err)
		}
	}
	// As a map key (projection.State.Signals is keyed by kind).
	m := map[workflow.SignalKind]workflow.SignalRequest{workflow.Pause: {Reason: "r"}}
	b, err := json.Marshal(m)
	if err != nil || string(b) != `{"pause":{"reason":"r","requested_at":"0001-01-01T00:00:00Z"}}` {
		t.Errorf("json.Marshal(map) = %s, %v", b, err)
	}
	var back map[workflow.SignalKind]workflow.SignalRequest
	if err := json.Unmarshal(b, &back); err != nil || back[workflow.Pause].Reason != "r" {
		t.Errorf("json.Unmarshal = %v, %v", back, err)
	}
	if got := workflow.SignalKind(7).String(); got != "SignalKind(7)" {
		t.Errorf("String() = %q", got)
	}
}
