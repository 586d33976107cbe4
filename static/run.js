// The run page: ONE EventSource carries the metrics (an overview of the history, then live
// rows) and the server-rendered fragments the stream pushes (swapped in with htmx). Charts are
// redrawn at most every 100 ms; a drag fetches the exact rows of a range; keyboard shortcuts.
// Controls, messages, event log, fork list and settings are server-rendered (app/web/).
// window.pandamode = {charts, data, events, state} is the page's state, also read by e2e tests.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const PAGE = JSON.parse($("page-data").textContent); // from Python constants (present.py)
  const { columns: COLUMNS, run } = PAGE;
  const ACTIVE = new Set(PAGE.active);
  const { lowerBound } = PandaCharts;
  const LIVE_CAP = 20000; // exact rows held after the overview before folding into a fresh one
  const width = () => Math.max(300, $("chart-loss").clientWidth);
  // A set of rows for the charts: columns (finite numbers or null) and the non-finite losses.
  const makeSet = () => ({ cols: Object.fromEntries(COLUMNS.map((c) => [c, []])), nonfinite: [] });
  const checked = (id) => Boolean($(id) && $(id).checked);
  const view = {
    run, full: makeSet(), zoom: null, liveFrom: 0, events: [], classes: PAGE.classes, parent: null,
    weight: Number($("smoothing").value), lossLog: checked("loss-log"), outliers: checked("outliers"),
    timeAxis: checked("time-axis"), showTrain: true, showVal: true, showParent: true,
    shown() { return this.zoom ? this.zoom.set : this.full; },
  };
  const charts = {};

  const parse = JSON.parse; // non-finite floats arrive as the strings "NaN", "Infinity"
  const finite = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  // Append a columnar batch, skipping steps already held (a reconnect may resend a few).
  function append(set, batch) {
    const d = set.cols;
    let last = d.step.length ? d.step[d.step.length - 1] : -Infinity;
    (batch.step || []).forEach((step, i) => {
      if (!(step > last)) return;
      last = step;
      for (const c of COLUMNS) d[c].push(batch[c] ? finite(batch[c][i]) : null);
      if (batch.train_loss && typeof batch.train_loss[i] === "string") set.nonfinite.push(step);
    });
    return set;
  }
  // The whole run as an overview, then the exact rows already held after it.
  function replaceFull(overview) {
    const old = view.full;
    const last = overview.step.length ? overview.step[overview.step.length - 1] : 0;
    view.full = append(makeSet(), overview);
    view.liveFrom = view.full.cols.step.length;
    const i = lowerBound(old.cols.step, last + 1);
    append(view.full, Object.fromEntries(COLUMNS.map((c) => [c, old.cols[c].slice(i)])));
    view.full.nonfinite.push(...old.nonfinite.filter((s) => s > last));
    schedule();
  }
  const metrics = (id, q) => fetch(`/api/runs/${id}/metrics?${new URLSearchParams(q)}`).then((r) => (r.ok ? r.text().then(parse) : null));
  let folding = null; // the overview being fetched
  const fold = () => (folding ||= view.full.cols.step.length - view.liveFrom > LIVE_CAP
    && metrics(run.id, { max_points: width() }).then((o) => o && replaceFull(o)).finally(() => (folding = null)));

  // Server-rendered parts (app/web/fragments.py): each top-level element replaces the element
  // with its id, unless the user is typing in it or has touched it (a data-keep element).
  function swapFragments(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    for (const el of [...doc.body.children]) {
      const old = el.id && $(el.id);
      if (!old || old.outerHTML === el.outerHTML || old.hasAttribute("data-touched")) continue;
      if (old.contains(document.activeElement) && document.activeElement.matches("input, select")) continue;
      htmx.swap(old, el.outerHTML, { swapStyle: "outerHTML" });
    }
    updateCounter();
  }

  // On connect: status, an overview when far behind, exact rows, events, then live. A run that
  // has ended sends everything and closes (a reconnect gets 204, which stops EventSource).
  function openStream() {
    const steps = view.full.cols.step;
    const since = steps.length ? steps[steps.length - 1] : 0;
    const source = new EventSource(`/api/runs/${run.id}/stream?since=${since}&points=${width()}`);
    let fresh = true;
    const on = (name, fn) => source.addEventListener(name, fn);
    on("open", () => (fresh = true));
    on("overview", (e) => replaceFull(parse(e.data)));
    on("metrics", (e) => (append(view.full, parse(e.data)), fold(), schedule()));
    on("event", (e) => {
      const ev = parse(e.data);
      const i = view.events.findIndex((x) => x.id === ev.id);
      view.events.splice(i < 0 ? view.events.length : i, i < 0 ? 0 : 1, ev);
      schedule();
    });
    on("status", (e) => {
      view.run = parse(e.data);
      // What changed between the page's render and this connection.
      if (fresh) fetch(`/runs/${run.id}/_fragments`).then((r) => r.text()).then(swapFragments);
      fresh = false;
      updateCounter();
    });
    on("fragment-status", (e) => swapFragments(e.data));
    on("fragment-event", (e) => swapFragments(e.data));
    on("fragment-health", (e) => swapFragments(e.data)); // app/web/health_panel.py
    on("fragment-pictures", (e) => swapFragments(e.data)); // app/web/pictures.py
    on("error", () => {
      // The browser retries by itself unless the server refused outright; then try again later.
      if (source.readyState === EventSource.CLOSED && ACTIVE.has(view.run.status)) setTimeout(openStream, 2000);
    });
  }

  // A fork's parent: its evaluations after the fork step, again every 5 s while it may train.
  async function loadParent() {
    const cols = await metrics(run.parent_id, { after: run.parent_step || 0, max_points: width() });
    if (cols) {
      const keep = cols.step.map((s, i) => i).filter((i) => cols.val_loss[i] !== null);
      const pick = (c) => keep.map((i) => finite(cols[c][i]));
      view.parent = { step: keep.map((i) => cols.step[i]), val_loss: pick("val_loss"), val_acc: pick("val_acc") };
      schedule();
    }
    if (PAGE.parent_active) setTimeout(loadParent, 5000);
  }

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
    const data = PandaCharts.columns(view);
    for (const [kind, chart] of Object.entries(charts)) chart.setData(data[kind], true);
    updateCounter();
  }
  function updateCounter() {
    const steps = view.full.cols.step;
    const shown = Math.max(view.run.step || 0, steps.length ? steps[steps.length - 1] : 0);
    $("step-counter").textContent = shown;
    if ($("status-step") && Number($("status-step").textContent) < shown) $("status-step").textContent = shown;
    $("no-data").hidden = steps.length > 0;
  }

  // Drag on any chart: the rows of that range, exact up to 5000 rows (or two per pixel), an
  // overview again when wider. Double-click: the whole run.
  async function zoomTo(min, max) {
    view.zoom = null;
    if (min !== null) {
      const d = view.full.cols;
      const stepAt = (x) => (view.timeAxis ? d.step[Math.min(lowerBound(d.time, x), d.step.length - 1)] : x);
      const q = { after: Math.max(0, Math.floor(stepAt(min)) - 1), before: Math.ceil(stepAt(max)) + 1 };
      const cols = await metrics(run.id, { ...q, max_points: Math.max(5000, 2 * width()) });
      if (cols) view.zoom = { set: append(makeSet(), cols), min, max };
    }
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
    const data = PandaCharts.columns(view);
    for (const kind of ["loss", "acc", "lr"]) {
      if (charts[kind]) charts[kind].destroy();
      charts[kind] = PandaCharts.create(kind, $(`chart-${kind}`), view, hooks, data[kind]);
    }
  }

  const controls = { "loss-log": "lossLog", outliers: "outliers", "time-axis": "timeAxis", smoothing: "weight",
    "show-train": "showTrain", "show-val": "showVal", "show-parent": "showParent" };
  for (const [id, key] of Object.entries(controls)) {
    $(id)?.addEventListener("input", () => {
      view[key] = id === "smoothing" ? Number($(id).value) : $(id).checked;
      if (key === "timeAxis") view.zoom = null;
      if (key === "weight") $("smoothing-value").textContent = view.weight.toFixed(2);
      makeCharts(); // scales and series are fixed when a chart is made
    });
  }
  window.addEventListener("resize", () => Object.entries(charts).forEach(([k, c]) => c.setSize({ width: Math.max(300, $(`chart-${k}`).clientWidth), height: c.height })));
  // A data-keep element the user touched keeps its value through pushes; the lr slider and
  // field move together.
  document.addEventListener("input", (e) => {
    const t = e.target;
    t.closest("[data-keep]")?.setAttribute("data-touched", "");
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

  window.pandamode = { charts, state: view, get data() { return view.full.cols; }, get events() { return view.events; } };
  makeCharts();
  updateCounter();
  if (run.parent_id != null) loadParent();
  openStream();
})();
