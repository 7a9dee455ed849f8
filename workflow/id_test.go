package workflow_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/runlog/runlog/workflow"
)

func TestValidateInstanceID(t *testing.T) {
	t.Parallel()
	valid := []struct{ name, id string }{
		{"one byte", "a"},
		{"typical", "order-12345"},
		{"ulid", "01J9Z8Q4C7X5R2M3N6P8T0V1W2"},
		{"dot", "a.b"},
		{"star", "a*b"},
		{"gt", "a>b"},
		{"only wildcard", ">"},
		{"space", "a b"},
		{"leading and trailing space", " a "},
		{"tab and newline", "a\tb\nc"},
		{"slash", "tenant/order/1"},
		{"equals escape lookalike", "a=2Eb"},
		{"unicode", "commande-été-日本語-🚀"},
		{"exactly 256 bytes", strings.Repeat("x", 256)},
		{"256 bytes of 2-byte runes", strings.Repeat("é", 128)},
		{"256 bytes of 4-byte runes", strings.Repeat("🚀", 64)},
		{"NUL byte is valid UTF-8", "a\x00b"},
	}
	for _, tt := range valid {
		t.Run("accepts/"+tt.name, func(t *testing.T) {
			t.Parallel()
			if err := workflow.ValidateInstanceID(tt.id); err != nil {
				t.Fatalf("ValidateInstanceID(%q) = %v, want nil", tt.id, err)
			}
		})
	}

	invalid := []struct {
		name, id string
		reason   string // a fragment of the error message
	}{
		{"empty", "", "must not be empty"},
		{"257 bytes", strings.Repeat("x", 257), "length 257 exceeds maximum 256 bytes"},
		{"258 bytes of 2-byte runes", strings.Repeat("é", 129), "length 258 exceeds maximum 256 bytes"},
		{"255 bytes then a 2-byte rune", strings.Repeat("x", 255) + "é", "length 257 exceeds maximum 256 bytes"},
		{"invalid UTF-8", "a\xffb", "not valid UTF-8"},
		{"truncated rune", "\xe6\x97", "not valid UTF-8"},
		{"lone continuation byte", "\x80", "not valid UTF-8"},
		{"UTF-16 surrogate encoded as UTF-8", "\xed\xa0\x80", "not valid UTF-8"},
	}
	for _, tt := range invalid {
		t.Run("refuses/"+tt.name, func(t *testing.T) {
			t.Parallel()
			err := workflow.ValidateInstanceID(tt.id)
			if err == nil {
				t.Fatalf("ValidateInstanceID(%q) = nil, want an error", tt.id)
			}
			if !errors.Is(err, workflow.ErrInvalidInstanceID) {
				t.Errorf("errors.Is(%v, ErrInvalidInstanceID) = false", err)
			}
			e, ok := errors.AsType[*workflow.InstanceIDError](err)
			if !ok {
				t.Fatalf("errors.AsType[*InstanceIDError](%v) failed; got %T", err, err)
			}
			var viaAs *workflow.InstanceIDError
			if !errors.As(err, &viaAs) || viaAs != e {
				t.Errorf("errors.As disagrees with errors.AsType")
			}
			if e.ID != tt.id {
				t.Errorf("InstanceIDError.ID = %q, want %q", e.ID, tt.id)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not say %q", err, tt.reason)
			}
			if !strings.HasPrefix(err.Error(), "workflow: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error message is %d bytes long; a long id must be truncated: %q", len(err.Error()), err)
			}
		})
	}
}

func TestInstanceIDErrorIsOnlyItsSentinel(t *testing.T) {
	t.Parallel()
	err := workflow.ValidateInstanceID("")
	for _, other := range []error{workflow.ErrInvalidHash, workflow.ErrInvalidPolicy, workflow.ErrInvalidSignalKind} {
		if errors.Is(err, other) {
			t.Errorf("errors.Is(%v, %v) = true", err, other)
		}
	}
}
