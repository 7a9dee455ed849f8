package bench

import (
	"context"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
)

// benchPrepareRunFreshWith is BenchmarkPrepareRunFresh on a store made
// with cfg's telemetry providers.
func benchPrepareRunFreshWith(b *testing.B, cfg lifecycle.Config) {
	e := newEnv(b, syncDefault)
	cfg.Logger = discard
	st, err := lifecycle.New(e.log, cfg)
	if err != nil {
		b.Fatal(err)
	}
	freshCreates(b, st, "otel-")
}

// sdkProviders are the OpenTelemetry SDK's tracer provider (every span
// sampled, exported to an exporter that drops it) and meter provider
// (a manual reader, never collected), shut down when b ends.
func sdkProviders(b *testing.B) lifecycle.Config {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(tracetest.NewNoopExporter())))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	return lifecycle.Config{TracerProvider: tp, MeterProvider: mp}
}

// noopProviders are OpenTelemetry's no-op providers.
func noopProviders() lifecycle.Config {
	return lifecycle.Config{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider()}
}

// BenchmarkPrepareRunFreshOTelNoop is BenchmarkPrepareRunFresh with the
// OpenTelemetry no-op tracer and meter providers set: the cost of the
// instrumentation itself.
func BenchmarkPrepareRunFreshOTelNoop(b *testing.B) { benchPrepareRunFreshWith(b, noopProviders()) }

// BenchmarkPrepareRunFreshOTelSDK is BenchmarkPrepareRunFresh with the
// OpenTelemetry SDK: every span sampled and handed to an exporter that
// drops it, every metric aggregated (a manual reader, never collected).
func BenchmarkPrepareRunFreshOTelSDK(b *testing.B) { benchPrepareRunFreshWith(b, sdkProviders(b)) }

// benchPrepareRunFreshMem is PrepareRun with Fail on a new id on the
// in-memory log: no server, so the instrumentation's own cost is not
// hidden by the round trip.
func benchPrepareRunFreshMem(b *testing.B, cfg lifecycle.Config) {
	cfg.Logger = discard
	st, err := lifecycle.New(memlog.New(nil), cfg)
	if err != nil {
		b.Fatal(err)
	}
	freshCreates(b, st, "mem-")
}

// BenchmarkPrepareRunFreshMem: no telemetry configured.
func BenchmarkPrepareRunFreshMem(b *testing.B) { benchPrepareRunFreshMem(b, lifecycle.Config{}) }

// BenchmarkPrepareRunFreshMemOTelNoop: the no-op providers.
func BenchmarkPrepareRunFreshMemOTelNoop(b *testing.B) { benchPrepareRunFreshMem(b, noopProviders()) }

// BenchmarkPrepareRunFreshMemOTelSDK: the SDK, every span sampled and
// dropped by the exporter, metrics aggregated.
func BenchmarkPrepareRunFreshMemOTelSDK(b *testing.B) { benchPrepareRunFreshMem(b, sdkProviders(b)) }
