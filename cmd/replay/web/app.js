// runlog replay: the web UI of `replay serve`.
//
// A single page over the serve API: /api/COMMAND?id=ID&flag=value answers
// what `replay COMMAND ID --flag value -o json` prints; /api/events streams
// the index's changes. Views live in the URL hash:
//
//	#/?status=failed&sort=updated    the instance list and its filters
//	#/instance/ID?seq=17             an instance, commit 17 chosen
//
// Every text from the log goes into the page as text (textContent, text
// nodes), never as markup.

const FILTERS = ["status", "workflow", "actor", "signal", "waiting", "event-type", "since", "until", "created-since", "definition", "sort", "limit"];
const DEFAULT_LIMIT = "50";

const $ = (id) => document.getElementById(id);

// h makes an element: attributes (class, dataset, on* listeners, others
// as attributes) and children (nodes, or anything else as text).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// fill replaces the children of el, as h adds them.
function fill(el, ...children) {
  el.textContent = "";
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// ---- API ----

class APIError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(command, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const qs = q.toString();
  const url = `/api/${command}${qs ? "?" + qs : ""}`;
  let resp;
  try {
    resp = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  } catch (err) {
    throw new APIError(`${command}: the server did not answer (${err.message}); is replay serve still running?`, 0);
  }
  const text = await resp.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    throw new APIError(`${command}: HTTP ${resp.status}, and the answer is not JSON`, resp.status);
  }
  if (!resp.ok) {
    const msg = body && typeof body.error === "string" ? body.error : `HTTP ${resp.status}`;
    throw new APIError(msg, resp.status);
  }
  return body;
}

// ---- errors (the role="alert" region) ----

const errors = new Map(); // source -> message

function setError(source, err) {
  if (err) {
    errors.set(source, err instanceof Error ? err.message : String(err));
  } else if (!errors.delete(source)) {
    return;
  }
  renderErrors();
}

function renderErrors() {
  const box = $("errors");
  fill(box, ...[...errors].map(([source, msg]) =>
    h("p", {},
      h("span", { class: "error-text" }, h("strong", {}, `Error (${source}):`), msg),
      h("button", { type: "button", class: "link", onclick: () => setError(source, null) }, "Dismiss"))));
}

function announce(text) {
  const el = $("announce");
  el.textContent = "";
  // A fresh text node, a moment later, so that the same words are read
  // again.
  setTimeout(() => { el.textContent = text; }, 50);
}

// ---- formatting ----

function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toISOString().replace("T", " ").replace(/\.000Z$/, "Z").replace(/Z$/, " UTC");
}

function timeEl(iso) {
  if (!iso) return h("span", { class: "none" }, "(none)");
  return h("time", { datetime: iso }, fmtTime(iso));
}

// shortRun is how the CLI shows a run: its last 8 characters.
function shortRun(run) {
  return run ? run.slice(-8) : "";
}

function statusEl(status) {
  const s = status || "unknown";
  return h("span", { class: `status status-${s.replace(/[^a-z_]/g, "")}` },
    h("span", { class: "chip", "aria-hidden": "true" }), s);
}

function none(text) {
  return h("span", { class: "none" }, text || "(none)");
}

// b64text decodes a payload (JSON []byte: base64) as UTF-8 text.
function b64text(s) {
  if (typeof s !== "string") return "";
  try {
    const bin = atob(s);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return `(${s.length} base64 characters, not text)`;
  }
}

// quote is the CLI's quoting of a name: plain names as they are.
function quote(s) {
  return /^[\p{L}\p{N}._:/-]+$/u.test(s) ? s : JSON.stringify(s);
}

// ---- task names: a task id is the SHA-256 of its name ----

const taskNames = new Map(); // hex id -> name

async function learnTasks(names) {
  if (!Array.isArray(names) || !globalThis.crypto || !crypto.subtle) return;
  for (const name of names) {
    if (typeof name !== "string") continue;
    const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(name));
    const hex = [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
    taskNames.set(hex, name);
  }
}

function task(id) {
  if (!id) return "";
  return taskNames.get(id) || id.slice(0, 12);
}

// position renders a position as the CLI does: AtTask(charge-card),
// AtSignal(node 7eb7d89cc462, "approval", next place-order).
function position(p) {
  if (!p || !p.kind) return "";
  if (p.kind === "NotStarted") return "NotStarted";
  if (p.kind === "AtTask") return `AtTask(${task(p.task_id)})`;
  const parts = [];
  if (p.node_id) parts.push(`node ${p.node_id.slice(0, 12)}`);
  if (p.signal_name) parts.push(quote(p.signal_name));
  if (p.kind === "InLoop") parts.push(`iteration ${p.iteration || 0}`);
  if (p.branches && Object.keys(p.branches).length) parts.push(`${Object.keys(p.branches).length} branches done`);
  if (p.entered_at) parts.push(`entered ${fmtTime(p.entered_at)}`);
  if (p.wake_at) parts.push(`wake ${fmtTime(p.wake_at)}`);
  if (p.next_task_id) parts.push(`next ${task(p.next_task_id)}`);
  if (p.task_id) parts.push(`task ${task(p.task_id)}`);
  return `${p.kind}(${parts.join(", ")})`;
}

function request(r) {
  let s = "requested";
  if (r.requested_by) s += ` by ${r.requested_by}`;
  if (r.reason) s += `: ${JSON.stringify(r.reason)}`;
  if (r.requested_at) s += ` (at ${fmtTime(r.requested_at)})`;
  return s;
}

// ---- routing ----

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const i = raw.indexOf("?");
  const path = i < 0 ? raw : raw.slice(0, i);
  const params = new URLSearchParams(i < 0 ? "" : raw.slice(i + 1));
  const m = path.match(/^\/instance\/(.+)$/);
  if (m) {
    let id;
    try {
      id = decodeURIComponent(m[1]);
    } catch {
      id = m[1];
    }
    const seq = Number.parseInt(params.get("seq") || "", 10);
    return { view: "instance", id, seq: Number.isFinite(seq) ? seq : null };
  }
  return { view: "list", params };
}

function instanceHash(id, seq) {
  return `#/instance/${encodeURIComponent(id)}${seq != null ? `?seq=${seq}` : ""}`;
}

let lastListHash = "#/";
let current = null; // the view shown: {view: "list"} or {view: "instance", id}
// Focus moves to the heading of a view opened from the page (a link, a
// row, the back link), not on the page's first load.
let moveFocus = false;

function route() {
  const r = parseHash();
  const sameView = current && current.view === r.view && (r.view !== "instance" || current.id === r.id);
  if (!sameView && errors.size > 0) {
    // The errors were about the view left.
    errors.clear();
    renderErrors();
  }
  if (r.view === "instance") {
    const same = current && current.view === "instance" && current.id === r.id;
    showView("instance");
    if (same) {
      if (r.seq !== inst.selected) selectCommit(r.seq, { fromHash: true });
      return;
    }
    current = { view: "instance", id: r.id };
    openInstance(r.id, r.seq, { focus: moveFocus });
  } else {
    lastListHash = location.hash || "#/";
    $("back").setAttribute("href", lastListHash);
    $("nav-list").setAttribute("href", lastListHash);
    const fromInstance = current && current.view === "instance";
    current = { view: "list" };
    showView("list");
    fillForm(r.params);
    loadList({ focus: fromInstance && moveFocus });
  }
  moveFocus = true;
}

function showView(view) {
  $("list-view").hidden = view !== "list";
  $("instance-view").hidden = view !== "instance";
  if (view === "list") {
    document.title = "Instances — runlog replay";
    $("nav-list").setAttribute("aria-current", "page");
  } else {
    $("nav-list").removeAttribute("aria-current");
  }
}

// ---- the instance list ----

const form = $("filters");

function fillForm(params) {
  for (const name of FILTERS) {
    const el = form.elements.namedItem(name);
    if (el) el.value = params.get(name) ?? (name === "limit" ? DEFAULT_LIMIT : "");
  }
  form.dataset.after = params.get("after") || "";
}

// formParams returns the filters of the form, without the empty ones and
// the default limit.
function formParams() {
  const q = new URLSearchParams();
  for (const name of FILTERS) {
    const el = form.elements.namedItem(name);
    const v = el ? el.value.trim() : "";
    if (v === "" || (name === "limit" && v === DEFAULT_LIMIT)) continue;
    q.set(name, v);
  }
  return q;
}

function goList(q) {
  const s = q.toString();
  const hash = `#/${s ? "?" + s : ""}`;
  if (location.hash === hash || (hash === "#/" && (location.hash === "" || location.hash === "#"))) {
    fillForm(q);
    loadList({});
  } else {
    location.hash = hash;
  }
}

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  goList(formParams());
});

$("reset").addEventListener("click", () => {
  goList(new URLSearchParams());
});

let listGen = 0;
let listChanged = new Set(); // ids the last change event named

async function loadList({ focus = false, live = false } = {}) {
  const gen = ++listGen;
  if (!live) listChanged = new Set();
  const q = formParams();
  const after = form.dataset.after;
  const filters = Object.fromEntries(q);
  delete filters.sort;
  delete filters.limit;
  const limit = q.get("limit") ?? DEFAULT_LIMIT;
  const listParams = { ...filters, sort: q.get("sort") || "", limit, after };
  $("list-table").setAttribute("aria-busy", "true");
  const [list, count] = await Promise.allSettled([api("list", listParams), api("count", filters)]);
  if (gen !== listGen) return;
  $("list-table").removeAttribute("aria-busy");
  if (list.status === "rejected") {
    setError("instance list", list.reason);
    $("list-summary").textContent = "The list could not be loaded.";
    fill($("list-body"));
    fill($("pager"));
    return;
  }
  setError("instance list", null);
  const rows = Array.isArray(list.value) ? list.value : [];
  renderList(rows, count.status === "fulfilled" ? count.value : null, { limit, after, sorted: !!q.get("sort") });
  if (focus) $("list-heading").focus();
}

function renderList(rows, count, { limit, after, sorted }) {
  const body = $("list-body");
  // Keep the keyboard focus on the instance it was on.
  const focused = document.activeElement && body.contains(document.activeElement) ? document.activeElement.closest("tr[data-id]") : null;
  const focusID = focused ? focused.dataset.id : null;
  if (rows.length === 0) {
    fill(body, h("tr", { class: "empty" }, h("td", { colspan: "7" }, "No instances match these filters.")));
  } else {
    fill(body, ...rows.map((r) => {
      const changed = listChanged.has(r.instance);
      return h("tr", { dataset: { id: r.instance }, class: changed ? "changed" : "" },
        h("th", { scope: "row" },
          h("a", { href: instanceHash(r.instance), class: "instance-link ident" }, r.instance),
          changed ? h("span", { class: "tag" }, "changed") : null),
        h("td", {}, statusEl(r.status)),
        h("td", {}, r.workflow || none("(not known)")),
        h("td", {}, r.run ? h("code", { title: r.run }, shortRun(r.run)) : none()),
        h("td", { class: "num" }, r.events ?? ""),
        h("td", { class: "num" }, r.last_seq ?? ""),
        h("td", {}, timeEl(r.updated)));
    }));
  }
  if (focusID) {
    const again = body.querySelector(`tr[data-id="${CSS.escape(focusID)}"] a`);
    if (again) again.focus();
  }
  const total = count && typeof count.total === "number" ? count.total : null;
  let summary = `${rows.length} instance${rows.length === 1 ? "" : "s"} shown`;
  if (total !== null) summary += ` of ${total} matching`;
  if (after) summary += ` (after ${after})`;
  $("list-summary").textContent = summary + ".";

  const pager = $("pager");
  fill(pager);
  const base = formParams();
  if (after) {
    pager.append(h("a", { href: `#/${base.toString() ? "?" + base : ""}` }, "← First page"));
  }
  const n = Number.parseInt(limit, 10);
  if (!sorted && n > 0 && rows.length === n) {
    const next = new URLSearchParams(base);
    next.set("after", rows[rows.length - 1].instance);
    pager.append(h("a", { href: `#/?${next}` }, "Next page →"));
  }
}

// A click anywhere on a row opens its instance; the link in the row is
// what the keyboard reaches.
$("list-body").addEventListener("click", (ev) => {
  if (ev.target.closest("a, button")) return;
  const tr = ev.target.closest("tr[data-id]");
  if (tr && !window.getSelection().toString()) location.hash = instanceHash(tr.dataset.id);
});

// ---- the instance view ----

const inst = {
  id: null,
  gen: 0,
  commits: [], // [{seq, time, actor, command, commit, rows}]
  selected: null, // the chosen commit's seq
  stateGen: 0,
};

async function openInstance(id, seq, { focus = false } = {}) {
  inst.id = id;
  inst.commits = [];
  inst.selected = seq;
  document.title = `${id} — runlog replay`;
  $("instance-id").textContent = id;
  $("instance-meta").textContent = "Loading…";
  $("state-heading").textContent = "State";
  fill($("verify"));
  fill($("timeline"), h("li", { class: "muted" }, "Loading the history…"));
  fill($("state-body"), h("p", { class: "muted" }, seq != null ? "Loading…" : "No commit chosen yet: choose one in the timeline."));
  await loadInstance({ initial: true });
  if (focus && current && current.view === "instance" && current.id === id) $("instance-heading").focus();
}

// loadInstance fetches the timeline, the verification and the current
// state of the open instance, keeping the chosen commit.
async function loadInstance({ initial = false } = {}) {
  const id = inst.id;
  const gen = ++inst.gen;
  const [show, verify, head] = await Promise.allSettled([api("show", { id }), api("verify", { id }), api("state", { id })]);
  if (gen !== inst.gen || id !== inst.id) return;

  if (show.status === "rejected") {
    setError(`history of ${id}`, show.reason);
    fill($("timeline"), h("li", { class: "muted" }, "The history could not be loaded."));
    $("instance-meta").textContent = "";
  } else {
    setError(`history of ${id}`, null);
    const rows = Array.isArray(show.value) ? show.value : [];
    for (const r of rows) {
      if (r.type === "snapshot.created" && r.data && r.data.workflow) await learnTasks(r.data.workflow.tasks);
    }
    const fresh = !initial ? new Set(inst.commits.map((c) => c.seq)) : null;
    inst.commits = commitsOf(rows);
    renderTimeline(fresh);
    if (fresh) {
      const added = inst.commits.filter((c) => !fresh.has(c.seq)).length;
      if (added > 0) announce(`Timeline updated: ${added} new commit${added === 1 ? "" : "s"}.`);
    }
  }

  if (head.status === "fulfilled" && head.value) {
    const s = head.value;
    if (s.workflow) await learnTasks(s.workflow.tasks);
    fill($("instance-meta"),
      "Now ", statusEl(s.status),
      s.workflow ? ` · workflow ${s.workflow.name}${s.workflow.version ? " " + s.workflow.version : ""}` : "",
      ` · ${s.runs ?? 0} run${s.runs === 1 ? "" : "s"} · ${s.commits ?? 0} commits, ${s.events ?? 0} events · last seq ${s.last_seq ?? "?"}`,
      ...(s.last_time ? [" at ", timeEl(s.last_time)] : []));
    setError(`state of ${id}`, null);
  } else if (head.status === "rejected") {
    $("instance-meta").textContent = "";
    if (show.status !== "rejected") setError(`state of ${id}`, head.reason);
  }

  renderVerify(verify);

  if (initial) {
    if (inst.selected != null) selectCommit(inst.selected, { fromHash: true });
  }
}

function commitsOf(rows) {
  const out = [];
  let cur = null;
  for (const r of rows) {
    if (!cur || cur.seq !== r.seq) {
      cur = { seq: r.seq, time: r.time, actor: r.actor, command: r.command, commit: r.commit, rows: [] };
      out.push(cur);
    }
    cur.rows.push(r);
  }
  return out;
}

function renderVerify(res) {
  const box = $("verify");
  if (res.status === "rejected") {
    fill(box, h("span", { class: "badge unknown" }, "verification: not available"),
      h("p", { class: "detail" }, res.reason.message));
    return;
  }
  const v = res.value || {};
  const problems = Array.isArray(v.problems) ? v.problems : [];
  if (v.ok && problems.length === 0) {
    fill(box, h("span", { class: "badge ok" }, "verified: intact"),
      h("p", { class: "detail" }, `${v.messages ?? 0} messages, ${v.events ?? 0} events checked: hash chain, runs and invariants hold.`));
    return;
  }
  fill(box,
    h("span", { class: "badge bad" }, `problems: ${problems.length}`),
    v.incomplete ? h("p", { class: "detail" }, "The verification stopped early: there may be more.") : null,
    h("ul", {}, problems.map((p) =>
      h("li", {}, `seq ${p.seq}${p.through && p.through !== p.seq ? ".." + p.through : ""}: ${p.kind}: ${p.detail}`))));
}

// boundary is the mark where a run ends or starts, in words.
function boundary(parts) {
  return h("li", { class: "run-boundary" }, parts.map((p) => h("span", { class: p.kind }, p.text)));
}

function renderTimeline(previous) {
  const ol = $("timeline");
  if (inst.commits.length === 0) {
    fill(ol, h("li", { class: "muted" }, "This history is empty."));
    return;
  }
  // Keep the keyboard focus on the commit it was on.
  const focused = document.activeElement && document.activeElement.closest ? document.activeElement.closest(".commit-btn") : null;
  const focusSeq = focused ? focused.dataset.seq : null;

  const items = [];
  let run = null; // the run of the last event shown
  let runs = 0;
  let ended = false; // run was ended by a deletion (and the end shown)
  for (const c of inst.commits) {
    const eventItems = [];
    c.rows.forEach((r, k) => {
      if (r.run && r.run !== run) {
        runs++;
        const parts = [];
        if (run && !ended) parts.push({ kind: "ends", text: `run …${shortRun(run)} ends` });
        parts.push({ kind: "starts", text: `run …${shortRun(r.run)} starts${runs > 1 ? ` (run ${runs} of this instance)` : ""}` });
        // Between commits, or inside the commit that replaced the run.
        (k === 0 ? items : eventItems).push(boundary(parts));
        run = r.run;
        ended = false;
      }
      eventItems.push(eventItem(r));
    });
    items.push(commitItem(c, eventItems, previous));
    const last = c.rows[c.rows.length - 1];
    if (last && last.type === "snapshot.deleted" && run && !ended) {
      items.push(boundary([{ kind: "ends", text: `run …${shortRun(run)} ends (snapshot deleted)` }]));
      ended = true;
    }
  }
  fill(ol, ...items);
  if (focusSeq) {
    const again = ol.querySelector(`.commit-btn[data-seq="${CSS.escape(focusSeq)}"]`);
    if (again) again.focus();
  }
}

function commitItem(c, eventItems, previous) {
  const refused = c.rows.find((r) => r.refused);
  const undecodable = c.rows.find((r) => r.error);
  const selected = c.seq === inst.selected;
  const isNew = previous && !previous.has(c.seq);
  return h("li", {
    class: `commit${selected ? " selected" : ""}${refused ? " refused" : ""}${undecodable ? " undecodable" : ""}`,
    dataset: { seq: String(c.seq) },
  },
  h("button", {
    type: "button", class: "commit-btn", "aria-pressed": selected ? "true" : "false",
    dataset: { seq: String(c.seq) },
    onclick: () => selectCommit(c.seq),
  },
  h("span", { class: "seq" }, `seq ${c.seq}`),
  h("span", { class: "when" }, timeEl(c.time)),
  c.actor ? h("span", { class: "actor" }, c.actor) : null,
  c.command ? h("span", { class: "command" }, c.command) : null,
  isNew ? h("span", { class: "tag" }, "new") : null,
  h("span", { class: "chosen" }, selected ? "shown in the state panel" : "")),
  refused ? h("p", { class: "marker" }, `Refused: this commit decodes but was not folded: ${refused.refused}`) : null,
  undecodable ? h("p", { class: "marker" }, `Does not decode: ${undecodable.error}`) : null,
  h("ol", { class: "events", "aria-label": `events of seq ${c.seq}` }, eventItems));
}

function eventItem(r) {
  if (r.error && !r.type) {
    return h("li", { class: "event" },
      h("span", { class: "etype" }, "(undecodable)"),
      h("span", { class: "esummary" }, r.summary || "message does not decode"),
      h("span", { class: "ewho" }, ""));
  }
  const who = r.who || "";
  return h("li", { class: "event" },
    h("code", { class: "etype" }, r.type || "(no type)"),
    h("span", { class: "esummary" }, r.summary || ""),
    h("span", { class: "ewho" }, who ? `by ${who}` : ""));
}

// ---- state as of a commit ----

function selectCommit(seq, { fromHash = false } = {}) {
  inst.selected = seq;
  for (const li of $("timeline").querySelectorAll("li.commit")) {
    const on = seq != null && li.dataset.seq === String(seq);
    li.classList.toggle("selected", on);
    const btn = li.querySelector(".commit-btn");
    btn.setAttribute("aria-pressed", on ? "true" : "false");
    btn.querySelector(".chosen").textContent = on ? "shown in the state panel" : "";
  }
  if (!fromHash) history.replaceState(null, "", instanceHash(inst.id, seq));
  if (seq == null) {
    fill($("state-body"), h("p", { class: "muted" }, "No commit chosen yet: choose one in the timeline."));
    return;
  }
  loadState(seq);
}

async function loadState(seq) {
  const id = inst.id;
  const gen = ++inst.stateGen;
  const i = inst.commits.findIndex((c) => c.seq === seq);
  const prev = i > 0 ? inst.commits[i - 1].seq : null;
  const known = i >= 0 || inst.commits.length === 0;
  $("state-heading").textContent = `State as of seq ${seq}`;
  fill($("state-body"), h("p", { class: "muted" }, "Loading…"));
  const [state, diff] = await Promise.allSettled([
    api("state", { id, "at-seq": seq }),
    prev != null ? api("diff", { id, from: prev, to: seq }) : Promise.resolve(null),
  ]);
  if (gen !== inst.stateGen || id !== inst.id) return;
  const parts = [];
  if (!known) parts.push(h("p", { class: "muted" }, `Seq ${seq} is not a commit of this history: the state is as of the last commit at or before it.`));
  if (state.status === "rejected") {
    setError(`state at seq ${seq}`, state.reason);
    parts.push(h("p", {}, "The state could not be loaded."));
  } else {
    setError(`state at seq ${seq}`, null);
    if (state.value && state.value.workflow) await learnTasks(state.value.workflow.tasks);
    parts.push(...stateView(state.value, inst.commits[i]));
  }
  parts.push(h("h3", { id: "changes-heading" }, prev != null ? `Changes from seq ${prev} to seq ${seq}` : "Changes"));
  if (prev == null) {
    parts.push(h("p", { class: "no-diff" }, i === 0
      ? "This is the first commit of the history: there is no earlier state to compare with."
      : "No earlier commit known to compare with."));
  } else if (diff.status === "rejected") {
    setError(`changes at seq ${seq}`, diff.reason);
    parts.push(h("p", {}, "The changes could not be loaded."));
  } else {
    setError(`changes at seq ${seq}`, null);
    parts.push(diffView(diff.value));
  }
  fill($("state-body"), ...parts);
}

function stateView(s, commit) {
  if (!s) return [h("p", {}, "No state.")];
  const kv = [];
  const add = (k, ...v) => kv.push(h("dt", {}, k), h("dd", {}, ...v));
  const snap = s.snapshot || {};
  const st = snap.state || {};
  if (commit) add("commit", `${commit.command || "?"} by ${commit.actor || "?"} at `, timeEl(commit.time));
  add("status", statusEl(s.status));
  if (s.exists === false) add("snapshot", none("none: the instance was deleted, or not created yet"));
  if (s.workflow) add("workflow", `${s.workflow.name}${s.workflow.version ? " " + s.workflow.version : ""}`);
  if (s.run) add("run", h("code", { title: s.run }, `…${shortRun(s.run)}`), ` (${s.runs ?? 1} run${s.runs === 1 ? "" : "s"})`);
  if (st.kind) add("state", st.kind);
  if (st.position && st.position.kind) {
    add("position", h("code", {}, position(st.position)));
    const p = st.position;
    if (p.kind === "AtTask") add("current task", task(p.task_id));
    if (p.kind === "AtSignal" && p.signal_name) add("waiting for", `external event ${JSON.stringify(p.signal_name)}`);
    if (p.kind === "AtDelay" && p.wake_at) add("waiting until", timeEl(p.wake_at));
  }
  if (st.last_completed_task) add("last task", task(st.last_completed_task));
  if (st.error) add("error", st.error);
  if (st.reason || st.by) add(st.kind === "Cancelled" ? "cancelled" : "reason", [st.reason ? `reason: ${st.reason}` : "", st.by ? `; by: ${st.by}` : ""].join(""));
  if (st.interrupted_at_task) add("interrupted", `at task ${task(st.interrupted_at_task)}`);
  if (st.final_output) add("output", h("code", {}, b64text(st.final_output)));
  if (snap.initial_input) add("input", h("code", {}, b64text(snap.initial_input)));

  const signals = Object.entries(s.signals || {});
  add("signals", signals.length === 0 ? none("none pending")
    : h("ul", {}, signals.map(([kind, r]) => h("li", {}, `${kind}: ${request(r)}`))));

  const results = Object.entries(s.results || {});
  add("results", results.length === 0 ? none("none yet")
    : h("ul", {}, results.map(([id, out]) => h("li", {}, h("strong", {}, task(id)), " ", h("code", {}, b64text(out))))));

  add("history", `${s.commits ?? 0} commits, ${s.events ?? 0} events up to seq ${s.last_seq ?? "?"}`);
  return [h("dl", { class: "kv", "aria-label": `state as of seq ${s.at_seq ?? s.last_seq}` }, kv)];
}

function diffView(d) {
  const changes = d && Array.isArray(d.changes) ? d.changes : [];
  if (changes.length === 0) return h("p", { class: "no-changes" }, "This commit changed nothing in the state.");
  const cell = (v) => (v === "" || v == null ? none() : v);
  return h("table", { class: "changes" },
    h("caption", { class: "sr-only" }, "Changed fields, before and after"),
    h("colgroup", {}, h("col", { class: "field" }), h("col", { class: "value" }), h("col", { class: "value" })),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "Before"), h("th", { scope: "col" }, "After"))),
    h("tbody", {}, changes.map((c) =>
      h("tr", {}, h("th", { scope: "row" }, h("code", {}, c.field)), h("td", {}, cell(c.from)), h("td", {}, cell(c.to))))));
}

// ---- live updates ----

// coalesce runs fn at most once at a time, soon after the last call, and
// once more if called while it ran.
function coalesce(fn, delay = 150) {
  let timer = null;
  let running = false;
  let again = false;
  const run = async () => {
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await fn();
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = () => {
    if (!timer) timer = setTimeout(run, delay);
  };
  return schedule;
}

const refreshList = coalesce(() => loadList({ live: true }));
const refreshInstance = coalesce(() => loadInstance({}));

function onChange(change) {
  const ids = Array.isArray(change.instances) ? change.instances : [];
  const more = !!change.more;
  if (!current) return;
  if (current.view === "list") {
    listChanged = new Set(ids);
    refreshList();
  } else if (current.view === "instance" && (more || ids.includes(current.id))) {
    refreshInstance();
  }
}

function setLive(state, text) {
  $("live").dataset.state = state;
  $("live-text").textContent = text;
}

let source = null;
let lostOnce = false;

function connectLive() {
  if (!("EventSource" in window)) {
    setLive("offline", "no live updates (this browser has no EventSource)");
    return;
  }
  source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    setLive("live", "live");
    if (lostOnce) {
      // Changes may have been missed while the stream was down.
      lostOnce = false;
      onChange({ instances: [], more: true });
    }
  });
  source.addEventListener("error", () => {
    lostOnce = true;
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (the server refused the stream): try again
      // later ourselves.
      setLive("offline", "reconnecting");
      source.close();
      setTimeout(connectLive, 5000);
    } else {
      setLive("reconnecting", "reconnecting");
    }
  });
  source.addEventListener("change", (ev) => {
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      return;
    }
    onChange(data || {});
  });
}

// ---- start ----

window.addEventListener("hashchange", route);
route();
connectLive();
