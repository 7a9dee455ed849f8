package faulttest

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Port returns a loopback TCP port that is free now and lies below the
// kernel's ephemeral port range, for a server that must come back on the
// same port after a restart.
//
// A port from the ephemeral range (what listening on port 0 gives) can be
// taken by any outgoing connection while its server is down or not yet
// started — including a client reconnecting to it, which then connects
// to itself (TCP simultaneous open) and holds the port. Ports below the
// range are never handed out by the kernel; the choice is random so that
// test processes running side by side rarely pick the same one, and each
// candidate is checked by binding it.
func Port(t testing.TB) int {
	t.Helper()
	low := ephemeralLow()
	lo, hi := low/2, low // [16384, 32768) with the default range
	if lo < 1024 {
		lo = 1024
	}
	for range 200 {
		p := lo + rand.IntN(hi-lo)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		_ = l.Close()
		return p
	}
	t.Fatalf("no free loopback port in [%d, %d)", lo, hi)
	return 0
}

// ephemeralLow returns the first port of the kernel's ephemeral range:
// Linux's /proc/sys/net/ipv4/ip_local_port_range, else 32768 (Linux's
// default; BSDs and macOS start at 49152).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 2048 {
				return n
			}
		}
	}
	return 32768
}
