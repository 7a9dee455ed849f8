package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/runlog/runlog/internal/browsertest"
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// TestServeBrowser drives the web UI of replay serve in headless Chromium:
// the instance list and its filters, an instance whose run was replaced
// (the timeline, the state and the changes of a commit), live updates
// while the page is open, keyboard use, and no JavaScript errors. What the
// page shows is checked against what the CLI prints for the same store.
func TestServeBrowser(t *testing.T) {
	bctx := browsertest.New(t) // skips without a browser, before the work
	console := browsertest.Listen(t, bctx)
	start := time.Now()

	dir := seeded(t)
	sv := startServe(t, dir)
	url := sv.web

	// The CLI, run on the directory while serve holds it, connects to
	// serve's NATS server: the page is compared with what it prints.
	var all []listRow
	decode(t, mustRun(t, "list", "--dir", dir, "-o", "json").stdout, &all)
	if len(all) < 5 {
		t.Fatalf("the demo store lists %d instances, want many", len(all))
	}
	statusOf := map[string]string{}
	for _, r := range all {
		statusOf[r.Instance] = r.Status
	}
	for _, id := range []string{"order-s1-4", "po-s1", "refund-s1"} {
		if statusOf[id] == "" {
			t.Fatalf("the demo store has no %s: %v", id, statusOf)
		}
	}

	p := &page{t: t, ctx: bctx}

	// ---- the list ----
	p.do(chromedp.Navigate(url + "?token=" + sv.token)) // the address serve prints: a cookie keeps the token
	p.waitJS("the list rows", `document.querySelectorAll("#list-body tr[data-id]").length === `+strconv.Itoa(len(all)))
	if got := p.rows(); !sameStatuses(got, statusOf) {
		t.Errorf("the page lists %v\nthe CLI lists %v", got, statusOf)
	}
	for _, id := range []string{"order-s1-4", "po-s1", "refund-s1"} {
		row := p.text(fmt.Sprintf(`#list-body tr[data-id=%q]`, id))
		if !strings.Contains(row, id) || !strings.Contains(row, statusOf[id]) {
			t.Errorf("row of %s reads %q: want its id and its status %q in text", id, row, statusOf[id])
		}
	}
	p.waitJS("the live indicator", `document.getElementById("live-text").textContent === "live"`)
	if s := p.text("#list-summary"); !strings.Contains(s, fmt.Sprintf("%d instances shown of %d matching", len(all), len(all))) {
		t.Errorf("list summary = %q", s)
	}
	p.fits("the list")
	browsertest.Screenshot(t, bctx, "serve-list")

	// Filter by status: only the failed instances remain, as the CLI says.
	var failed []listRow
	decode(t, mustRun(t, "list", "--dir", dir, "--status", "failed", "-o", "json").stdout, &failed)
	if len(failed) == 0 || len(failed) == len(all) {
		t.Fatalf("the demo store has %d failed instances of %d: the filter would prove nothing", len(failed), len(all))
	}
	wantFailed := map[string]string{}
	for _, r := range failed {
		wantFailed[r.Instance] = r.Status
	}
	p.do(chromedp.SetValue(chromedp.CSS("#f-status"), "failed"), chromedp.Click(chromedp.CSS(`#filters button[type="submit"]`)))
	p.waitJS("the failed instances only", `document.querySelectorAll("#list-body tr[data-id]").length === `+strconv.Itoa(len(failed)))
	if got := p.rows(); !sameStatuses(got, wantFailed) {
		t.Errorf("filtered by status failed, the page lists %v; the CLI %v", got, wantFailed)
	}
	if loc := p.eval(`location.hash`); !strings.Contains(loc, "status=failed") {
		t.Errorf("the filter is not in the URL: %q", loc)
	}
	// A reload keeps the filter.
	p.do(chromedp.Reload())
	p.waitJS("the filtered list after a reload", `document.querySelectorAll("#list-body tr[data-id]").length === `+strconv.Itoa(len(failed)))
	if v := p.eval(`document.getElementById("f-status").value`); v != "failed" {
		t.Errorf("after a reload the status filter is %q, want failed", v)
	}
	if got := p.rows(); !sameStatuses(got, wantFailed) {
		t.Errorf("after a reload the page lists %v, want %v", got, wantFailed)
	}

	// ---- an instance whose run was replaced ----
	id, rows := replacedRun(t, dir, all)
	firstRun, secondRun := rows[0].Run, ""
	boundarySeq := uint64(0)
	for _, r := range rows {
		if r.Run != "" && r.Run != firstRun {
			secondRun, boundarySeq = r.Run, r.Seq
			break
		}
	}
	var seqs []uint64
	for _, r := range rows {
		if len(seqs) == 0 || seqs[len(seqs)-1] != r.Seq {
			seqs = append(seqs, r.Seq)
		}
	}
	i := slices.Index(seqs, boundarySeq)
	if i < 2 {
		t.Fatalf("%s: the run changes at seq %d, commit %d: want a commit before the one before it", id, boundarySeq, i)
	}
	beforeSeq, firstSeq := seqs[i-1], seqs[0]

	p.do(chromedp.Click(chromedp.CSS("#reset")))
	p.waitJS("the whole list again", `document.querySelectorAll("#list-body tr[data-id]").length === `+strconv.Itoa(len(all)))
	// A click on the row (not on its link) opens the instance.
	p.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#list-body tr[data-id=%q] td.num`, id))))
	p.waitJS("the timeline of "+id, fmt.Sprintf(`document.querySelectorAll("#timeline li.commit").length === %d`, len(seqs)))
	if h := p.text("#instance-heading"); !strings.Contains(h, id) {
		t.Errorf("instance heading = %q, want %s", h, id)
	}
	timeline := p.text("#timeline")
	for _, want := range []string{
		"run …" + lastOf8(firstRun) + " starts",
		"run …" + lastOf8(firstRun) + " ends",
		"run …" + lastOf8(secondRun) + " starts",
	} {
		if !strings.Contains(timeline, want) {
			t.Errorf("the timeline does not say %q:\n%s", want, timeline)
		}
	}
	// The boundary sits in the commit that replaced the run.
	if b := p.text(fmt.Sprintf(`#timeline li.commit[data-seq="%d"] .run-boundary`, boundarySeq)); !strings.Contains(b, lastOf8(secondRun)+" starts") {
		t.Errorf("the commit at seq %d shows no run boundary (%q)", boundarySeq, b)
	}
	// Task names, as the CLI's summaries give them.
	for _, r := range rows {
		if r.Summary != "" && !strings.Contains(timeline, r.Summary) {
			t.Errorf("the timeline lacks the summary %q", r.Summary)
		}
	}
	for _, task := range []string{"AtTask(charge-card)", "reserve-stock"} {
		if !strings.Contains(timeline, task) {
			t.Errorf("the timeline does not name the task %q", task)
		}
	}
	p.waitJS("the verify badge", `document.querySelector("#verify .badge") !== null`)
	if v := p.text("#verify"); !strings.Contains(v, "verified: intact") {
		t.Errorf("verify badge = %q, want verified: intact", v)
	}

	// The first commit: its state, and no earlier one to compare with.
	p.commit(firstSeq)
	if s := p.text("#state-body"); !strings.Contains(s, "first commit of the history") {
		t.Errorf("state panel at the first commit:\n%s", s)
	}

	// The commit that replaced the run: its changes name both runs.
	p.commit(boundarySeq)
	p.waitJS("the changes", `document.querySelector("#state-body table.changes") !== null`)
	var diff struct {
		Changes []struct{ Field, From, To string } `json:"changes"`
	}
	decode(t, mustRun(t, "diff", id, "--from", fmt.Sprint(beforeSeq), "--to", fmt.Sprint(boundarySeq), "--dir", dir, "-o", "json").stdout, &diff)
	changes := p.text("#state-body table.changes")
	if len(diff.Changes) == 0 {
		t.Fatal("the CLI's diff is empty")
	}
	if got := p.count("#state-body table.changes tbody tr"); got != len(diff.Changes) {
		t.Errorf("the page shows %d changes, the CLI %d:\n%s", got, len(diff.Changes), changes)
	}
	for _, c := range diff.Changes {
		if !strings.Contains(changes, c.Field) {
			t.Errorf("the changes lack the field %q:\n%s", c.Field, changes)
		}
	}
	if !strings.Contains(changes, firstRun) || !strings.Contains(changes, secondRun) {
		t.Errorf("the changes of seq %d do not show the runs %s → %s:\n%s", boundarySeq, firstRun, secondRun, changes)
	}
	if s := p.text("#state-body"); !strings.Contains(s, fmt.Sprintf("Changes from seq %d to seq %d", beforeSeq, boundarySeq)) {
		t.Errorf("state panel at seq %d:\n%s", boundarySeq, s)
	}

	// The commit before: pending signals, a position with task names, a
	// result; as the CLI's state says.
	p.commit(beforeSeq)
	var st struct {
		Status  string                     `json:"status"`
		Signals map[string]json.RawMessage `json:"signals"`
		Results map[string]string          `json:"results"`
	}
	decode(t, mustRun(t, "state", id, "--at-seq", fmt.Sprint(beforeSeq), "--dir", dir, "-o", "json").stdout, &st)
	stateText := mustRun(t, "state", id, "--at-seq", fmt.Sprint(beforeSeq), "--dir", dir).stdout
	panel := p.text("#state-body")
	if len(st.Signals) == 0 || len(st.Results) == 0 {
		t.Fatalf("state at seq %d has %d signals and %d results: pick a richer commit", beforeSeq, len(st.Signals), len(st.Results))
	}
	if !regexp.MustCompile(`(?m)^status\s+` + regexp.QuoteMeta(st.Status) + `$`).MatchString(panel) {
		t.Errorf("the state panel does not give the status %q:\n%s", st.Status, panel)
	}
	for kind := range st.Signals {
		if !strings.Contains(panel, kind+": requested by") {
			t.Errorf("the state panel does not show the pending %s:\n%s", kind, panel)
		}
	}
	if m := regexp.MustCompile(`(?m)^position\s+(\S.*)$`).FindStringSubmatch(stateText); m == nil {
		t.Errorf("the CLI's state gives no position:\n%s", stateText)
	} else if !strings.Contains(panel, m[1]) {
		t.Errorf("the state panel does not give the position %q as the CLI does:\n%s", m[1], panel)
	}
	if !strings.Contains(panel, "reserve-stock") {
		t.Errorf("the state panel does not name the result's task:\n%s", panel)
	}
	// The chosen commit is in the URL: a reload shows it again.
	p.do(chromedp.Reload())
	p.waitJS("the state after a reload", fmt.Sprintf(`document.getElementById("state-heading").textContent === "State as of seq %d" && document.querySelector("#state-body dl") !== null`, beforeSeq))
	if pressed := p.eval(fmt.Sprintf(`document.querySelector('#timeline .commit-btn[data-seq="%d"]').getAttribute("aria-pressed")`, beforeSeq)); pressed != "true" {
		t.Errorf("after a reload the chosen commit is not marked (aria-pressed %q)", pressed)
	}
	p.waitJS("the verify badge", `document.querySelector("#verify .badge") !== null`)
	p.fits("the instance view")
	browsertest.Screenshot(t, bctx, "serve-instance")

	// ---- keyboard ----
	p.do(chromedp.Click(chromedp.CSS("#back")))
	p.waitJS("the list", `!document.getElementById("list-view").hidden && document.querySelectorAll("#list-body tr[data-id]").length === `+strconv.Itoa(len(all)))
	firstID := all[0].Instance
	p.do(chromedp.Focus(chromedp.CSS("#reset")), chromedp.KeyEvent("\t"))
	if f := p.eval(`((el) => el.matches("#list-body a") ? el.textContent : "<" + el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + ">")(document.activeElement)`); f != firstID {
		t.Fatalf("Tab from the Reset button focuses %q, want the link of the first instance %q", f, firstID)
	}
	p.do(chromedp.KeyEvent("\r"))
	p.waitJS("the instance opened by Enter", fmt.Sprintf(`document.getElementById("instance-id").textContent === %q && document.querySelectorAll("#timeline li.commit").length > 0`, firstID))
	// A commit is a button: Enter on it shows its state.
	p.do(chromedp.Focus(chromedp.CSS("#timeline .commit-btn")), chromedp.KeyEvent("\r"))
	p.waitJS("the state of the first commit, chosen by keyboard", `document.querySelector('#timeline .commit-btn').getAttribute("aria-pressed") === "true" && document.querySelector("#state-body dl") !== null`)

	// ---- live: an instance open while its history grows ----
	const liveID = "etl-s1"
	if statusOf[liveID] != "in_progress" {
		t.Fatalf("%s is %q, want in_progress to signal it", liveID, statusOf[liveID])
	}
	p.do(chromedp.Navigate(url + "#/instance/" + liveID))
	p.waitJS("the timeline of "+liveID, `document.querySelectorAll("#timeline li.commit").length > 0 && document.querySelector("#verify .badge") !== null`)
	commits := p.count("#timeline li.commit")
	p.eval(`window.noReload = "still here"`)

	st2, err := jetstream.OpenEmbedded(t.Context(), jetstream.EmbeddedConfig{Dir: dir}, jetstream.Config{})
	if err != nil {
		t.Fatalf("opening the served directory: %v", err)
	}
	closeStore := sync.OnceValue(st2.Close)
	t.Cleanup(func() { closeStore() }) // before serve stops: cleanups run last first
	if _, ok := st2.ServedBy(); !ok {
		t.Fatal("OpenEmbedded on the served directory did not connect to serve's server")
	}
	ls, err := lifecycle.New(st2, lifecycle.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const reason = `<b>not bold</b> & <i>not markup</i>`
	if err := ls.StoreSignal(lifecycle.WithActor(t.Context(), "live-test"), liveID, workflow.Cancel,
		workflow.SignalRequest{Reason: reason, RequestedBy: "live-test"}); err != nil {
		t.Fatal(err)
	}
	p.waitJSFor(30*time.Second, "the new commit in the open timeline", fmt.Sprintf(`document.querySelectorAll("#timeline li.commit").length === %d && document.getElementById("timeline").innerText.includes("live-test")`, commits+1))
	if v := p.eval(`window.noReload || ""`); v != "still here" {
		t.Error("the page reloaded to show the change")
	}
	last := p.eval(`[...document.querySelectorAll("#timeline li.commit")].at(-1).innerText`)
	if !strings.Contains(last, "signal.stored") || !strings.Contains(last, "new") || !strings.Contains(last, reason) {
		t.Errorf("the new commit reads %q: want signal.stored, marked new, with the reason as text", last)
	}
	if n := p.count("#timeline b, #timeline i"); n != 0 {
		t.Errorf("the reason's markup became %d elements: text must be escaped", n)
	}
	p.waitJS("the meta line after the change", fmt.Sprintf(`document.getElementById("instance-meta").innerText.includes("%d commits")`, commits+1))
	browsertest.Screenshot(t, bctx, "serve-live")
	if err := closeStore(); err != nil {
		t.Error(err)
	}

	// ---- live: the list while another program writes ----
	p.do(chromedp.Click(chromedp.CSS("#back")))
	p.waitJS("the list", `!document.getElementById("list-view").hidden && document.querySelectorAll("#list-body tr[data-id]").length === `+strconv.Itoa(len(all)))
	mustRun(t, "demo", "--dir", dir, "--seed", "2", "--now", fakeNow)
	p.waitJSFor(30*time.Second, "the demo's new instances in the open list", `document.querySelector('#list-body tr[data-id="po-s2"]') !== null`)
	if v := p.eval(`window.noReload || ""`); v != "still here" {
		t.Error("the page reloaded to show the new instances")
	}
	var after []listRow
	decode(t, mustRun(t, "list", "--dir", dir, "-o", "json").stdout, &after)
	p.waitJSFor(30*time.Second, "every instance in the list", `document.querySelectorAll("#list-body tr[data-id]").length === `+strconv.Itoa(len(after)))

	if e := p.text("#errors"); e != "" {
		t.Errorf("the page shows errors: %s", e)
	}
	console.NoErrors(t)

	// An error of the API is shown in the alert region. (After the check
	// of the console: the browser logs the failed request there.)
	bad := mustFail(t, "list", "--dir", dir, "--since", "not-a-time")
	p.do(chromedp.Navigate(url + "#/?since=not-a-time"))
	p.waitJS("the error of a bad filter", `document.getElementById("errors").innerText.includes("not-a-time")`)
	if role := p.eval(`document.getElementById("errors").getAttribute("role")`); role != "alert" {
		t.Errorf("the errors are in a region of role %q, want alert", role)
	}
	if e, want := p.text("#errors"), firstLine(bad); !strings.Contains(e, strings.TrimPrefix(want, "replay list: ")) {
		t.Errorf("the page shows the error %q; the CLI says %q", e, want)
	}

	if code := sv.stop(); code != exitOK {
		t.Errorf("replay serve exited %d after its context was cancelled, want 0; stderr:\n%s", code, sv.stderr.String())
	}
	p.waitJS("the live indicator after serve stopped", `document.getElementById("live-text").textContent === "reconnecting"`)
	t.Logf("browser test took %v", time.Since(start).Round(time.Millisecond))
}

// mustFail runs the command, which must exit with a usage error, and
// returns what it said.
func mustFail(t *testing.T, args ...string) string {
	t.Helper()
	r := replay(t, args...)
	if r.code != exitUsage {
		t.Fatalf("replay %s: exit %d, want %d\n%s", strings.Join(args, " "), r.code, exitUsage, r.stderr)
	}
	return r.stderr
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func decode(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v:\n%s", err, s)
	}
}

func sameStatuses(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// lastOf8 is how the page (and the CLI) shorten a run: its last 8
// characters.
func lastOf8(run string) string {
	if len(run) <= 8 {
		return run
	}
	return run[len(run)-8:]
}

// replacedRun returns an instance of the list whose history holds two
// runs, and its rows.
func replacedRun(t *testing.T, dir string, all []listRow) (string, []showEvent) {
	t.Helper()
	for _, r := range all {
		var rows []showEvent
		decode(t, mustRun(t, "show", r.Instance, "--dir", dir, "-o", "json").stdout, &rows)
		runs := map[string]bool{}
		for _, e := range rows {
			if e.Run != "" {
				runs[e.Run] = true
			}
		}
		if len(runs) > 1 && rows[0].Run != "" {
			return r.Instance, rows
		}
	}
	t.Fatal("no instance of the demo store has a replaced run")
	return "", nil
}

// page runs steps on the tab, each with its own timeout, and fails the
// test with what the page shows when one does not succeed.
type page struct {
	t   *testing.T
	ctx context.Context
}

const stepTimeout = 15 * time.Second

func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%v\n%s", err, p.dump())
	}
}

// eval evaluates a JavaScript expression and returns its value as text.
func (p *page) eval(expr string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr))
	if err != nil {
		p.t.Fatalf("evaluating %s: %v", expr, err)
	}
	if s, ok := v.(string); ok {
		return s
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// text returns the rendered text of the first element that matches sel
// ("" if none does, or it is hidden).
func (p *page) text(sel string) string {
	p.t.Helper()
	b, _ := json.Marshal(sel)
	return strings.TrimSpace(p.eval(fmt.Sprintf(`(document.querySelector(%s) || {innerText: ""}).innerText`, b)))
}

func (p *page) count(sel string) int {
	p.t.Helper()
	b, _ := json.Marshal(sel)
	n, err := strconv.Atoi(p.eval(fmt.Sprintf(`String(document.querySelectorAll(%s).length)`, b)))
	if err != nil {
		p.t.Fatal(err)
	}
	return n
}

// rows returns the instances the list shows, with the status each row
// writes out.
func (p *page) rows() map[string]string {
	p.t.Helper()
	s := p.eval(`JSON.stringify(Object.fromEntries([...document.querySelectorAll("#list-body tr[data-id]")].map((tr) => [tr.querySelector("th").innerText.replace(/\s*changed$/, "").trim(), tr.querySelector(".status").innerText.trim()])))`)
	m := map[string]string{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		p.t.Fatalf("%v: %s", err, s)
	}
	return m
}

// commit chooses the commit at seq in the timeline, with a click, and
// waits for its state.
func (p *page) commit(seq uint64) {
	p.t.Helper()
	p.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#timeline .commit-btn[data-seq="%d"]`, seq))))
	p.waitJS(fmt.Sprintf("the state as of seq %d", seq), fmt.Sprintf(`document.getElementById("state-heading").textContent === "State as of seq %d" && document.querySelector("#state-body dl") !== null && !document.getElementById("state-body").innerText.includes("Loading")`, seq))
	if loc := p.eval(`location.hash`); !strings.HasSuffix(loc, fmt.Sprintf("?seq=%d", seq)) {
		p.t.Errorf("after choosing seq %d the URL is %q", seq, loc)
	}
}

// fits checks that nothing on the page needs horizontal scrolling in the
// laptop-wide window: neither the page nor a scrolling box in it.
func (p *page) fits(what string) {
	p.t.Helper()
	over := p.eval(`[document.documentElement, ...document.querySelectorAll("body *")]
		.filter((el) => el === document.documentElement ? el.scrollWidth > window.innerWidth
			: ["auto", "scroll"].includes(getComputedStyle(el).overflowX) && el.scrollWidth > el.clientWidth + 1)
		.map((el) => "<" + el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className ? "." + el.className : "") + "> " + el.scrollWidth + " > " + (el.clientWidth || window.innerWidth))
		.join(", ")`)
	if over != "" {
		p.t.Errorf("%s scrolls horizontally: %s", what, over)
	}
}

func (p *page) waitJS(what, cond string) {
	p.t.Helper()
	p.waitJSFor(stepTimeout, what, cond)
}

// waitJSFor polls the JavaScript condition cond until it holds.
func (p *page) waitJSFor(d time.Duration, what, cond string) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		if p.eval(fmt.Sprintf(`Boolean(%s)`, cond)) == "true" {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out after %v waiting for %s (%s)\n%s", d, what, cond, p.dump())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dump is what the page shows, for a failure's message.
func (p *page) dump() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
	if err != nil {
		return fmt.Sprintf("(the page's text is not available: %v)", err)
	}
	return "the page shows:\n" + v
}
