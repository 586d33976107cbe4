// The run page: ONE EventSource for the metrics (an overview of the history, then live rows)
// and for the server-rendered fragments the stream pushes (swapped in with htmx); charts redrawn
// at most every 100 ms; zoom fetches exact rows; keyboard shortcuts. Everything else (controls,
// messages, event log, fork list, settings) is server-rendered.
// window.pandamode = {charts, data, events, state} is the page's state, also read by the e2e tests.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const PAGE = JSON.parse($("page-data").textContent);
  const { columns: COLUMNS, run } = PAGE;
  const ACTIVE = new Set(PAGE.active);
  const { lowerBound } = PandaCharts;
  // Exact live rows held beyond the overview; past this the held data is folded into a fresh
  // overview, so the page's memory does not grow with the run.
  const LIVE_CAP = 20000;
  const width = () => Math.max(300, $("chart-loss").clientWidth);

  // A set of rows the charts can show: columns (finite numbers or null), the smoothed training
  // curves, the steps whose training loss was not finite, the number of evaluations.
  const makeSet = () => ({
    cols: Object.fromEntries(COLUMNS.map((c) => [c, []])),
    smooth: { train_loss: [], train_acc: [] },
    ema: { train_loss: { last: 0, n: 0 }, train_acc: { last: 0, n: 0 } },
    nonfinite: [],
    evals: 0,
  });
  const checked = (id) => Boolean($(id) && $(id).checked);
  const view = {
    run, full: makeSet(), zoom: null, liveFrom: 0, events: [], classes: PAGE.classes, parent: null,
    weight: Number($("smoothing").value), lossLog: checked("loss-log"), outliers: checked("outliers"),
    timeAxis: checked("time-axis"), showTrain: true, showVal: true, showParent: true,
    shown() { return this.zoom ? this.zoom.set : this.full; },
  };
  const charts = {};

  // ---- data in ------------------------------------------------------------------------------
  // Non-finite floats arrive as "NaN"/"Infinity" strings (bare tokens are tolerated, as null).
  function parse(text) {
    try {
      return JSON.parse(text);
    } catch {
      return JSON.parse(text.replace(/-?\bInfinity\b|\bNaN\b/g, "null"));
    }
  }
  const finite = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);

  // Append a columnar batch to a set, skipping steps already held (a reconnect may resend).
  function append(set, batch) {
    const steps = batch.step || [];
    const d = set.cols;
    let last = d.step.length ? d.step[d.step.length - 1] : -Infinity;
    for (let i = 0; i < steps.length; i++) {
      if (!(steps[i] > last)) continue;
      last = steps[i];
      for (const c of COLUMNS) d[c].push(batch[c] ? finite(batch[c][i]) : null);
      if (batch.train_loss && typeof batch.train_loss[i] === "string") set.nonfinite.push(steps[i]);
      if (batch.val_loss && batch.val_loss[i] != null) set.evals += 1;
    }
  }
  // The whole run as an overview, then the exact rows already held after it.
  function replaceFull(overview) {
    const old = view.full;
    const last = overview.step.length ? overview.step[overview.step.length - 1] : 0;
    view.full = makeSet();
    append(view.full, overview);
    view.liveFrom = view.full.cols.step.length;
    const i = lowerBound(old.cols.step, last + 1);
    append(view.full, Object.fromEntries(COLUMNS.map((c) => [c, old.cols[c].slice(i)])));
    view.full.nonfinite.push(...old.nonfinite.filter((s) => s > last));
    schedule();
  }
  const metricsUrl = (id, q) => `/api/runs/${id}/metrics?${new URLSearchParams(q)}`;
  let folding = false;
  async function fold() {
    if (folding || view.full.cols.step.length - view.liveFrom <= LIVE_CAP) return;
    folding = true;
    try {
      const resp = await fetch(metricsUrl(run.id, { max_points: width() }));
      if (resp.ok) replaceFull(parse(await resp.text()));
    } finally {
      folding = false;
    }
  }
  function upsertEvent(ev) {
    const i = view.events.findIndex((e) => e.id === ev.id);
    if (i >= 0) view.events[i] = ev;
    else view.events.push(ev);
    schedule();
  }

  // Server-rendered parts (app/web/fragments.py): each top-level element replaces the element
  // with its id, unless the user is typing in it or has touched it (data-keep marks those; a
  // touched select keeps its choice).
  function swapFragments(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    for (const el of [...doc.body.children]) {
      const old = el.id && $(el.id);
      if (!old || old.outerHTML === el.outerHTML) continue;
      const typing = old.contains(document.activeElement) && document.activeElement.matches("input, select, textarea");
      if (typing || (old.hasAttribute("data-touched") && old.tagName !== "SELECT")) continue;
      if (old.hasAttribute("data-touched")) {
        const keep = [...el.querySelectorAll("option")].find((o) => o.value === old.value);
        if (!keep) continue;
        el.querySelectorAll("option").forEach((o) => o.toggleAttribute("selected", o === keep));
        el.setAttribute("data-touched", "");
      }
      htmx.swap(old, el.outerHTML, { swapStyle: "outerHTML" });
    }
    updateCounter();
  }
  const catchUp = () => fetch(`/runs/${run.id}/_fragments`).then((r) => r.text()).then(swapFragments);

  // ---- the stream ---------------------------------------------------------------------------
  // On connect: status, an overview when far behind, exact rows, events, then live. A run that
  // has ended sends everything and closes (a reconnect gets 204, which stops EventSource).
  function openStream() {
    const steps = view.full.cols.step;
    const since = steps.length ? steps[steps.length - 1] : 0;
    const source = new EventSource(`/api/runs/${run.id}/stream?since=${since}&points=${width()}`);
    let fresh = true;
    source.addEventListener("open", () => (fresh = true));
    source.addEventListener("overview", (e) => replaceFull(parse(e.data)));
    source.addEventListener("metrics", (e) => {
      append(view.full, parse(e.data));
      fold();
      schedule();
    });
    source.addEventListener("event", (e) => upsertEvent(parse(e.data)));
    source.addEventListener("status", (e) => {
      view.run = parse(e.data);
      if (fresh) catchUp(); // what changed between the page's render and this connection
      fresh = false;
      updateCounter();
    });
    for (const part of ["status", "event"]) source.addEventListener(`fragment-${part}`, (e) => swapFragments(e.data));
    source.addEventListener("error", () => {
      // The browser retries by itself unless the server refused outright (not a 204: the run
      // ended); then reopen later, after the last row held.
      if (source.readyState === EventSource.CLOSED && ACTIVE.has(view.run.status)) setTimeout(openStream, 2000);
    });
  }

  // A fork's parent: its evaluations after the fork step, again every few seconds while it trains.
  async function loadParent(active) {
    const id = run.parent_id;
    const resp = await fetch(metricsUrl(id, { after: run.parent_step || 0, max_points: width() }));
    if (resp.ok) {
      const cols = parse(await resp.text());
      const p = { step: [], val_loss: [], val_acc: [] };
      (cols.step || []).forEach((s, i) => {
        if (cols.val_loss[i] == null) return;
        p.step.push(s);
        p.val_loss.push(finite(cols.val_loss[i]));
        p.val_acc.push(finite(cols.val_acc[i]));
      });
      view.parent = p;
      schedule();
    }
    if (active) {
      const parent = await fetch(`/api/runs/${id}`).then((r) => r.json()).catch(() => ({}));
      setTimeout(() => loadParent(ACTIVE.has(parent.status)), 5000);
    }
  }

  // ---- drawing ------------------------------------------------------------------------------
  // At most one redraw per 100 ms, in an animation frame: a fast run sends thousands of steps a
  // second, and redrawing at 60 fps would starve the page for no visible gain.
  let pending = false;
  let lastDraw = 0;
  function schedule() {
    if (pending) return;
    pending = true;
    setTimeout(() => requestAnimationFrame(redraw), Math.max(0, lastDraw + 100 - performance.now()));
  }
  function redraw() {
    pending = false;
    lastDraw = performance.now();
    const set = view.shown();
    for (const k of ["train_loss", "train_acc"]) PandaCharts.smoothInto(set.cols[k], set.smooth[k], set.ema[k], view.weight);
    for (const [kind, chart] of Object.entries(charts)) chart.setData(PandaCharts.columns(kind, set, view.timeAxis), true);
    updateCounter();
  }
  function updateCounter() {
    const steps = view.full.cols.step;
    const shown = Math.max(view.run.step || 0, steps.length ? steps[steps.length - 1] : 0);
    $("step-counter").textContent = shown;
    const panel = $("status-step");
    if (panel && Number(panel.textContent) < shown) panel.textContent = shown;
    $("no-data").hidden = steps.length > 0;
  }

  // Zoom by dragging on any chart: the exact rows of that range (an overview again when it is
  // wide). Double-click: the whole run.
  async function zoomTo(min, max) {
    if (min === null) {
      view.zoom = null;
      return schedule();
    }
    const d = view.full.cols;
    const stepAt = (x) => (view.timeAxis ? d.step[Math.min(lowerBound(d.time, x), d.step.length - 1)] : x);
    const [a, b] = [Math.floor(stepAt(min)), Math.ceil(stepAt(max))];
    // Up to 5000 rows (or two per pixel) come back exact; a wider range is an overview again.
    const resp = await fetch(metricsUrl(run.id, { after: Math.max(0, a - 1), before: b + 1, max_points: Math.max(5000, 2 * width()) }));
    if (!resp.ok) return;
    const set = makeSet();
    append(set, parse(await resp.text()));
    view.zoom = { set, min, max };
    schedule();
  }
  const hooks = {
    setSelect: [(u) => {
      if (u.select.width > 2) zoomTo(u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x"));
      u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    }],
    ready: [(u) => u.over.addEventListener("dblclick", () => zoomTo(null))],
  };
  function makeCharts() {
    for (const kind of ["loss", "acc", "lr"]) {
      if (charts[kind]) charts[kind].destroy();
      charts[kind] = PandaCharts.create(kind, $(`chart-${kind}`), view, hooks);
    }
  }

  // ---- chart controls and keyboard -----------------------------------------------------------
  const restyle = { "loss-log": "lossLog", outliers: "outliers", "time-axis": "timeAxis", "show-train": "showTrain", "show-val": "showVal", "show-parent": "showParent" };
  for (const [id, key] of Object.entries(restyle)) {
    if (!$(id)) continue;
    $(id).addEventListener("change", () => {
      view[key] = $(id).checked;
      if (key === "timeAxis") view.zoom = null;
      makeCharts(); // a scale's kind and a series' visibility are fixed at creation
    });
  }
  $("smoothing").addEventListener("input", () => {
    view.weight = Number($("smoothing").value);
    $("smoothing-value").textContent = view.weight.toFixed(2);
    for (const set of [view.full, view.zoom && view.zoom.set].filter(Boolean)) {
      set.smooth = { train_loss: [], train_acc: [] };
      set.ema = { train_loss: { last: 0, n: 0 }, train_acc: { last: 0, n: 0 } };
    }
    makeCharts();
  });
  window.addEventListener("resize", () => Object.entries(charts).forEach(([k, c]) => c.setSize({ width: Math.max(300, $(`chart-${k}`).clientWidth), height: c.height })));
  // Fields the stream's pushes must leave alone once the user has touched them; the lr slider
  // and field move together.
  document.addEventListener("input", (e) => {
    const t = e.target;
    const keep = t.closest("[data-keep]");
    if (keep) keep.setAttribute("data-touched", "");
    if (t.id === "lr-slider") $("lr-input").value = Number((10 ** Number(t.value)).toPrecision(3));
    if (t.id === "lr-input" && Number(t.value) > 0) $("lr-slider").value = Math.log10(Number(t.value));
  });
  // Space pause/resume (as media players), s step, ] and [ the learning rate x2 and /2; not
  // while typing in a field.
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest("input, select, textarea, [contenteditable]")) return;
    const press = (id) => $(id) && !$(id).disabled && ($(id).click(), true);
    if (e.key === " ") {
      e.preventDefault();
      document.activeElement.blur(); // a focused button would take the space as a click too
      press("pause") || press("resume");
    } else if (e.key === "s") press("step");
    else if ((e.key === "]" || e.key === "[") && !$("apply-lr").disabled) {
      const field = $("lr-input");
      field.value = Number((Number(field.value) * (e.key === "]" ? 2 : 0.5)).toPrecision(3));
      field.dispatchEvent(new Event("input", { bubbles: true }));
      $("lr-form").requestSubmit();
    }
  });
  document.body.addEventListener("htmx:afterSwap", updateCounter);

  // ---- start --------------------------------------------------------------------------------
  window.pandamode = { charts, state: view, get data() { return view.full.cols; }, get events() { return view.events; } };
  makeCharts();
  updateCounter();
  if (run.parent_id != null) loadParent(PAGE.parent_active);
  openStream();
})();
