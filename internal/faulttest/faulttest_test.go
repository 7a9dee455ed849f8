package faulttest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/runlog/runlog/lifecycle"
)

func TestRefused(t *testing.T) {
	for _, err := range []error{lifecycle.ErrAlreadyExists, lifecycle.ErrCannotCancel, lifecycle.ErrCannotPause,
		fmt.Errorf("lifecycle: checkpoint %q: %w", "x", lifecycle.ErrStale)} {
		if !Refused(err) {
			t.Errorf("Refused(%v) = false", err)
		}
	}
	for _, err := range []error{nil, context.DeadlineExceeded, errors.New("nats: timeout")} {
		if Refused(err) {
			t.Errorf("Refused(%v) = true: the outcome of such an error is unknown", err)
		}
	}
}
