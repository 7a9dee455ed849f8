package main

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/runlog/runlog/visibility"
)

// serveMetrics are replay serve's own metrics, exposed in Prometheus'
// format at /metrics (docs/REPLAY.md lists them; TestServe holds the list
// to what /metrics shows). They come from an OpenTelemetry meter
// provider of serve's own, read by the OpenTelemetry Prometheus exporter
// into a registry of its own: nothing global is set.
type serveMetrics struct {
	mp       *sdkmetric.MeterProvider
	registry *prometheus.Registry

	indexLag      metric.Float64Histogram
	indexCommits  metric.Int64Counter
	indexCatchups metric.Int64Counter
	requests      metric.Int64Counter
	reqDuration   metric.Float64Histogram
	streams       metric.Int64UpDownCounter
}

func newServeMetrics() (*serveMetrics, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, err
	}
	sm := &serveMetrics{mp: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)), registry: reg}
	m := sm.mp.Meter("github.com/runlog/runlog/cmd/replay")
	var errs [6]error
	sm.indexLag, errs[0] = m.Float64Histogram("runlog.index.lag", metric.WithUnit("s"),
		metric.WithDescription("From the log storing the newest commit of a catch-up to the visibility index holding it"),
		metric.WithExplicitBucketBoundaries(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	sm.indexCommits, errs[1] = m.Int64Counter("runlog.index.commits", metric.WithUnit("{commit}"),
		metric.WithDescription("Commits folded into the visibility index"))
	sm.indexCatchups, errs[2] = m.Int64Counter("runlog.index.catchups", metric.WithUnit("{catchup}"),
		metric.WithDescription("Catch-ups of the visibility index that wrote rows or failed, by outcome"))
	sm.requests, errs[3] = m.Int64Counter("runlog.serve.requests", metric.WithUnit("{request}"),
		metric.WithDescription("API requests, by command and HTTP status"))
	sm.reqDuration, errs[4] = m.Float64Histogram("runlog.serve.request.duration", metric.WithUnit("s"),
		metric.WithDescription("API request duration, by command"),
		metric.WithExplicitBucketBoundaries(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	sm.streams, errs[5] = m.Int64UpDownCounter("runlog.serve.streams", metric.WithUnit("{stream}"),
		metric.WithDescription("Open event streams (/api/events)"))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return sm, nil
}

// caughtUp records a catch-up of the index that wrote rows.
func (sm *serveMetrics) caughtUp(s visibility.Stats) {
	ctx := context.Background()
	sm.indexCommits.Add(ctx, int64(s.Messages))
	sm.indexCatchups.Add(ctx, 1, metric.WithAttributes(attribute.String("runlog.outcome", "ok")))
	if !s.Newest.IsZero() {
		sm.indexLag.Record(ctx, time.Since(s.Newest).Seconds())
	}
}

func (sm *serveMetrics) catchUpFailed() {
	sm.indexCatchups.Add(context.Background(), 1, metric.WithAttributes(attribute.String("runlog.outcome", "error")))
}

// request records an API request.
func (sm *serveMetrics) request(command string, code int, took time.Duration) {
	ctx := context.Background()
	sm.requests.Add(ctx, 1, metric.WithAttributes(attribute.String("runlog.command", command), attribute.String("http.status", strconv.Itoa(code))))
	sm.reqDuration.Record(ctx, took.Seconds(), metric.WithAttributes(attribute.String("runlog.command", command)))
}

func (sm *serveMetrics) handler() http.Handler {
	return promhttp.HandlerFor(sm.registry, promhttp.HandlerOpts{})
}

func (sm *serveMetrics) close() { _ = sm.mp.Shutdown(context.Background()) }
