package bench

import (
	"syscall"
	"testing"
	"time"
)

// cpuMeter measures the CPU time (user and system, all threads: client,
// embedded server and garbage collector together) the process spends in
// a benchmark's loop, excluding the periods the timer is stopped. The
// machine these benchmarks run on is shared; CPU time per operation is
// much less sensitive to other processes than wall time, and on 2 cores
// shared by client and server it is what bounds latency.
type cpuMeter struct {
	start, pausedAt, paused time.Duration
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startCPU starts measuring; call it right before the benchmark loop.
func startCPU() *cpuMeter { return &cpuMeter{start: cpuNow()} }

// stop and resume bracket b.StopTimer / b.StartTimer.
func (m *cpuMeter) stop()   { m.pausedAt = cpuNow() }
func (m *cpuMeter) resume() { m.paused += cpuNow() - m.pausedAt }

// report adds the cpu-ns/op metric for b.N operations.
func (m *cpuMeter) report(b *testing.B) {
	if b.N == 0 {
		return
	}
	used := cpuNow() - m.start - m.paused
	b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
}
