// Package lifecycle holds runlog's deciders: [Store.PrepareRun] (Sayiir's
// prepare_run with its conflict policies) and the store operations, each a
// decision made on an instance's projection and appended to the event [Log]
// as one commit with an optimistic sequence check.
//
// Every write follows one loop: read the instance's history (from the
// sequence already folded), fold it into a [projection.State], decide, and
// append the decision's events expecting the last sequence the decision was
// made on. If anything was appended since, the log refuses the append
// ([ErrWrongSequence]) and the store decides again on fresh state, at most
// Config.MaxAttempts times, then returns [*ConcurrentModificationError].
// Two concurrent runs of one id can therefore never both be created, and a
// writer acting on stale state can never overwrite a newer one.
//
// Errors. Decisions that refuse return typed errors matching one sentinel
// each: [ErrInvalidInstanceID], [ErrInvalidRequest], [ErrAlreadyExists]
// ([*AlreadyExistsError]), [ErrDefinitionMismatch]
// ([*DefinitionMismatchError]) and [ErrConcurrentModification]
// ([*ConcurrentModificationError]). A refused request writes nothing. Log
// failures are wrapped with context and never translated into a domain
// sentinel, so the backend's own errors stay reachable with [errors.As].
// A history that cannot be decoded or folded yields errors matching
// [events.ErrCorrupt] or [projection.ErrInvalidHistory] naming the
// sequence, and the store refuses to build on it.
//
// A [Store] is safe for concurrent use. The [Log] it writes to is defined
// here; the JetStream implementation is package jetstream, the in-memory
// one package memlog, and lifecycle/logtest is the conformance suite both
// pass.
package lifecycle
