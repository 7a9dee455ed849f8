package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

func defineDemo(fs *flag.FlagSet, o *opts) {
	definePartitions(fs, o)
	fs.IntVar(&o.workers, "workers", 0, "also run 2×`N` fulfilment workflows on a reference worker pool of N workers (claims, retries, a durable timer; real time); 0: none")
	fs.Func("seed", "make instance ids and event ids deterministic from `N` (ids end in -sN; a seed can be used once per store)", func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("want a non-negative integer")
		}
		o.seed, o.seedSet = n, true
		return nil
	})
}

// demoStep is one line of the demo's report.
type demoStep struct {
	Step     int    `json:"step"`
	Instance string `json:"instance"`
	Action   string `json:"action"`
	Result   string `json:"result"`
}

// demo seeds a store with realistic lifecycles through lifecycle.Store.
type demo struct {
	e      *env
	ls     *lifecycle.Store
	clock  func() time.Time
	suffix string
	steps  []demoStep
	// The sequences before and after the commit that consumed the
	// external event, for the diff the demo suggests.
	consumeFrom, consumeTo uint64
	emit                   func(demoStep) error
}

// The demo's workflow definitions and tasks.
var (
	defOrderV1 = workflow.DefinitionHashOf("order-pipeline v1")
	defOrderV2 = workflow.DefinitionHashOf("order-pipeline v2")
	defPayment = workflow.DefinitionHashOf("payment v3")
	defETL     = workflow.DefinitionHashOf("nightly-etl v7")
	defPO      = workflow.DefinitionHashOf("purchase-order v2")
	defCart    = workflow.DefinitionHashOf("cart v1")
	defRefund  = workflow.DefinitionHashOf("refund v1")
)

func task(name string) workflow.TaskID { return workflow.NewTaskID(name) }

func runDemo(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("demo takes no arguments, got %q", args[0])
	}
	st, err := e.open(ctx, true)
	if err != nil {
		return err
	}
	defer st.close()

	d := &demo{e: e, clock: func() time.Time { return time.Now().UTC() }}
	cfg := lifecycle.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if !e.clock.IsZero() {
		// A fixed clock for reproducible output: every reading is one
		// second after the previous one.
		var mu sync.Mutex
		t := e.clock
		d.clock = func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			t = t.Add(time.Second)
			return t
		}
	}
	cfg.Now = d.clock
	if e.o.seedSet {
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], uint64(e.o.seed))
		cfg.Entropy = rand.NewChaCha8(seed)
		d.suffix = "s" + strconv.FormatInt(e.o.seed, 10)
	}
	// The demo's definitions go into the store's definition catalog, so
	// that every run of them reads by name: registered first by a store
	// of their own, so that the seeded clock and ids of the demo's
	// timeline stay as they were (its PrepareRuns find them registered).
	if cfg.Catalog, err = st.Log.Catalog(ctx); err != nil {
		return err
	}
	reg := lifecycle.Config{Catalog: cfg.Catalog}
	if !e.clock.IsZero() {
		reg.Now = func() time.Time { return e.clock } // --now: the registrations' times too
	}
	if e.o.seedSet {
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], uint64(e.o.seed))
		seed[31] = 1 // not the timeline's ids
		reg.Entropy = rand.NewChaCha8(seed)
	}
	if err := registerDemoDefinitions(ctx, st.Log, reg); err != nil {
		return err
	}
	d.ls, err = lifecycle.New(st.Log, cfg)
	if err != nil {
		return err
	}
	if d.suffix == "" {
		if d.suffix, err = d.freshSuffix(ctx); err != nil {
			return err
		}
	} else if used, err := d.used(ctx, "order-"+d.suffix+"-1"); err != nil {
		return err
	} else if used {
		return fmt.Errorf("the demo with --seed %d already ran on %s (instance %q exists): use another --seed, or run without --seed for fresh ids",
			e.o.seed, e.source(), "order-"+d.suffix+"-1")
	}

	var em *emitter
	switch e.output {
	case outText:
		fmt.Fprintf(e.stdout, "Seeding %s with demo lifecycles (ids end in -%s):\n\n", e.source(), d.suffix)
		d.emit = func(s demoStep) error {
			_, err := fmt.Fprintf(e.stdout, "%3d  %-17s %-44s %s\n", s.Step, s.Instance, s.Action, s.Result)
			return err
		}
	default:
		em = newEmitter(e.stdout, e.output)
		d.emit = func(s demoStep) error { em.add(s); return nil }
	}
	if e.o.workers < 0 || e.o.workers > 32 {
		return usagef("--workers %d: want 0 to 32", e.o.workers)
	}
	err = d.run(ctx)
	if err == nil && e.o.workers > 0 {
		err = d.runPool(ctx, st.Log, e.o.workers)
	}
	if err != nil {
		if em != nil {
			_ = em.close()
		}
		return fmt.Errorf("demo: %w", err)
	}
	if em != nil {
		return em.close()
	}
	x := d.suffix
	fmt.Fprintf(e.stdout, "\nTry next:\n")
	at := e.storeArgs() // the flags the demo was run with, so that the hints find the same store
	lines := [][2]string{
		{"replay list" + at, ""},
		{"replay show order-" + x + "-4" + at, "TerminateExisting: deleted, 2 signals cleared, created, in one commit"},
		{"replay show payment-" + x + " --detailed" + at, "the cancel, event by event, with payloads"},
		{"replay state etl-" + x + at, "paused, unpaused, in progress"},
		{fmt.Sprintf("replay diff po-%s --from %d --to %d%s", x, d.consumeFrom, d.consumeTo, at), "what consuming the event and advancing changed"},
		{"replay verify" + at, ""},
	}
	if e.o.workers > 0 {
		lines = append(lines[:len(lines)-1], [2]string{"replay show fulfil-" + x + "-1" + at, "claims, a retry, a timer: which worker ran what"}, lines[len(lines)-1])
	}
	w := 0
	for _, l := range lines {
		w = max(w, len(l[0]))
	}
	for _, l := range lines {
		if l[1] == "" {
			fmt.Fprintf(e.stdout, "  %s\n", l[0])
		} else {
			fmt.Fprintf(e.stdout, "  %-*s   %s\n", w, l[0], l[1])
		}
	}
	return nil
}

// freshSuffix returns a short suffix from the clock that no instance of a
// previous run uses.
func (d *demo) freshSuffix(ctx context.Context) (string, error) {
	ms := d.clock().UnixMilli()
	for i := range int64(100) {
		s := strconv.FormatInt((ms+i)%(36*36*36*36*36), 36)
		used, err := d.used(ctx, "order-"+s+"-1")
		if err != nil {
			return "", err
		}
		if !used {
			return s, nil
		}
	}
	return "", errors.New("no free instance id suffix: pass --seed N or a fresh --dir")
}

func (d *demo) used(ctx context.Context, id string) (bool, error) {
	s, err := d.ls.Load(ctx, id)
	if err != nil {
		return false, err
	}
	return s.Commits > 0, nil
}

func (d *demo) step(instance, action, format string, args ...any) error {
	s := demoStep{Step: len(d.steps) + 1, Instance: instance, Action: action, Result: fmt.Sprintf(format, args...)}
	d.steps = append(d.steps, s)
	return d.emit(s)
}

func (d *demo) id(prefix string) string { return prefix + "-" + d.suffix }

// as returns ctx with an actor recorded on the commits written with it.
func as(ctx context.Context, actor string) context.Context { return lifecycle.WithActor(ctx, actor) }

// runTasks checkpoints each task of a run in turn (output, then the
// position of the next task), starting from snap at rev. It returns the
// snapshot and revision after the last task.
func (d *demo) runTasks(ctx context.Context, snap *workflow.Snapshot, rev lifecycle.Revision, names []string, next string) (*workflow.Snapshot, lifecycle.Revision, error) {
	var err error
	for i, name := range names {
		now := d.clock()
		snap.MarkTaskCompleted(task(name), fmt.Appendf(nil, `{"task":%q,"ok":true}`, name), now)
		switch {
		case i+1 < len(names):
			snap.UpdatePosition(workflow.AtTaskPosition(task(names[i+1])), now)
		case next != "":
			snap.UpdatePosition(workflow.AtTaskPosition(task(next)), now)
		}
		if rev, err = d.ls.SaveSnapshot(ctx, snap, rev); err != nil {
			return nil, rev, fmt.Errorf("checkpoint %s: %w", name, err)
		}
	}
	return snap, rev, nil
}

// demoDefinitions names the demo's workflows and their tasks: each run
// records its definition's names once per history, so replay shows tasks
// by name.
var demoDefinitions = map[workflow.DefinitionHash]*workflow.Definition{
	defOrderV1: {Name: "order-pipeline", Version: "v1", Tasks: orderTasks},
	defOrderV2: {Name: "order-pipeline", Version: "v2", Tasks: orderTasks},
	defPayment: {Name: "payment", Version: "v3", Tasks: []string{"authorize", "capture"}},
	defETL:     {Name: "nightly-etl", Version: "v7", Tasks: []string{"extract", "transform", "load"}},
	defPO:      {Name: "purchase-order", Version: "v2", Tasks: []string{"request-approval", "await-approval", "place-order"}},
	defCart:    {Name: "cart", Version: "v1", Tasks: []string{"remind"}},
	defRefund:  {Name: "refund", Version: "v1", Tasks: []string{"refund-card"}},
}

// registerDemoDefinitions registers the demo's definitions in the catalog
// of cfg, through a store of cfg.
func registerDemoDefinitions(ctx context.Context, log lifecycle.Log, cfg lifecycle.Config) error {
	reg, err := lifecycle.New(log, cfg)
	if err != nil {
		return err
	}
	defs := maps.Clone(demoDefinitions)
	defs[defFulfilment] = fulfilment
	hashes := slices.Collect(maps.Keys(defs))
	slices.SortFunc(hashes, func(a, b workflow.DefinitionHash) int { return bytes.Compare(a[:], b[:]) })
	for _, h := range hashes {
		if err := reg.RegisterDefinition(as(ctx, "replay-demo"), h, defs[h]); err != nil {
			return fmt.Errorf("register the demo's definition %s: %w", defs[h].Name, err)
		}
	}
	return nil
}

func (d *demo) start(ctx context.Context, id string, def workflow.DefinitionHash, input, first string, policy workflow.ConflictPolicy) (lifecycle.Prepared, error) {
	p, err := d.ls.PrepareRun(as(ctx, "checkout-api"), lifecycle.PrepareRunRequest{
		InstanceID: id, DefinitionHash: def, Input: []byte(input), FirstTask: workflow.TaskHint{ID: task(first)}, Policy: policy,
		Workflow: demoDefinitions[def],
	})
	if err != nil {
		return p, fmt.Errorf("prepare run %s: %w", id, err)
	}
	return p, nil
}

var orderTasks = []string{"reserve-stock", "charge-card", "ship"}

// order runs an order from creation to completion.
func (d *demo) order(ctx context.Context, id string, n int) error {
	p, err := d.start(ctx, id, defOrderV1, fmt.Sprintf(`{"order":%d,"items":%d}`, 4000+n, n+1), orderTasks[0], workflow.Fail)
	if err != nil {
		return err
	}
	wctx := as(ctx, "worker-"+strconv.Itoa(n))
	snap, rev, err := d.runTasks(wctx, p.Snapshot, p.Revision, orderTasks, "")
	if err != nil {
		return err
	}
	snap.MarkCompleted(fmt.Appendf(nil, `{"order":%d,"shipped":true}`, 4000+n), d.clock())
	if _, err := d.ls.SaveSnapshot(wctx, snap, rev); err != nil {
		return fmt.Errorf("complete %s: %w", id, err)
	}
	return d.step(id, "PrepareRun fail → created", "run %s: 3 tasks checkpointed, completed", shortRun(p.Run))
}

func (d *demo) run(ctx context.Context) error {
	orders := []string{d.id("order") + "-1", d.id("order") + "-2", d.id("order") + "-3"}
	for i, id := range orders {
		if err := d.order(ctx, id, i+1); err != nil {
			return err
		}
	}

	// A duplicate start under Fail is refused.
	req := lifecycle.PrepareRunRequest{InstanceID: orders[0], DefinitionHash: defOrderV1, FirstTask: workflow.TaskHint{ID: task(orderTasks[0])}}
	_, err := d.ls.PrepareRun(as(ctx, "checkout-api"), req)
	if !errors.Is(err, lifecycle.ErrAlreadyExists) {
		return fmt.Errorf("a duplicate start under fail: got %v, want ErrAlreadyExists", err)
	}
	if err := d.step(orders[0], "PrepareRun fail (again)", "refused: already exists (nothing written)"); err != nil {
		return err
	}

	// UseExisting returns the completed instance and its output.
	req.Policy = workflow.UseExisting
	p, err := d.ls.PrepareRun(as(ctx, "checkout-api"), req)
	if err != nil || p.Outcome != lifecycle.UsedExisting {
		return fmt.Errorf("use existing: got %v, %v", p.Outcome, err)
	}
	if err := d.step(orders[0], "PrepareRun use_existing", "%s, output %s (nothing written)", p.Status.Kind, showBytes(p.Output, 60)); err != nil {
		return err
	}

	// Another definition is refused, whatever the policy.
	req = lifecycle.PrepareRunRequest{InstanceID: orders[1], DefinitionHash: defOrderV2, FirstTask: workflow.TaskHint{ID: task(orderTasks[0])}, Policy: workflow.TerminateExisting,
		Workflow: demoDefinitions[defOrderV2]}
	_, err = d.ls.PrepareRun(as(ctx, "checkout-api"), req)
	if !errors.Is(err, lifecycle.ErrDefinitionMismatch) {
		return fmt.Errorf("definition mismatch: got %v, want ErrDefinitionMismatch", err)
	}
	if err := d.step(orders[1], "PrepareRun terminate_existing, definition v2", "refused: definition mismatch (nothing written)"); err != nil {
		return err
	}

	if err := d.replace(ctx, d.id("order")+"-4"); err != nil {
		return err
	}
	if err := d.cancel(ctx, d.id("payment")); err != nil {
		return err
	}
	if err := d.pause(ctx, d.id("etl")); err != nil {
		return err
	}
	if err := d.event(ctx, d.id("po")); err != nil {
		return err
	}
	if err := d.waiting(ctx, d.id("quote")); err != nil {
		return err
	}
	if err := d.fail(ctx, d.id("refund")); err != nil {
		return err
	}
	return d.delete(ctx, d.id("cart"))
}

// replace: an instance with a pending cancel and pause is replaced by
// TerminateExisting; the delete, the clearing of both signals and the new
// run are one commit.
func (d *demo) replace(ctx context.Context, id string) error {
	p, err := d.start(ctx, id, defOrderV1, `{"order":4004,"items":1}`, orderTasks[0], workflow.Fail)
	if err != nil {
		return err
	}
	if _, _, err := d.runTasks(as(ctx, "worker-4"), p.Snapshot, p.Revision, orderTasks[:1], orderTasks[1]); err != nil {
		return err
	}
	if err := d.ls.StoreSignal(as(ctx, "support-ui"), id, workflow.Cancel, workflow.SignalRequest{Reason: "customer changed the address", RequestedBy: "alice@support"}); err != nil {
		return err
	}
	if err := d.ls.StoreSignal(as(ctx, "risk-engine"), id, workflow.Pause, workflow.SignalRequest{Reason: "fraud review", RequestedBy: "risk-engine"}); err != nil {
		return err
	}
	if err := d.step(id, "PrepareRun fail → created; cancel + pause", "run %s: 1 task checkpointed; cancel and pause pending", shortRun(p.Run)); err != nil {
		return err
	}
	p2, err := d.start(ctx, id, defOrderV1, `{"order":4004,"items":1,"address":"new"}`, orderTasks[0], workflow.TerminateExisting)
	if err != nil {
		return err
	}
	if p2.Outcome != lifecycle.Replaced {
		return fmt.Errorf("terminate existing: outcome %v", p2.Outcome)
	}
	if err := d.step(id, "PrepareRun terminate_existing → replaced", "run %s replaced %s; 2 signals cleared in the same commit", shortRun(p2.Run), shortRun(p2.PreviousRun)); err != nil {
		return err
	}
	wctx := as(ctx, "worker-4")
	snap, rev, err := d.runTasks(wctx, p2.Snapshot, p2.Revision, orderTasks, "")
	if err != nil {
		return err
	}
	snap.MarkCompleted([]byte(`{"order":4004,"shipped":true}`), d.clock())
	if _, err := d.ls.SaveSnapshot(wctx, snap, rev); err != nil {
		return err
	}
	return d.step(id, "new run to completion", "run %s: 3 tasks checkpointed, completed", shortRun(p2.Run))
}

// cancel: a cancel request applied by the executor with CheckAndCancel.
func (d *demo) cancel(ctx context.Context, id string) error {
	p, err := d.start(ctx, id, defPayment, `{"amount":"129.00","currency":"EUR"}`, "authorize", workflow.Fail)
	if err != nil {
		return err
	}
	if _, _, err := d.runTasks(as(ctx, "payments-worker"), p.Snapshot, p.Revision, []string{"authorize"}, "capture"); err != nil {
		return err
	}
	if err := d.ls.StoreSignal(as(ctx, "support-ui"), id, workflow.Cancel, workflow.SignalRequest{Reason: "customer asked", RequestedBy: "bob@support"}); err != nil {
		return err
	}
	at := task("capture")
	ok, err := d.ls.CheckAndCancel(as(ctx, "payments-worker"), id, &at)
	if err != nil || !ok {
		return fmt.Errorf("check and cancel %s: %v, %v", id, ok, err)
	}
	return d.step(id, "StoreSignal cancel; CheckAndCancel", "cancelled at task capture (requested by bob@support)")
}

// pause: a pause request applied with CheckAndPause, then Unpause, and
// the run goes on.
func (d *demo) pause(ctx context.Context, id string) error {
	p, err := d.start(ctx, id, defETL, `{"date":"2026-01-01"}`, "extract", workflow.Fail)
	if err != nil {
		return err
	}
	wctx := as(ctx, "etl-worker")
	if _, _, err := d.runTasks(wctx, p.Snapshot, p.Revision, []string{"extract"}, "transform"); err != nil {
		return err
	}
	if err := d.ls.StoreSignal(as(ctx, "ops-console"), id, workflow.Pause, workflow.SignalRequest{Reason: "maintenance window", RequestedBy: "carol@ops"}); err != nil {
		return err
	}
	ok, err := d.ls.CheckAndPause(wctx, id)
	if err != nil || !ok {
		return fmt.Errorf("check and pause %s: %v, %v", id, ok, err)
	}
	if err := d.step(id, "StoreSignal pause; CheckAndPause", "paused at task transform"); err != nil {
		return err
	}
	if _, err := d.ls.Unpause(as(ctx, "ops-console"), id); err != nil {
		return err
	}
	snap, rev, err := d.ls.LoadSnapshot(ctx, id)
	if err != nil {
		return err
	}
	if _, _, err := d.runTasks(wctx, snap, rev, []string{"transform"}, "load"); err != nil {
		return err
	}
	return d.step(id, "Unpause; checkpoint", "in progress at task load")
}

// event: an external event sent, then consumed in the same commit that
// advances the workflow.
func (d *demo) event(ctx context.Context, id string) error {
	p, err := d.start(ctx, id, defPO, `{"po":"PO-77","total":"18200.00"}`, "request-approval", workflow.Fail)
	if err != nil {
		return err
	}
	wctx := as(ctx, "po-worker")
	snap, rev, err := d.park(wctx, p, "request-approval", "await-approval", "approval", "place-order")
	if err != nil {
		return err
	}
	if err := d.step(id, "checkpoint at signal node", "awaiting external event \"approval\""); err != nil {
		return err
	}
	if err := d.ls.SendEvent(as(ctx, "approvals-ui"), id, "approval", []byte(`{"approved":true,"by":"dave@finance"}`)); err != nil {
		return err
	}
	before, err := d.ls.Load(ctx, id)
	if err != nil {
		return err
	}
	got, err := d.ls.ConsumeEvent(wctx, lifecycle.ConsumeRequest{InstanceID: id, Name: "approval", Revision: rev,
		Advance: func(s *workflow.Snapshot, payload []byte) error {
			now := snap.UpdatedAt
			s.MarkTaskCompleted(task("await-approval"), payload, now)
			s.UpdatePosition(workflow.AtTaskPosition(task("place-order")), now)
			return nil
		}})
	if err != nil || !got.OK {
		return fmt.Errorf("consume event %s: %v, %v", id, got.OK, err)
	}
	d.consumeFrom, d.consumeTo = before.LastSeq, got.Revision.Seq
	if err := d.step(id, "SendEvent approval; ConsumeEvent+Advance", "consumed %s, advanced to place-order (one commit)", showBytes(got.Payload, 40)); err != nil {
		return err
	}
	snap, rev, err = d.ls.LoadSnapshot(ctx, id)
	if err != nil {
		return err
	}
	if snap, rev, err = d.runTasks(wctx, snap, rev, []string{"place-order"}, ""); err != nil {
		return err
	}
	snap.MarkCompleted([]byte(`{"po":"PO-77","placed":true}`), d.clock())
	if _, err := d.ls.SaveSnapshot(wctx, snap, rev); err != nil {
		return err
	}
	return d.step(id, "checkpoint; complete", "completed")
}

// park completes the first task and parks the run at a signal node.
func (d *demo) park(ctx context.Context, p lifecycle.Prepared, first, node, signal, next string) (*workflow.Snapshot, lifecycle.Revision, error) {
	snap, rev := p.Snapshot, p.Revision
	now := d.clock()
	snap.MarkTaskCompleted(task(first), []byte(`{"requested":true}`), now)
	n := task(next)
	snap.UpdatePosition(workflow.Position{Kind: workflow.AtSignal, NodeID: task(node), SignalName: signal, NextTaskID: &n}, now)
	rev, err := d.ls.SaveSnapshot(ctx, snap, rev)
	return snap, rev, err
}

// waiting: a run parked at a signal node, still waiting.
func (d *demo) waiting(ctx context.Context, id string) error {
	p, err := d.start(ctx, id, defPO, `{"po":"PO-78","total":"950.00"}`, "request-approval", workflow.Fail)
	if err != nil {
		return err
	}
	if _, _, err := d.park(as(ctx, "po-worker"), p, "request-approval", "await-approval", "approval", "place-order"); err != nil {
		return err
	}
	return d.step(id, "PrepareRun; checkpoint at signal node", "awaiting external event \"approval\"")
}

// fail: a run that fails.
func (d *demo) fail(ctx context.Context, id string) error {
	p, err := d.start(ctx, id, defRefund, `{"refund":"49.90"}`, "refund-card", workflow.Fail)
	if err != nil {
		return err
	}
	snap := p.Snapshot
	snap.MarkFailed("payment provider: card expired", d.clock())
	if _, err := d.ls.SaveSnapshot(as(ctx, "payments-worker"), snap, p.Revision); err != nil {
		return err
	}
	return d.step(id, "PrepareRun; fail", "failed: payment provider: card expired")
}

// delete: a snapshot deleted with a buffered event; the history stays.
func (d *demo) delete(ctx context.Context, id string) error {
	if _, err := d.start(ctx, id, defCart, `{"cart":"c-19","items":2}`, "remind", workflow.Fail); err != nil {
		return err
	}
	if err := d.ls.SendEvent(as(ctx, "mailer"), id, "reminder-opened", []byte(`{"opened":true}`)); err != nil {
		return err
	}
	if err := d.ls.DeleteSnapshot(as(ctx, "retention-job"), id, "abandoned cart, retention 30d"); err != nil {
		return err
	}
	return d.step(id, "PrepareRun; SendEvent; DeleteSnapshot", "deleted with 1 buffered event (the history stays)")
}
