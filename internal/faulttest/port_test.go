package faulttest

import (
	"net"
	"strconv"
	"testing"
)

func TestPortBelowEphemeralRangeAndFree(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 20 {
		p := Port(t)
		if p < 1024 || p >= low {
			t.Fatalf("port %d outside [1024, %d)", p, low)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		_ = l.Close()
		seen[p] = true
	}
	if len(seen) < 2 {
		t.Fatalf("20 picks gave %d distinct ports: not random", len(seen))
	}
}
