// Package faultlog wraps a lifecycle.Log and injects faults into its
// appends, for tests of the paths real logs take only under failure: an
// append that fails, one that lands but whose acknowledgement is lost, and
// a conflict reported for an append that in fact landed.
package faultlog

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
)

// Fault is what happens to one append.
type Fault int

const (
	None          Fault = iota // pass through
	Fail                       // fail without appending
	LoseAck                    // append, then return ErrLostAck
	FalseConflict              // append, then report ErrWrongSequence
	Conflict                   // do not append; report ErrWrongSequence
)

// ErrInjected is returned by appends failed with [Fail].
var ErrInjected = errors.New("faultlog: injected failure")

// ErrLostAck is returned by appends that landed under [LoseAck].
var ErrLostAck = errors.New("faultlog: acknowledgement lost")

// Log injects a scripted fault into each append, in order; appends past
// the script pass through. It is safe for concurrent use.
type Log struct {
	lifecycle.Log
	mu      sync.Mutex
	script  []Fault
	appends int
	reads   int
}

// Reads returns the number of Read calls so far.
func (f *Log) Reads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// New wraps l with the given script.
func New(l lifecycle.Log, script ...Fault) *Log { return &Log{Log: l, script: script} }

// Appends returns the number of Append calls so far.
func (f *Log) Appends() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.appends
}

// Read passes through, counting.
func (f *Log) Read(ctx context.Context, instance string, after uint64) iter.Seq2[events.Message, error] {
	f.mu.Lock()
	f.reads++
	f.mu.Unlock()
	return f.Log.Read(ctx, instance, after)
}

// Append applies the next scripted fault.
func (f *Log) Append(ctx context.Context, instance string, msg events.Message, expect uint64) (uint64, error) {
	f.mu.Lock()
	fault := None
	if f.appends < len(f.script) {
		fault = f.script[f.appends]
	}
	f.appends++
	f.mu.Unlock()
	switch fault {
	case Fail:
		return 0, ErrInjected
	case Conflict:
		return 0, fmt.Errorf("faultlog: %w (injected)", lifecycle.ErrWrongSequence)
	}
	seq, err := f.Log.Append(ctx, instance, msg, expect)
	if err != nil {
		return seq, err
	}
	switch fault {
	case LoseAck:
		return 0, ErrLostAck
	case FalseConflict:
		return 0, fmt.Errorf("faultlog: %w (injected after the append landed)", lifecycle.ErrWrongSequence)
	}
	return seq, nil
}
