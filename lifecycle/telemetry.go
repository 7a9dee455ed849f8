package lifecycle

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/runlog/runlog/events"
)

// OpenTelemetry (docs/INTEGRATION.md lists every span and metric).
//
// The providers come from Config and only from there: runlog never reads
// or sets the global ones. With neither set, nothing is measured and
// nothing is allocated for it; the run's trace parent is still carried
// on its commits.

// InstrumentationName is the name of runlog's tracer and meter.
const InstrumentationName = "github.com/runlog/runlog"

// HeaderTraceParent is the header of a commit message that carries the
// W3C trace context of the operation that wrote it (with telemetry on),
// else the run's own trace parent: a consumer of the log continues the
// trace from it (jetstream.Delivery.TraceParent).
const HeaderTraceParent = "traceparent"

// Span and attribute names.
const (
	attrInstance  = attribute.Key("runlog.instance")
	attrCommand   = attribute.Key("runlog.operation")
	attrOutcome   = attribute.Key("runlog.outcome")
	attrAttempts  = attribute.Key("runlog.attempts")
	attrConflicts = attribute.Key("runlog.conflicts")
	attrSeq       = attribute.Key("runlog.seq")
	attrCommits   = attribute.Key("runlog.commits")
	attrResult    = attribute.Key("runlog.result")
)

// Outcomes of an operation (the runlog.outcome attribute).
const (
	OutcomeOK        = "ok"        // decided and written (or nothing to write)
	OutcomeRefused   = "refused"   // the state says no (a refusal error: not found, stale, terminal, claim lost, ...)
	OutcomeExhausted = "exhausted" // conflicts every attempt (ErrConcurrentModification)
	OutcomeCancelled = "cancelled" // the context ended
	OutcomeError     = "error"     // the log failed
)

type telemetry struct {
	on     bool
	tracer trace.Tracer

	decisions      metric.Int64Counter
	conflicts      metric.Int64Counter
	opDuration     metric.Float64Histogram
	appendDuration metric.Float64Histogram
	readDuration   metric.Float64Histogram
	cache          metric.Int64Counter
	claimsLost     metric.Int64Counter

	// sets caches the attribute sets of measurements (by operation and
	// outcome, or by result): built once, not on every operation.
	sets sync.Map // string → metric.MeasurementOption
}

// attrs returns the measurement option of the attributes kvs, cached
// under key.
func (t *telemetry) attrs(key string, kvs ...attribute.KeyValue) metric.MeasurementOption {
	if v, ok := t.sets.Load(key); ok {
		return v.(metric.MeasurementOption)
	}
	o := metric.WithAttributeSet(attribute.NewSet(kvs...))
	t.sets.Store(key, o)
	return o
}

func newTelemetry(tp trace.TracerProvider, mp metric.MeterProvider) (*telemetry, error) {
	t := &telemetry{}
	if tp == nil && mp == nil {
		return t, nil
	}
	t.on = true
	if tp != nil {
		t.tracer = tp.Tracer(InstrumentationName)
	}
	if mp == nil {
		return t, nil
	}
	m := mp.Meter(InstrumentationName)
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
		errs = append(errs, err)
		return h
	}
	t.decisions = counter("runlog.decisions", "{decision}", "store operations, by operation and outcome")
	t.conflicts = counter("runlog.conflicts", "{conflict}", "appends refused by the sequence check and decided again, by operation")
	t.cache = counter("runlog.cache.lookups", "{lookup}", "projection cache lookups of the store operations, by result (hit, miss)")
	t.claimsLost = counter("runlog.claims.lost", "{claim}", "operations refused with ErrClaimLost, by operation")
	t.opDuration = histogram("runlog.operation.duration", "duration of a store operation, by operation and outcome")
	t.appendDuration = histogram("runlog.append.duration", "duration of an append to the log")
	t.readDuration = histogram("runlog.read.duration", "duration of a catch-up read of an instance's history")
	return t, errors.Join(errs...)
}

// op is one store operation being measured.
type op struct {
	t       *telemetry
	span    trace.Span
	began   time.Time
	command string
}

// startOp starts the span of an operation: a child of ctx's span, or else
// of the run's trace parent when one is known.
func (t *telemetry) startOp(ctx context.Context, command, instance, runTrace string) (context.Context, *op) {
	if !t.on {
		return ctx, nil
	}
	o := &op{t: t, began: time.Now(), command: command}
	if t.tracer != nil {
		if !trace.SpanContextFromContext(ctx).IsValid() && runTrace != "" {
			ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{HeaderTraceParent: runTrace})
		}
		ctx, o.span = t.tracer.Start(ctx, "runlog "+command, trace.WithSpanKind(trace.SpanKindInternal))
		if o.span.IsRecording() { // attributes only where they are kept
			o.span.SetAttributes(attrInstance.String(instance), attrCommand.String(command))
		} else {
			o.span = nil
		}
	}
	return ctx, o
}

// conflict records one refused append that is decided again.
func (o *op) conflict(ctx context.Context, seq uint64, attempt int) {
	if o == nil {
		return
	}
	if o.span != nil {
		o.span.AddEvent("runlog.conflict", trace.WithAttributes(attrSeq.Int64(int64(seq)), attrAttempts.Int(attempt)))
	}
	if o.t.conflicts != nil {
		o.t.conflicts.Add(ctx, 1, o.t.attrs(o.command, attrCommand.String(o.command)))
	}
}

// cacheLookup records whether the operation found the instance cached.
func (o *op) cacheLookup(ctx context.Context, hit bool) {
	if o == nil || o.t.cache == nil {
		return
	}
	r := "miss"
	if hit {
		r = "hit"
	}
	o.t.cache.Add(ctx, 1, o.t.attrs("cache "+r, attrResult.String(r)))
}

// end ends the operation with its error, attempts and conflicts.
func (o *op) end(ctx context.Context, err error, attempts, conflicts int) {
	if o == nil {
		return
	}
	outcome := outcomeOf(err)
	if o.span != nil {
		o.span.SetAttributes(attrOutcome.String(outcome), attrAttempts.Int(attempts), attrConflicts.Int(conflicts))
		if outcome != OutcomeOK && outcome != OutcomeRefused {
			o.span.RecordError(err)
			o.span.SetStatus(codes.Error, err.Error())
		}
		o.span.End()
	}
	if o.t.decisions != nil {
		attrs := o.t.attrs(o.command+" "+outcome, attrCommand.String(o.command), attrOutcome.String(outcome))
		o.t.decisions.Add(ctx, 1, attrs)
		o.t.opDuration.Record(ctx, time.Since(o.began).Seconds(), attrs)
		if errors.Is(err, ErrClaimLost) {
			o.t.claimsLost.Add(ctx, 1, o.t.attrs(o.command, attrCommand.String(o.command)))
		}
	}
}

func outcomeOf(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrConcurrentModification):
		return OutcomeExhausted
	case isDomain(err):
		return OutcomeRefused
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCancelled
	}
	return OutcomeError
}

// step measures one append or read inside an operation: a child span and
// a duration.
func (t *telemetry) step(ctx context.Context, name, instance string) (context.Context, func(err error, attrs ...attribute.KeyValue)) {
	if !t.on {
		return ctx, func(error, ...attribute.KeyValue) {}
	}
	began := time.Now()
	var span trace.Span
	if t.tracer != nil {
		ctx, span = t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
		if span.IsRecording() {
			span.SetAttributes(attrInstance.String(instance))
		} else {
			span = nil
		}
	}
	h := t.readDuration
	if name == spanAppend {
		h = t.appendDuration
	}
	return ctx, func(err error, attrs ...attribute.KeyValue) {
		if h != nil {
			h.Record(ctx, time.Since(began).Seconds())
		}
		if span != nil {
			span.SetAttributes(attrs...)
			if err != nil && !errors.Is(err, ErrWrongSequence) {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}
	}
}

const (
	spanAppend = "runlog append"
	spanRead   = "runlog read"
)

// traceHeader returns the trace context a commit carries: the current
// span's, or else the run's trace parent (as the commit leaves it).
func traceHeader(ctx context.Context, c *events.Commit, runTrace string) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		carrier := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(ctx, carrier)
		if v := carrier[HeaderTraceParent]; v != "" {
			return v
		}
	}
	for _, e := range c.Events {
		switch d := e.Data.(type) {
		case *events.SnapshotCreatedData:
			runTrace = d.TraceParent
		case *events.CheckpointSavedData:
			if d.TraceParent != nil {
				runTrace = *d.TraceParent
			}
		}
	}
	return runTrace
}
