package cluster

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/runlog/runlog/audit"
	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/projection"
)

// figures sums up the ledger after a verification.
type figures struct {
	attempts       int // PrepareRun calls on pool ids
	created        int // ... acknowledged Created
	alreadyExists  int // ... refused with ErrAlreadyExists
	raceUnknown    int // ... with an unknown outcome
	raceOther      int // ... refused otherwise (ErrConcurrentModification)
	raceUnknownWon int // ... of which the history shows that call's run (only one candidate)
	contended      int // pool ids asked by more than one client
	checkpoints    int // acknowledged checkpoints
	signals        int // acknowledged signals
	refusedWrites  int // checkpoints and signals refused (stale after an unknown outcome, or concurrent modification)
	cmWrites       int // ... of which ErrConcurrentModification
	unknownWrites  int // checkpoints and signals with an unknown outcome
	unknownLanded  int // ... of which the commit is in the history
	lost           int // acknowledged but missing: must be 0
	instances      int
	messages       int
}

// acked returns the decisions acknowledged.
func (f figures) acked() int { return f.created + f.checkpoints + f.signals }

// String sums the figures up in one line.
func (f figures) String() string {
	return fmt.Sprintf("%d decisions acknowledged (%d creations, %d checkpoints, %d signals), %d lost; "+
		"%d PrepareRun(Fail) calls on %d pool ids (%d ids raced by several clients): %d Created, %d ErrAlreadyExists, %d other refusals, %d unknown outcomes; "+
		"%d checkpoints and signals refused (%d with ErrConcurrentModification), %d writes of unknown outcome (%d landed); %d instances, %d commits",
		f.acked(), f.created, f.checkpoints, f.signals, f.lost,
		f.attempts, f.instances, f.contended, f.created, f.alreadyExists, f.raceOther, f.raceUnknown,
		f.refusedWrites, f.cmWrites, f.unknownWrites, f.unknownLanded, f.instances, f.messages)
}

// messages iterates over msgs, as a Log's Read does.
func messages(msgs []events.Message) iter.Seq2[events.Message, error] {
	return func(yield func(events.Message, error) bool) {
		for _, m := range msgs {
			if !yield(m, nil) {
				return
			}
		}
	}
}

// history is what verification reads of one instance.
type history struct {
	creates []commitRef // snapshot.created events, in order
	tokens  map[string]uint64
	msgs    int
}

// commitRef is a snapshot.created event: its sequence and run.
type commitRef struct {
	seq uint64
	run string
}

// verifyNode checks the ledger against what the store reads (on a
// connection to one node, direct gets are answered by that node's
// replica): every acknowledged decision is there, at the sequence and
// with the run it was acknowledged with; no pool id was created twice, in
// the history or to the callers; every instance folds; ListInstances
// lists exactly the instances with a history; audit.Verify is clean. It
// reports problems through errorf and returns the figures.
func verifyNode(ctx context.Context, errorf func(format string, args ...any), js *jetstream.Log, led *ledger) (figures, error) {
	led.mu.RLock()
	defer led.mu.RUnlock()
	var f figures
	hists := make(map[string]*history)
	read := func(id string) (*history, error) {
		if h, ok := hists[id]; ok {
			return h, nil
		}
		h := &history{tokens: make(map[string]uint64)}
		var msgs []events.Message
		for m, err := range js.Read(ctx, id, 0) {
			if err != nil {
				return nil, err
			}
			h.msgs++
			msgs = append(msgs, m)
			rec, err := events.Decode(m, id)
			if err != nil {
				errorf("instance %q: %v", id, err)
				continue
			}
			for _, e := range rec.Commit.Events {
				switch d := e.Data.(type) {
				case *events.SnapshotCreatedData:
					h.creates = append(h.creates, commitRef{seq: rec.Seq, run: e.Run.String()})
				case *events.SignalStoredData:
					h.tokens[d.Reason] = rec.Seq
				case *events.CheckpointSavedData:
					for _, o := range d.Completed {
						h.tokens[string(o.Output)] = rec.Seq
					}
				}
			}
		}
		if h.msgs > 0 {
			if _, err := projection.Fold(id, messages(msgs)); err != nil {
				errorf("instance %q does not fold: %v", id, err)
			}
		}
		hists[id] = h
		return h, nil
	}

	withHistory := make(map[string]bool)
	for _, id := range slices.Sorted(maps.Keys(led.attempts)) {
		as := led.attempts[id]
		h, err := read(id)
		if err != nil {
			return f, err
		}
		if h.msgs > 0 {
			withHistory[id] = true
			f.messages += h.msgs
		}
		clients := make(map[int]bool)
		var winners []attempt
		var unknowns []attempt
		refusedExists := false
		for _, a := range as {
			f.attempts++
			clients[a.client] = true
			switch {
			case a.outcome == acked && a.created:
				f.created++
				winners = append(winners, a)
			case a.outcome == refused:
				if isAlreadyExists(a.err) {
					f.alreadyExists++
					refusedExists = true
				} else {
					f.raceOther++
				}
			case a.outcome == unknown:
				f.raceUnknown++
				unknowns = append(unknowns, a)
			}
		}
		if len(clients) > 1 {
			f.contended++
		}
		switch {
		case len(h.creates) > 1:
			errorf("pool id %q: created %d times under Fail (runs at seqs %v)", id, len(h.creates), h.creates)
		case len(winners) == 1 && len(h.creates) == 0:
			f.lost++
			errorf("LOST: pool id %q: client %d was told Created (run %s, seq %d) but the history has no snapshot.created", id, winners[0].client, winners[0].run, winners[0].seq)
		case len(winners) == 1 && (h.creates[0].run != winners[0].run || h.creates[0].seq != winners[0].seq):
			errorf("pool id %q: client %d was told Created run %s at seq %d, the history created run %s at seq %d",
				id, winners[0].client, winners[0].run, winners[0].seq, h.creates[0].run, h.creates[0].seq)
		case refusedExists && len(h.creates) == 0:
			errorf("pool id %q: a client was refused with ErrAlreadyExists, but the id was never created", id)
		case len(winners) == 0 && len(h.creates) == 1:
			// Created by a call whose outcome was unknown.
			if len(unknowns) == 0 {
				errorf("pool id %q: created at seq %d by no call of the ledger", id, h.creates[0].seq)
			}
			f.raceUnknownWon++
		}
	}

	for _, w := range led.writes {
		h, err := read(w.id)
		if err != nil {
			return f, err
		}
		seq, landed := h.tokens[w.token]
		switch w.outcome {
		case acked:
			if w.kind == "checkpoint" {
				f.checkpoints++
			} else {
				f.signals++
			}
			switch {
			case !landed:
				f.lost++
				errorf("LOST: %s %s on %q was acknowledged (seq %d) but the history has no commit of it", w.kind, w.token, w.id, w.seq)
			case w.seq != 0 && w.seq != seq:
				errorf("%s %s on %q was acknowledged at seq %d, the history has it at seq %d", w.kind, w.token, w.id, w.seq, seq)
			}
		case refused:
			f.refusedWrites++
			if errors.Is(w.err, lifecycle.ErrConcurrentModification) {
				f.cmWrites++
			}
			if landed {
				errorf("%s %s on %q was refused (%v), yet the history has it at seq %d", w.kind, w.token, w.id, w.err, seq)
			}
		case unknown:
			f.unknownWrites++
			if landed {
				f.unknownLanded++
			}
		}
	}
	f.instances = len(withHistory)

	fresh, err := lifecycle.New(js, lifecycle.Config{CacheSize: -1})
	if err != nil {
		return f, err
	}
	var listed []string
	for after := ""; ; {
		page, err := fresh.ListInstances(ctx, after, 500)
		if err != nil {
			return f, err
		}
		if len(page) == 0 {
			break
		}
		listed = append(listed, page...)
		after = page[len(page)-1]
	}
	if want := slices.Sorted(maps.Keys(withHistory)); !slices.Equal(listed, want) {
		errorf("ListInstances lists %d instances, the ledger has %d with a history", len(listed), len(want))
	}
	rep, err := audit.Verify(ctx, js, audit.VerifyOptions{})
	if err != nil {
		return f, err
	}
	for _, p := range rep.Problems {
		errorf("audit.Verify: %v", p)
	}
	if rep.Instances != len(withHistory) {
		errorf("audit.Verify verified %d instances, want %d", rep.Instances, len(withHistory))
	}
	// A digest of each partition's replicated stream (read through the
	// leader) covers its instances, together every instance, and the log
	// holds what each committed to.
	digested := 0
	for p := range js.Partitions() {
		view, err := js.Partition(p)
		if err != nil {
			return f, err
		}
		d, err := audit.MakeDigest(ctx, view, audit.DigestOptions{})
		if err != nil {
			return f, fmt.Errorf("digest of %s: %w", view.Streams()[p], err)
		}
		digested += d.Instances
		drep, err := audit.VerifyDigest(ctx, view, "", d)
		if err != nil {
			return f, fmt.Errorf("verify against the digest of %s: %w", d.Stream, err)
		}
		for _, p := range drep.Problems {
			errorf("audit.VerifyDigest: %v", p)
		}
	}
	if digested != len(withHistory) {
		errorf("the digests list %d instances, want %d", digested, len(withHistory))
	}
	return f, nil
}

// checkCallers checks what the callers were told, whatever the history
// says: at most one client was told Created for a pool id, and every
// other PrepareRun under Fail of a pool id ended in ErrAlreadyExists or
// an unknown outcome (a node went away). One write wins per id, so a
// loser must see it and be refused with ErrAlreadyExists: a conflict on
// a replicated stream (10164: the winner's write is still in flight) is
// to be decided again until that write is visible, not counted as one
// more lost race until ErrConcurrentModification.
func checkCallers(t *testing.T, led *ledger) {
	t.Helper()
	led.mu.Lock()
	defer led.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(led.attempts)) {
		var winners []int
		for _, a := range led.attempts[id] {
			switch {
			case a.outcome == acked && a.created:
				winners = append(winners, a.client)
			case a.outcome == acked:
				t.Errorf("pool id %q: client %d's PrepareRun under Fail succeeded without creating", id, a.client)
			case a.outcome == refused && !isAlreadyExists(a.err):
				t.Errorf("pool id %q: client %d's PrepareRun under Fail failed with %v after %s, want Created or ErrAlreadyExists", id, a.client, a.err, a.trace)
			}
		}
		if len(winners) > 1 {
			t.Errorf("pool id %q: clients %v were all told Created", id, winners)
		}
	}
}

// collector gathers problems so that a verification can be retried while
// replicas catch up, and reported once.
type collector struct{ problems []string }

// errorf records a problem.
func (c *collector) errorf(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// verifyEveryNode runs verifyNode on a connection to each node, the
// nodes side by side, and returns the figures of the first node. A
// replica may lag its leader for a moment after the load stops, so a node
// whose verification finds problems is verified again, up to
// verifyAttempts times, and only its last verification's problems are
// reported.
func verifyEveryNode(t *testing.T, c *cluster, stream string, led *ledger) figures {
	t.Helper()
	figs := make([]figures, len(c.nodes))
	problems := make([][]string, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Go(func() { figs[i], problems[i] = verifyOnNode(t, n, stream, led) })
	}
	wg.Wait()
	for i, n := range c.nodes {
		for _, p := range problems[i] {
			t.Errorf("node %s: %s", n.name, p)
		}
	}
	return figs[0]
}

// verifyOnNode runs verifyNode on a connection to n, again while it finds
// problems (up to verifyAttempts times), and returns the figures and the
// problems of the last run.
func verifyOnNode(t *testing.T, n *node, stream string, led *ledger) (figures, []string) {
	began := time.Now()
	var js *jetstream.Log
	err := poll(t.Context(), electionWait, func(ctx context.Context) error {
		var err error
		js, err = jetstream.Connect(ctx, n.url(), jetstream.ConnectConfig{Name: "runlog-cluster-verify-" + n.name},
			jetstream.Config{Stream: stream, Replicas: 3, NoCreate: true, Logger: quietLogger(t)})
		return err
	})
	if err != nil {
		return figures{}, []string{fmt.Sprintf("connect to verify: %v", err)}
	}
	defer func() { _ = js.Close() }()
	var f figures
	var col collector
	for attempt := 1; ; attempt++ {
		col = collector{}
		f, err = verifyNode(t.Context(), col.errorf, js, led)
		if err != nil {
			col.errorf("reading from node %s: %v", n.name, err)
		}
		if len(col.problems) == 0 || attempt == verifyAttempts {
			break
		}
		t.Logf("node %s: verification attempt %d found %d problems (first: %s); verifying again", n.name, attempt, len(col.problems), col.problems[0])
		sleep(t.Context(), verifyRetryWait)
	}
	t.Logf("node %s: verified in %v, %d problems", n.name, time.Since(began).Round(time.Millisecond), len(col.problems))
	return f, col.problems
}

// isAlreadyExists reports whether err is lifecycle's AlreadyExistsError.
func isAlreadyExists(err error) bool {
	_, ok := errors.AsType[*lifecycle.AlreadyExistsError](err)
	return ok
}
