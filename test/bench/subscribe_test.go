package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// subscribeCommits is how many commits the subscription benchmarks read:
// written before the clock starts, one per instance.
const subscribeCommits = 2000

// commitsEnv is a store holding subscribeCommits creates.
func commitsEnv(b *testing.B) *env {
	b.Helper()
	e := newEnv(b, syncDefault)
	st, err := lifecycle.New(e.log, lifecycle.Config{Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := range subscribeCommits {
		if _, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: fmt.Sprint("sub-", i), DefinitionHash: workflow.DefinitionHashOf("d"),
			FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("t")}}); err != nil {
			b.Fatal(err)
		}
	}
	return e
}

// BenchmarkSubscribe measures a durable subscription (jetstream.Log.Subscribe)
// delivering commits to a handler that does nothing: decoded, one at a
// time, each acknowledged and the acknowledgement confirmed. Reports
// commits/s; an op is one commit.
func BenchmarkSubscribe(b *testing.B) {
	e := commitsEnv(b)
	n := 0
	cpu := startCPU()
	for b.Loop() {
		if n%subscribeCommits == 0 {
			b.StopTimer()
			ctx, cancel := context.WithCancel(context.Background())
			var got atomic.Int64
			done := make(chan error, 1)
			name := fmt.Sprint("bench-", n)
			b.StartTimer()
			go func() {
				done <- e.log.Subscribe(ctx, name, jetstream.SubscribeOptions{}, func(context.Context, jetstream.Delivery) error {
					if got.Add(1) == subscribeCommits {
						cancel()
					}
					return nil
				})
			}()
			<-done
			b.StopTimer()
			cancel()
			b.StartTimer()
		}
		n++
	}
	cpu.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

// rawConsume is the raw floor of BenchmarkSubscribe: a durable pull
// consumer on the stream, messages acknowledged as they come, with
// maxAckPending outstanding and, when confirm is set, each
// acknowledgement confirmed (DoubleAck), as the subscription does.
func rawConsume(b *testing.B, maxAckPending int, confirm bool) {
	e := commitsEnv(b)
	n := 0
	cpu := startCPU()
	for b.Loop() {
		if n%subscribeCommits == 0 {
			ctx := context.Background()
			cons, err := e.js.CreateConsumer(ctx, e.name, natsjs.ConsumerConfig{Durable: fmt.Sprint("raw-", n), AckPolicy: natsjs.AckExplicitPolicy,
				MaxAckPending: maxAckPending, FilterSubject: jetstream.DefaultSubject + ".>"})
			if err != nil {
				b.Fatal(err)
			}
			msgs, err := cons.Messages()
			if err != nil {
				b.Fatal(err)
			}
			for range subscribeCommits {
				m, err := msgs.Next()
				if err != nil {
					b.Fatal(err)
				}
				if confirm {
					err = m.DoubleAck(ctx)
				} else {
					err = m.Ack()
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			msgs.Stop()
		}
		n++
	}
	cpu.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

// BenchmarkRawConsume is a durable pull consumer with the default
// window (1,000 outstanding) and plain acknowledgements: the fastest raw
// reading.
func BenchmarkRawConsume(b *testing.B) { rawConsume(b, 1000, false) }

// BenchmarkRawConsumeOrdered is the raw consumer with what the
// subscription's guarantees need: one outstanding, each acknowledgement
// confirmed.
func BenchmarkRawConsumeOrdered(b *testing.B) { rawConsume(b, 1, true) }
