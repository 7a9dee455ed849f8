package bench

import (
	"context"
	"strconv"
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/events"
)

// scanMessages is the size of the stream the scan benchmarks read: the
// histories of BenchmarkVerify100k (10 instances of 10,000 events).
const scanMessages = 10 * longEvents

// scanEnv stores the histories of BenchmarkVerify100k.
func scanEnv(b *testing.B) *env {
	e := newEnv(b, syncDefault)
	gen := events.NewIDSource(nil, nil)
	for i := range scanMessages / longEvents {
		id := "v" + strconv.Itoa(i)
		e.publishBulk(b, id, genHistory(b, gen, id, longEvents))
	}
	e.flush(b)
	return e
}

// BenchmarkRawScan100k reads a stream of 100,000 messages with an ordered
// consumer and nothing else (each message's metadata and headers are
// parsed, as any reader needs them): the floor of a whole-log read, which
// `replay verify` of every instance is.
func BenchmarkRawScan100k(b *testing.B) {
	e := scanEnv(b)
	ctx := context.Background()
	cpu := startCPU()
	for b.Loop() {
		cons, err := e.js.OrderedConsumer(ctx, e.name, natsjs.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		n := 0
		cc, err := cons.Consume(func(m natsjs.Msg) {
			md, err := m.Metadata()
			if err != nil {
				b.Error(err)
			}
			_ = m.Headers()
			n++
			if md.NumPending == 0 {
				close(done)
			}
		}, natsjs.PullMaxMessages(1024))
		if err != nil {
			b.Fatal(err)
		}
		<-done
		cc.Stop()
		if n != scanMessages {
			b.Fatal(n)
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(scanMessages)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkScan100k is BenchmarkRawScan100k through jetstream.Log.Scan
// (what audit.Verify reads with), which also decodes each subject into
// its instance id.
func BenchmarkScan100k(b *testing.B) {
	e := scanEnv(b)
	ctx := context.Background()
	cpu := startCPU()
	for b.Loop() {
		n := 0
		for _, err := range e.log.Scan(ctx, 0) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != scanMessages {
			b.Fatal(n)
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(scanMessages)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
