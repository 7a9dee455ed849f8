package cluster

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// benchWriters is the number of goroutines of BenchmarkClusterCreate.
const benchWriters = 16

// BenchmarkClusterCreate measures durable creates (PrepareRun, Fail) from
// 16 goroutines on the three-node cluster (every node fsyncs before
// acknowledging; three replicas, so a write is acknowledged once two
// nodes stored it), on a store of one stream and on one of 3 partitions:
// one stream has one leader, hence one node's write path; 3 partitions
// have a leader each, which the meta leader places, or which
// Store.SpreadLeaders moves one per node (/spread; metric nodes-leading:
// how many nodes lead a partition). The clients connect to the three
// nodes, a third of the writers each.
//
//	go test -run '^$' -bench ClusterCreate -benchtime 5s -count 3 ./test/cluster/
func BenchmarkClusterCreate(b *testing.B) {
	c := startCluster(b, size, "UNUSED")
	for _, tc := range []struct {
		name   string
		k      int
		spread bool
	}{{"partitions=1", 1, false}, {"partitions=3", 3, false}, {"partitions=3/spread", 3, true}} {
		k, spread := tc.k, tc.spread
		var next atomic.Int64 // ids stay distinct across the runs of one store
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			stream := "BENCH" + strconv.Itoa(k)
			if spread {
				stream += "S"
			}
			cfg := jetstream.Config{Stream: stream, Subject: strings.ToLower(stream), Replicas: size, Partitions: k, Logger: quietLogger(b)}
			var stores []*lifecycle.Store
			var logs []*jetstream.Log
			for _, n := range c.nodes {
				var js *jetstream.Log
				err := poll(ctx, electionWait, func(ctx context.Context) error {
					var err error
					js, err = jetstream.Connect(ctx, n.url(), jetstream.ConnectConfig{Name: "runlog-cluster-bench"}, cfg)
					return err
				})
				if err != nil {
					b.Fatalf("connect to %s: %v", n.name, err)
				}
				b.Cleanup(func() { _ = js.Close() })
				st, err := lifecycle.New(js, lifecycle.Config{Logger: quietLogger(b)})
				if err != nil {
					b.Fatal(err)
				}
				logs, stores = append(logs, js), append(stores, st)
			}
			leaders := partitionLeaders(b, ctx, logs[0], c)
			if spread {
				var err error
				if leaders, err = logs[0].SpreadLeaders(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.Logf("partitions=%d spread=%t: leaders %s", k, spread, strings.Join(leaders, " "))
			distinct := len(slices.Compact(slices.Sorted(slices.Values(leaders))))

			var writer atomic.Int64
			hint := workflow.TaskHint{ID: workflow.NewTaskID("first")}
			def := workflow.DefinitionHashOf("cluster bench v1")
			b.SetParallelism((benchWriters + 1) / 2) // 2 cores here: 16 goroutines
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				st := stores[int(writer.Add(1))%len(stores)]
				for pb.Next() {
					id := fmt.Sprintf("b%d-%d", k, next.Add(1))
					p, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: def, FirstTask: hint})
					if err != nil || p.Outcome != lifecycle.Created {
						b.Error(p.Outcome, err)
						return
					}
				}
			})
			b.ReportMetric(float64(distinct), "nodes-leading")
		})
	}
}

// partitionLeaders returns the node leading each of js's partition
// streams, once each has one.
func partitionLeaders(b *testing.B, ctx context.Context, js *jetstream.Log, c *cluster) []string {
	b.Helper()
	admin := newMonitorTB(b, c)
	leaders := make([]string, len(js.Streams()))
	for i, name := range js.Streams() {
		err := poll(ctx, electionWait, func(ctx context.Context) error {
			st, err := admin.Stream(ctx, name)
			if err != nil {
				return err
			}
			if ci := st.CachedInfo().Cluster; ci != nil && ci.Leader != "" {
				leaders[i] = ci.Leader
				return nil
			}
			return fmt.Errorf("stream %s has no leader yet", name)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return leaders
}

// newMonitorTB is a JetStream context on a connection to every node,
// closed when tb ends.
func newMonitorTB(tb testing.TB, c *cluster) natsjs.JetStream {
	tb.Helper()
	nc, err := nats.Connect(c.urls(), nats.Name("runlog-cluster-bench-admin"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	j, err := natsjs.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return j
}

// TestSpreadLeaders: on three nodes, a store of 3 partitions with three
// replicas ends with one partition led by each node after SpreadLeaders,
// whatever the server's own placement was, and stays writable.
func TestSpreadLeaders(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster; skipped with -short")
	}
	c := startCluster(t, size, "UNUSED")
	ctx := t.Context()
	cfg := jetstream.Config{Stream: "SPREAD", Subject: "spread", Replicas: size, Partitions: 3, Logger: quietLogger(t)}
	var js *jetstream.Log
	err := poll(ctx, electionWait, func(ctx context.Context) error {
		var err error
		js, err = jetstream.Connect(ctx, c.urls(), jetstream.ConnectConfig{Name: "runlog-cluster-spread"}, cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.Close() })
	var before []string
	err = poll(ctx, electionWait, func(ctx context.Context) error {
		var err error
		if before, err = js.Leaders(ctx); err == nil && slices.Contains(before, "") {
			err = fmt.Errorf("leaders %v", before)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	after, err := js.SpreadLeaders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leaders %v → %v", before, after)
	if got := slices.Compact(slices.Sorted(slices.Values(after))); len(got) != 3 {
		t.Fatalf("leaders after SpreadLeaders: %v, want one per node", after)
	}
	st, err := lifecycle.New(js, lifecycle.Config{Logger: quietLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	def := workflow.DefinitionHashOf("spread v1")
	for i := range 9 {
		if _, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: fmt.Sprintf("s-%d", i), DefinitionHash: def, FirstTask: workflow.TaskHint{ID: workflow.NewTaskID("first")}}); err != nil {
			t.Fatalf("create after the move: %v", err)
		}
	}
	// Spread already: nothing moves.
	again, err := js.SpreadLeaders(ctx)
	if err != nil || !slices.Equal(again, after) {
		t.Fatalf("SpreadLeaders again: %v, %v; want %v unchanged", again, err, after)
	}
}
