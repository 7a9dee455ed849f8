package test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/runlog/runlog/internal/natstest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

const runTrace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// attrs flattens span attributes for lookups.
func attrs(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// TestTelemetry runs, with the SDK's in-memory span recorder and a manual
// metric reader, a PrepareRun that meets a conflict and decides again, a
// checkpoint and a cancel; and a subscription that delivers them. The
// spans and metrics are asserted by name and attribute; the trace parent
// given to PrepareRun is the operations' parent, is carried on every
// commit, and is what the subscription's handler continues.
func TestTelemetry(t *testing.T) {
	ctx := t.Context()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	srv := natstest.Start(t)
	log, err := jetstream.Open(ctx, natstest.Connect(t, srv), jetstream.Config{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	st, err := lifecycle.New(log, lifecycle.Config{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	// A second store on the same log, without telemetry, makes the
	// first one's cached state stale.
	other, err := lifecycle.New(log, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const id = "traced-order"
	task := workflow.NewTaskID("charge")
	p, err := st.PrepareRun(ctx, lifecycle.PrepareRunRequest{InstanceID: id, DefinitionHash: workflow.DefinitionHashOf("d"),
		FirstTask: workflow.TaskHint{ID: task}, TraceParent: runTrace})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.StoreSignal(ctx, id, workflow.Pause, workflow.SignalRequest{Reason: "look"}); err != nil {
		t.Fatal(err)
	}
	// UseExisting on the stale cache: the append conflicts, the store
	// reads the new commit and decides again.
	if err := st.StoreSignal(ctx, id, workflow.Cancel, workflow.SignalRequest{Reason: "stop"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SaveTaskResult(ctx, id, p.Revision, task, []byte(`"ok"`)); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.CheckAndCancel(ctx, id, nil); err != nil || !ok {
		t.Fatal(ok, err)
	}

	ended := spans.Ended()
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range ended {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	wantTrace, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	for _, name := range []string{"runlog prepare run", "runlog store signal", "runlog save task result", "runlog check and cancel"} {
		ss := byName[name]
		if len(ss) != 1 {
			t.Fatalf("%d spans %q; spans: %v", len(ss), name, names(ended))
		}
		s := ss[0]
		a := attrs(s.Attributes())
		if a["runlog.instance"] != id || a["runlog.outcome"] != "ok" || a["runlog.operation"] == "" {
			t.Errorf("%s: attributes %v", name, a)
		}
		if s.SpanContext().TraceID() != wantTrace {
			t.Errorf("%s: trace %s, want the run's %s", name, s.SpanContext().TraceID(), wantTrace)
		}
	}
	sig := byName["runlog store signal"][0]
	if a := attrs(sig.Attributes()); a["runlog.attempts"] != "2" || a["runlog.conflicts"] != "1" {
		t.Errorf("the conflicted store signal: attributes %v", a)
	}
	if evs := sig.Events(); len(evs) != 1 || evs[0].Name != "runlog.conflict" {
		t.Errorf("the conflicted store signal: events %v", evs)
	}
	if n := len(byName["runlog append"]); n < 5 { // prepare, signal twice (one refused), result, cancel
		t.Errorf("%d append spans, want at least 5", n)
	}
	for _, s := range byName["runlog append"] {
		if s.Parent().SpanID() == (trace.SpanID{}) || s.SpanContext().TraceID() != wantTrace {
			t.Errorf("append span %v is not a child in the run's trace", s.SpanContext())
		}
	}
	if len(byName["runlog read"]) == 0 {
		t.Error("no read span (the conflict's catch-up)")
	}

	// Metrics.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}
	hist := map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					k := m.Name
					for _, kv := range dp.Attributes.ToSlice() {
						k += " " + string(kv.Key) + "=" + kv.Value.Emit()
					}
					sums[k] += dp.Value
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					hist[m.Name] += dp.Count
				}
			}
		}
	}
	for k, want := range map[string]int64{
		"runlog.decisions runlog.operation=prepare run runlog.outcome=ok":  1,
		"runlog.decisions runlog.operation=store signal runlog.outcome=ok": 1,
		"runlog.conflicts runlog.operation=store signal":                   1,
		"runlog.cache.lookups runlog.result=hit":                           3,
		"runlog.cache.lookups runlog.result=miss":                          1,
	} {
		if sums[k] != want {
			t.Errorf("%s = %d, want %d (all: %v)", k, sums[k], want, sums)
		}
	}
	for _, name := range []string{"runlog.operation.duration", "runlog.append.duration", "runlog.read.duration"} {
		if hist[name] == 0 {
			t.Errorf("histogram %s recorded nothing", name)
		}
	}
	collected := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			collected[m.Name] = true
		}
	}
	defer func() {
		// After the subscription: its metrics too. The documented table
		// and the metrics runlog makes are the same set (claims lost is
		// made, and documented, but never recorded here: no claim lost).
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				collected[m.Name] = true
			}
		}
		collected["runlog.claims.lost"] = true
		doc := documentedMetrics(t)
		for _, name := range doc {
			if !collected[name] {
				t.Errorf("docs/INTEGRATION.md lists metric %s, which runlog did not make", name)
			}
			delete(collected, name)
		}
		for name := range collected {
			t.Errorf("metric %s is not in docs/INTEGRATION.md", name)
		}
	}()

	// Every commit carries a trace context of the run's trace, and the
	// subscription's handler continues it.
	for m, err := range log.Read(ctx, id, 0) {
		if err != nil {
			t.Fatal(err)
		}
		v := m.Header[lifecycle.HeaderTraceParent]
		if len(v) != 1 || !strings.HasPrefix(v[0], "00-4bf92f3577b34da6a3ce929d0e0e4736-") {
			t.Errorf("seq %d: traceparent %v", m.Seq, v)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var handled []trace.SpanContext
	var parents []string
	done := make(chan error, 1)
	go func() {
		done <- log.Subscribe(sctx, "traced", jetstream.SubscribeOptions{Instances: []string{id}}, func(ctx context.Context, d jetstream.Delivery) error {
			handled = append(handled, trace.SpanContextFromContext(ctx))
			parents = append(parents, d.TraceParent)
			if len(handled) == 5 {
				cancel()
			}
			return nil
		})
	}()
	<-done
	for i, sc := range handled {
		if sc.TraceID() != wantTrace || parents[i] == "" {
			t.Errorf("delivery %d: handler's span context %v, delivery trace parent %q", i, sc, parents[i])
		}
	}
	deliveries := 0
	for _, s := range spans.Ended() {
		if s.Name() == "runlog deliver traced" {
			deliveries++
			if s.SpanKind() != trace.SpanKindConsumer || s.SpanContext().TraceID() != wantTrace {
				t.Errorf("delivery span %v kind %v", s.SpanContext(), s.SpanKind())
			}
		}
	}
	if deliveries != 5 {
		t.Errorf("%d delivery spans, want 5", deliveries)
	}
}

func names(ss []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// documentedMetrics are the metric names docs/INTEGRATION.md's table
// lists.
func documentedMetrics(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "INTEGRATION.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(doc)) {
		if f := strings.Split(line, "|"); len(f) > 2 && strings.HasPrefix(strings.TrimSpace(f[1]), "`runlog.") {
			out = append(out, strings.Trim(strings.TrimSpace(f[1]), "`"))
		}
	}
	return out
}
