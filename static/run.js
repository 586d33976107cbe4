// The run page: one EventSource for live data, charts redrawn at most every 100 ms in an
// animation frame, the chart controls. The worker controls live in run-commands.js.
// window.pandamode = {charts, data, events, ...} is the page's state, also read by the e2e tests.
"use strict";

(function () {
  const run = JSON.parse(document.getElementById("run-data").textContent);
  const COLUMNS = ["step", "time", "lr", "train_loss", "train_acc", "val_loss", "val_acc"];
  const { ACTIVE } = PandaCommands;
  const $ = (id) => document.getElementById(id);

  const state = {
    run,
    data: Object.fromEntries(COLUMNS.map((c) => [c, []])),
    smooth: { train_loss: [], train_acc: [] },
    ema: { train_loss: { last: 0, n: 0 }, train_acc: { last: 0, n: 0 } },
    weight: Number($("smoothing").value),
    lossLog: $("loss-log").checked,
    events: [], // sorted by id; an applied command is updated in place when its step arrives
    nonfinite: [], // steps whose training loss was NaN or infinite
    evalCount: 0, // rows with a validation result (charts.js dots them while they are few)
    zoom: null, // {min, max} of the step axis while the user has zoomed in
    // A fork's parent: its validation results after the fork step (step -> {loss, acc}), laid
    // out on this run's steps so the charts can draw them as one more series (charts.js).
    parent:
      run.parent_id === null || run.parent_id === undefined
        ? null
        : { id: run.parent_id, from: run.parent_step || 0, val: new Map(), loss: [], acc: [] },
  };
  const charts = {};
  const commands = PandaCommands.init(); // the worker controls (run-commands.js)

  // ---- data in ------------------------------------------------------------------------------

  // Tolerates bare NaN/Infinity tokens too (Python's json.dumps default), turned into null.
  function parseJSON(text) {
    try {
      return JSON.parse(text);
    } catch {
      return JSON.parse(text.replace(/-?\bInfinity\b|\bNaN\b/g, "null"));
    }
  }
  // The API sends non-finite floats as the strings "NaN" / "Infinity" / "-Infinity" and uses
  // null for "no value"; the charts want a finite number or null (a gap).
  const finite = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const isNonFinite = (v) => typeof v === "string" || (typeof v === "number" && !Number.isFinite(v));

  // Append a columnar batch, skipping steps already held: a reconnect may resend a few rows.
  function appendMetrics(batch) {
    const steps = batch.step || [];
    const d = state.data;
    let last = d.step.length ? d.step[d.step.length - 1] : -Infinity;
    for (let i = 0; i < steps.length; i++) {
      if (!(steps[i] > last)) continue;
      last = steps[i];
      for (const c of COLUMNS) {
        const col = batch[c];
        d[c].push(col ? finite(col[i]) : null);
      }
      if (batch.train_loss && isNonFinite(batch.train_loss[i])) state.nonfinite.push(steps[i]);
      if (batch.val_acc && batch.val_acc[i] !== null && batch.val_acc[i] !== undefined) {
        state.evalCount += 1;
      }
    }
    schedule();
  }

  function upsertEvent(ev) {
    const i = state.events.findIndex((e) => e.id === ev.id);
    if (i >= 0) state.events[i] = ev;
    else {
      state.events.push(ev);
      state.events.sort((a, b) => a.id - b.id);
    }
    renderEventLog();
    schedule();
  }

  function applyStatus(r) {
    const changed = r.status !== state.run.status;
    state.run = r;
    const badge = $("status-badge");
    badge.textContent = r.status;
    badge.className = `badge ${r.status}`;
    updateCounter();
    commands.update(r);
    // On a status change (not on every lr or best-metric update, which the stream sends many
    // times a second) the htmx status fragment refreshes now rather than at its next tick.
    if (changed) document.body.dispatchEvent(new CustomEvent("pandamode-status"));
  }

  // ---- the stream ---------------------------------------------------------------------------

  let source = null;
  function openStream() {
    const d = state.data.step;
    const since = d.length ? d[d.length - 1] : 0;
    source = new EventSource(`/api/runs/${run.id}/stream?since=${since}`);
    source.addEventListener("metrics", (e) => appendMetrics(parseJSON(e.data)));
    source.addEventListener("event", (e) => upsertEvent(parseJSON(e.data)));
    source.addEventListener("status", (e) => applyStatus(parseJSON(e.data)));
    source.addEventListener("error", () => {
      // The browser retries by itself (sending Last-Event-ID) unless the server refused the
      // stream outright; then reopen later with ?since= so nothing is fetched twice.
      if (source.readyState === EventSource.CLOSED && ACTIVE.has(state.run.status)) {
        setTimeout(openStream, 2000);
      } else if (!ACTIVE.has(state.run.status)) {
        source.close();
      }
    });
  }

  // The parent's evaluations after the fork step, again every few seconds while it trains.
  const PARENT_POLL_MS = 5000;
  async function loadParent() {
    const p = state.parent;
    let active = false;
    try {
      const [metrics, parentRun] = await Promise.all([
        fetch(`/api/runs/${p.id}/metrics?after=${p.from}&max_points=2000`),
        fetch(`/api/runs/${p.id}`),
      ]);
      if (metrics.ok) {
        const cols = parseJSON(await metrics.text());
        const val = new Map();
        (cols.step || []).forEach((step, i) => {
          const loss = finite(cols.val_loss[i]);
          const acc = finite(cols.val_acc[i]);
          if (loss !== null || acc !== null) val.set(step, { loss, acc });
        });
        p.val = val;
        p.loss.length = 0; // re-laid out on this run's steps at the next redraw
        p.acc.length = 0;
        schedule();
      }
      if (parentRun.ok) active = ACTIVE.has(parseJSON(await parentRun.text()).status);
    } catch (err) {
      active = true; // try again later
    }
    if (active) setTimeout(loadParent, PARENT_POLL_MS);
  }

  // The parent's values at this run's steps, for the rows not laid out yet.
  function alignParent() {
    const p = state.parent;
    if (!p) return;
    const steps = state.data.step;
    for (let i = p.loss.length; i < steps.length; i++) {
      const v = p.val.get(steps[i]);
      p.loss.push(v ? v.loss : null);
      p.acc.push(v ? v.acc : null);
    }
  }

  // Events recorded before the page opened (the stream then sends changes).
  async function loadEvents() {
    try {
      const resp = await fetch(`/api/runs/${run.id}/events`);
      if (!resp.ok) return;
      const body = parseJSON(await resp.text());
      for (const ev of Array.isArray(body) ? body : body.events || []) upsertEvent(ev);
    } catch (err) {
      console.warn("could not load events", err);
    }
  }

  // ---- drawing ------------------------------------------------------------------------------

  // Redraws are batched into one animation frame, and at most one every MIN_REDRAW_MS: a fast
  // run sends thousands of steps a second, and redrawing 3 charts of 100k points at 60 fps would
  // starve the page (and the trainer on a small machine) for no visible gain.
  const MIN_REDRAW_MS = 100;
  let pending = false;
  let lastDraw = 0;
  function schedule() {
    if (pending) return;
    pending = true;
    const wait = Math.max(0, lastDraw + MIN_REDRAW_MS - performance.now());
    setTimeout(() => requestAnimationFrame(redraw), wait);
  }

  function redraw() {
    pending = false;
    lastDraw = performance.now();
    for (const key of ["train_loss", "train_acc"]) {
      PandaCharts.smoothInto(state.data[key], state.smooth[key], state.ema[key], state.weight);
    }
    alignParent();
    for (const [kind, chart] of Object.entries(charts)) {
      chart.setData(PandaCharts.columns(kind, state), state.zoom === null);
      if (state.zoom !== null) chart.setScale("x", state.zoom);
    }
    updateCounter();
  }

  function updateCounter() {
    const d = state.data.step;
    const shown = Math.max(state.run.step || 0, d.length ? d[d.length - 1] : 0);
    $("step-counter").textContent = shown;
    // The status panel re-renders every 2 s from the server; between renders (and right after
    // one, which can trail the stream) it shows the live step too.
    const panelStep = $("status-step");
    if (panelStep && Number(panelStep.textContent) < shown) panelStep.textContent = shown;
    $("no-data").hidden = d.length > 0;
  }
  // Any swap on this page may be the status panel's (an outerHTML swap replaces its element).
  document.body.addEventListener("htmx:afterSwap", updateCounter);

  // Zoom one chart by dragging: every chart follows. Double-click returns to the full range.
  function zoomTo(range) {
    state.zoom = range;
    for (const chart of Object.values(charts)) {
      if (range) chart.setScale("x", range);
      else chart.setData(chart.data, true);
    }
  }
  const chartHooks = {
    setSelect: [
      (u) => {
        if (u.select.width > 4) {
          const min = u.posToVal(u.select.left, "x");
          const max = u.posToVal(u.select.left + u.select.width, "x");
          zoomTo({ min, max });
        }
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      },
    ],
    ready: [(u) => u.over.addEventListener("dblclick", () => zoomTo(null))],
  };

  function makeChart(kind) {
    const el = $(`chart-${kind}`);
    if (charts[kind]) charts[kind].destroy();
    charts[kind] = PandaCharts.create(kind, el, state, chartHooks);
    applyVisibility(kind);
  }

  function applyVisibility(kind) {
    if (kind === "lr") return;
    const train = $("show-train").checked;
    const val = $("show-val").checked;
    const chart = charts[kind];
    chart.setSeries(1, { show: train });
    chart.setSeries(2, { show: train });
    chart.setSeries(3, { show: val });
    if (state.parent) chart.setSeries(4, { show: $("show-parent").checked });
  }

  // ---- the event log (the markers' DOM trace) -----------------------------------------------

  function renderEventLog() {
    const items = state.events.map((ev) => {
      const li = document.createElement("li");
      li.dataset.id = ev.id;
      li.dataset.type = ev.type;
      li.dataset.step = ev.step ?? "";
      const where = ev.step === null || ev.step === undefined ? "pending" : `at step ${ev.step}`;
      li.textContent = `${PandaCharts.eventLabel(ev)} (${ev.source || "user"}, ${where})`;
      if (ev.step === null || ev.step === undefined) li.className = "pending";
      if (ev.error) {
        li.className = "error";
        li.textContent += `: ${ev.error}`;
      }
      return li;
    });
    $("event-log").replaceChildren(...items);
  }

  // ---- chart controls -----------------------------------------------------------------------

  $("smoothing").addEventListener("input", () => {
    state.weight = Number($("smoothing").value);
    $("smoothing-value").textContent = state.weight.toFixed(2);
    for (const key of ["train_loss", "train_acc"]) {
      state.smooth[key].length = 0; // recompute from the first point with the new weight
      state.ema[key] = { last: 0, n: 0 };
    }
    schedule();
  });
  $("loss-log").addEventListener("change", () => {
    state.lossLog = $("loss-log").checked;
    makeChart("loss"); // a scale's distribution is fixed at creation
    schedule();
  });
  for (const id of ["show-train", "show-val", "show-parent"]) {
    const box = $(id);
    if (box) box.addEventListener("change", () => ["loss", "acc"].forEach(applyVisibility));
  }
  window.addEventListener("resize", () => {
    for (const [kind, chart] of Object.entries(charts)) {
      chart.setSize({ width: Math.max(300, $(`chart-${kind}`).clientWidth), height: chart.height });
    }
  });

  // ---- start --------------------------------------------------------------------------------

  window.pandamode = {
    charts,
    data: state.data,
    events: state.events,
    state,
    lrValue: commands.lrValue,
    stepN: commands.stepN,
    paceValue: commands.paceValue,
  };
  ["loss", "acc", "lr"].forEach(makeChart);
  applyStatus(run);
  loadEvents();
  if (state.parent) loadParent();
  openStream();
})();
