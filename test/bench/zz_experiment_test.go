package bench

import (
	"context"
	"strconv"
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/events"
)

func scanEnv(b *testing.B) *env {
	e := newEnv(b, syncDefault)
	gen := events.NewIDSource(nil, nil)
	for i := range 10 {
		id := "v" + strconv.Itoa(i)
		e.publishBulk(b, id, genHistory(b, gen, id, longEvents))
	}
	e.flush(b)
	return e
}

func BenchmarkXScanDirect(b *testing.B) {
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
		if n != 100000 {
			b.Fatal(n)
		}
	}
	cpu.report(b)
}

func BenchmarkXScanOrdered(b *testing.B) {
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
		if n != 100000 {
			b.Fatal(n)
		}
	}
	cpu.report(b)
}
