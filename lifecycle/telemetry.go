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

	// The attribute sets of measurements and the span names, by
	// operation (and outcome), built once rather than on every
	// operation: the instrumentation allocates as little as it can.
	mu        sync.RWMutex
	opts      map[opKey]measureOpts
	spanNames map[string]string
	cacheHit  measureOpts
	cacheMiss measureOpts

	opStart, stepStart []trace.SpanStartOption
}

// opKey keys the attribute sets of an operation's measurements; outcome
// is "" for those without one.
type opKey struct{ command, outcome string }

// measureOpts is one attribute set as the options of a measurement, in
// slices of their own so that a measurement passes them without
// allocating.
type measureOpts struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

func newMeasureOpts(kvs ...attribute.KeyValue) measureOpts {
	o := metric.WithAttributeSet(attribute.NewSet(kvs...))
	return measureOpts{add: []metric.AddOption{o}, record: []metric.RecordOption{o}}
}

// attrs returns the measurement options of an operation (and outcome).
func (t *telemetry) attrs(command, outcome string) measureOpts {
	k := opKey{command, outcome}
	t.mu.RLock()
	o, ok := t.opts[k]
	t.mu.RUnlock()
	if ok {
		return o
	}
	if outcome == "" {
		o = newMeasureOpts(attrCommand.String(command))
	} else {
		o = newMeasureOpts(attrCommand.String(command), attrOutcome.String(outcome))
	}
	t.mu.Lock()
	t.opts[k] = o
	t.mu.Unlock()
	return o
}

// spanName returns the span name of an operation.
func (t *telemetry) spanName(command string) string {
	t.mu.RLock()
	n, ok := t.spanNames[command]
	t.mu.RUnlock()
	if ok {
		return n
	}
	n = "runlog " + command
	t.mu.Lock()
	t.spanNames[command] = n
	t.mu.Unlock()
	return n
}

func newTelemetry(tp trace.TracerProvider, mp metric.MeterProvider) (*telemetry, error) {
	t := &telemetry{}
	if tp == nil && mp == nil {
		return t, nil
	}
	t.on = true
	t.opts, t.spanNames = map[opKey]measureOpts{}, map[string]string{}
	t.cacheHit, t.cacheMiss = newMeasureOpts(attrResult.String("hit")), newMeasureOpts(attrResult.String("miss"))
	t.opStart = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
	t.stepStart = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
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

// op is one store operation being measured; its zero value (telemetry
// off) measures nothing.
type op struct {
	t       *telemetry
	span    trace.Span
	began   time.Time
	command string
}

// startOp starts the span of an operation: a child of ctx's span, or else
// of the run's trace parent when one is known.
func (t *telemetry) startOp(ctx context.Context, command, instance, runTrace string) (context.Context, op) {
	if !t.on {
		return ctx, op{}
	}
	o := op{t: t, began: time.Now(), command: command}
	if t.tracer != nil {
		if !trace.SpanContextFromContext(ctx).IsValid() && runTrace != "" {
			ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{HeaderTraceParent: runTrace})
		}
		ctx, o.span = t.tracer.Start(ctx, t.spanName(command), t.opStart...)
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
	if o.t == nil {
		return
	}
	if o.span != nil {
		o.span.AddEvent("runlog.conflict", trace.WithAttributes(attrSeq.Int64(int64(seq)), attrAttempts.Int(attempt)))
	}
	if o.t.conflicts != nil {
		o.t.conflicts.Add(ctx, 1, o.t.attrs(o.command, "").add...)
	}
}

// cacheLookup records whether the operation found the instance cached.
func (o *op) cacheLookup(ctx context.Context, hit bool) {
	if o.t == nil || o.t.cache == nil {
		return
	}
	opts := o.t.cacheMiss
	if hit {
		opts = o.t.cacheHit
	}
	o.t.cache.Add(ctx, 1, opts.add...)
}

// end ends the operation with its error, attempts and conflicts.
func (o *op) end(ctx context.Context, err error, attempts, conflicts int) {
	if o.t == nil {
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
		opts := o.t.attrs(o.command, outcome)
		o.t.decisions.Add(ctx, 1, opts.add...)
		o.t.opDuration.Record(ctx, time.Since(o.began).Seconds(), opts.record...)
		if errors.Is(err, ErrClaimLost) {
			o.t.claimsLost.Add(ctx, 1, o.t.attrs(o.command, "").add...)
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
// a duration. Its zero value (telemetry off) measures nothing.
type step struct {
	ctx   context.Context
	h     metric.Float64Histogram
	span  trace.Span
	began time.Time
}

// step starts measuring an append or a read.
func (t *telemetry) step(ctx context.Context, name, instance string) (context.Context, step) {
	if !t.on {
		return ctx, step{}
	}
	st := step{began: time.Now(), h: t.readDuration}
	if name == spanAppend {
		st.h = t.appendDuration
	}
	if t.tracer != nil {
		ctx, st.span = t.tracer.Start(ctx, name, t.stepStart...)
		if st.span.IsRecording() {
			st.span.SetAttributes(attrInstance.String(instance))
		} else {
			st.span = nil
		}
	}
	st.ctx = ctx
	return ctx, st
}

// end ends the step with its error, the sequence it reached and, for a
// read, the commits it folded (-1: not a read).
func (st *step) end(err error, seq uint64, commits int) {
	if st.ctx == nil {
		return
	}
	if st.h != nil {
		st.h.Record(st.ctx, time.Since(st.began).Seconds())
	}
	if st.span != nil {
		if commits >= 0 {
			st.span.SetAttributes(attrCommits.Int(commits))
		}
		st.span.SetAttributes(attrSeq.Int64(int64(seq)))
		if err != nil && !errors.Is(err, ErrWrongSequence) {
			st.span.RecordError(err)
			st.span.SetStatus(codes.Error, err.Error())
		}
		st.span.End()
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
