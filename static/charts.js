// Charts of one run with uPlot: loss, accuracy and learning rate on one shared x axis (step or
// wall-clock time). This file only draws; run.js owns the data (`view`) and decides when to
// redraw. Exposes window.PandaCharts.
"use strict";

(function () {
  const COLORS = {
    train: "#2f6fdf", trainRaw: "rgba(47, 111, 223, 0.22)", val: "#d9480f", trainEval: "#0c8599", parent: "#868e96",
    lr: "#6741d9", chance: "#9aa1ad", best: "#1f8a4c", nonfinite: "#c8312e",
    marker: { set_lr: "#6741d9", set_pace: "#2b6cb0", pause: "#b7791f", resume: "#1f8a4c", stop: "#c8312e", alert: "#e8590c" },
  };

  // Three significant digits, exponent form below 1e-3 and from 1e5: "0.0046", "1.5e-4", "1e-8"
  // (as app/web/present.py number(), so the page and the charts read the same).
  function num(v) {
    if (v === null || v === undefined) return "–";
    const r = Number(v.toPrecision(3));
    const a = Math.abs(r);
    return a === 0 || (a >= 1e-3 && a < 1e5) ? String(r) : r.toExponential().replace("e+", "e");
  }
  // Step labels that do not collide on a long run: 950k, 1M, 1.25M.
  const compact = (v) => (v >= 1e6 ? `${Number((v / 1e6).toPrecision(4))}M` : v >= 1e4 ? `${Number((v / 1e3).toPrecision(4))}k` : num(v));
  // First index whose value is >= x in a sorted array.
  function lowerBound(xs, x) {
    let [lo, hi] = [0, xs.length];
    while (lo < hi) [lo, hi] = xs[(lo + hi) >> 1] < x ? [((lo + hi) >> 1) + 1, hi] : [lo, (lo + hi) >> 1];
    return lo;
  }
  // TensorBoard's debiased exponential moving average; gaps (null) do not disturb it.
  function smooth(raw, w) {
    let [last, n] = [0, 0];
    return raw.map((x) => (x === null ? null : ((last = last * w + (1 - w) * x), (n += 1), w ? last / (1 - w ** n) : x)));
  }
  // Short text beside an event marker.
  function eventLabel(ev) {
    const p = { ...ev, ...ev.payload };
    const pace = p.steps_per_second == null ? "full speed" : `pace ${num(p.steps_per_second)}/s`;
    const alert = `⚠ ${String(p.kind).replace(/_/g, " ")}`; // an alert (app/worker/alerts.py)
    return { set_lr: `lr ${num(p.lr)}`, step: `step ${p.n}`, set_pace: pace, alert }[ev.type] || ev.type;
  }

  // "Ignore outliers" (as TensorBoard): the 1st to 99th percentile of the shown series' points
  // (the rows held are the visible range: the whole run, or a zoom's rows), with a margin, so
  // step 1 (or a spike) does not squash the rest.
  function robust(u, log) {
    const vals = [];
    for (let s = 1; s < u.series.length; s++) {
      if (!u.series[s].show) continue;
      for (let i = 0; i < u.data[s].length; i += s >= 3 ? 1 : Math.ceil(u.data[s].length / 4000)) {
        const v = u.data[s][i];
        if (v != null && (!log || v > 0)) vals.push(v);
      }
    }
    if (vals.length < 20) return null;
    vals.sort((a, b) => a - b);
    const [lo, hi] = [vals[Math.ceil(0.01 * (vals.length - 1))], vals[Math.floor(0.99 * (vals.length - 1))]];
    const pad = Math.max((hi - lo) * 0.2, Math.abs(hi) * 1e-3, 1e-12);
    return log ? [lo / 1.3, hi * 1.3] : [lo - pad, hi + pad];
  }
  const yRange = (view, kind, log) => (u, min, max) => {
    const r = kind !== "lr" && view.outliers ? robust(u, log) : null;
    if (r) [min, max] = r;
    if (min == null || max == null) return kind === "acc" ? [0, 1] : [0.1, 1];
    if (log) return r || uPlot.rangeLog(min, max, 10, true);
    const pad = r ? 0 : Math.max((max - min) * 0.05, Math.abs(max) * 1e-3, 1e-12);
    return kind === "acc" ? [Math.max(0, min - pad), Math.min(1, max + pad)] : [min - pad, max + pad];
  };
  // The x range: the zoomed one, else the data's, widened to a fork's parent's last step.
  const xRange = (view) => (u, min, max) => {
    if (view.zoom) return [view.zoom.min, view.zoom.max];
    if (view.parent && !view.timeAxis && view.parent.step.length) max = Math.max(max, view.parent.step.at(-1));
    return min === max ? [min - 1, max + 1] : [min, max];
  };

  // Drawn over each chart, following zoom and resize: chance level, a fork's parent curve, the
  // best validation point, a dashed line per applied event, a red tick per non-finite loss.
  function overlay(kind, view) {
    function draw(u) {
      const { ctx } = u;
      const { left, top, width, height } = u.bbox;
      const dpr = window.devicePixelRatio || 1;
      const set = view.shown();
      const steps = set.cols.step;
      const xOf = (s) => (view.timeAxis ? set.cols.time[Math.min(lowerBound(steps, s), steps.length - 1)] : s);
      const X = (s) => u.valToPos(xOf(s), "x", true);
      const Y = (v) => u.valToPos(v, "y", true);
      const line = (color, dash, pts) => {
        ctx.strokeStyle = color;
        ctx.setLineDash(dash.map((d) => d * dpr));
        ctx.beginPath();
        pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        ctx.stroke();
      };
      const label = (text, x, y, color) => { // on a light backing, left of x near the right edge
        const w = ctx.measureText(text).width;
        const x0 = x + w + 6 * dpr > left + width ? x - 4 * dpr - w : x + 4 * dpr;
        ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
        ctx.fillRect(x0 - dpr, y - 10 * dpr, w + 2 * dpr, 13 * dpr);
        ctx.fillStyle = color;
        ctx.fillText(text, x0, y);
        return x0 + w;
      };
      ctx.save();
      ctx.clip(new Path2D(`M${left} ${top}h${width}v${height}h${-width}z`));
      Object.assign(ctx, { font: `${11 * dpr}px system-ui, sans-serif`, textAlign: "left", textBaseline: "alphabetic", lineWidth: dpr });
      if (kind !== "lr" && steps.length) {
        const col = `val_${kind}`;
        if (view.classes) {
          const y = Y(kind === "loss" ? Math.log(view.classes) : 1 / view.classes);
          line(COLORS.chance, [2, 3], [[left, y], [left + width, y]]);
          label("chance", left + width, y - 3 * dpr, COLORS.chance);
        }
        const p = view.parent;
        if (p && view.showParent && !view.timeAxis) line(COLORS.parent, [6, 4], p.step.map((s, i) => [X(s), Y(p[col][i])]).filter((pt, i) => p[col][i] !== null));
        let best = -1; // the lowest validation loss, marked on both charts
        set.cols.val_loss.forEach((v, i) => { if (v !== null && (best < 0 || v < set.cols.val_loss[best])) best = i; });
        if (best >= 0 && view.showVal && set.cols[col][best] !== null) {
          const [x, y] = [X(steps[best]), Y(set.cols[col][best])];
          line(COLORS.best, [], [[x + 5 * dpr, y], ...Array.from({ length: 14 }, (_, k) => [x + 5 * dpr * Math.cos(k / 2), y + 5 * dpr * Math.sin(k / 2)])]);
          label(`best ${num(set.cols[col][best])}`, x, y < top + 20 * dpr ? y + 18 * dpr : y - 8 * dpr, COLORS.best);
        }
      }
      // Event markers in step order; a label takes the first row where it fits. An event before
      // the first step (a pace set at creation) stands at the axis's start.
      const rowEnds = [];
      const drawn = [];
      const events = view.events.filter((ev) => ev.step != null && ev.type !== "alert_handled").sort((a, b) => a.step - b.step || a.id - b.id);
      for (const ev of events) {
        let x = Math.round(X(ev.step));
        if (x < left && steps.length && u.scales.x.min <= xOf(steps[0]) && ev.step < steps[0]) x = left + dpr;
        if (!(x >= left && x <= left + width)) continue;
        drawn.push(ev.id);
        const color = COLORS.marker[ev.type] || "#5d6677";
        line(color, [4, 3], [[x, top], [x, top + height]]);
        let row = rowEnds.findIndex((end) => end < x);
        if (row < 0 && rowEnds.length < 5) row = rowEnds.length;
        if (row >= 0) rowEnds[row] = label(eventLabel(ev), x, top + (12 + 13 * row) * dpr, color) + 4 * dpr;
      }
      u.root.dataset.markers = drawn.join(" "); // which events are on the chart (tests)
      ctx.fillStyle = COLORS.nonfinite;
      for (const s of set.nonfinite) ctx.fillRect(X(s) - dpr, top, 2 * dpr, 8 * dpr);
      ctx.restore();
    }
    return { hooks: { draw } };
  }

  // Tick steps 1, 2, 5 x 10^k over a wide range: a diverging loss passes uPlot's defaults.
  const INCRS = [];
  for (let k = -16; k <= 300; k++) INCRS.push(10 ** k, 2 * 10 ** k, 5 * 10 ** k);

  function options(kind, view, hooks, width) {
    const log = kind === "lr" || (kind === "loss" && view.lossLog);
    const value = (u, v) => num(v);
    // Evaluations are sparse: dotted while few, so a single one is visible.
    const sparse = (i) => ({ spanGaps: true, show: view.showVal, points: { show: (u) => u.data[i].filter((v) => v !== null).length <= 300, size: 5 } });
    // The per-step training figures are the mini-batch's in training mode: say what that adds.
    const cfg = (view.run && view.run.config) || {};
    const extras = [cfg.dropout > 0 && "dropout", cfg.batchnorm && "batch stats"].filter(Boolean);
    const mode = `training mode${extras.length ? `: ${extras.join(", ")}` : ""}`;
    const series = kind === "lr"
      ? [{ label: "lr", stroke: COLORS.lr, width: 1.5, value, paths: uPlot.paths.stepped({ align: 1 }) }]
      : [
        { label: `train ${kind}, raw`, stroke: COLORS.trainRaw, width: 1, value, show: view.showTrain },
        { label: `train ${kind} (${mode})`, stroke: COLORS.train, width: 1.5, value, show: view.showTrain },
        { label: `val ${kind}`, stroke: COLORS.val, width: 2, value, ...sparse(3) },
        // The training split measured like validation (eval mode, as many rows): the gap to
        // val is the overfitting gap (issue 8).
        { label: `train ${kind} (eval mode)`, stroke: COLORS.trainEval, width: 2, dash: [6, 3], value, ...sparse(4) },
      ];
    return {
      width,
      height: { loss: 190, acc: 160, lr: 150 }[kind],
      scales: { x: { time: view.timeAxis, range: xRange(view) }, y: { distr: log ? 3 : 1, log: 10, range: yRange(view, kind, log) } },
      series: [view.timeAxis ? {} : { label: "step", value: (u, v) => (v == null ? "–" : v) }, ...series.map((s) => ({ points: { show: false }, ...s }))],
      axes: [
        view.timeAxis ? { space: 90 } : { space: 80, values: (u, splits) => splits.map(compact) },
        { size: 60, incrs: INCRS, values: (u, splits) => splits.map((v) => (v == null ? "" : num(v))) },
      ],
      cursor: { sync: { key: "pandamode" }, drag: { x: true, y: false, setScale: false } },
      legend: { live: true },
      hooks,
      plugins: [overlay(kind, view)],
    };
  }

  // Each chart's columns from the rows shown (training curves smoothed as the slider says).
  function columns(view) {
    const d = view.shown().cols;
    const x = view.timeAxis ? d.time : d.step;
    const kinds = ["loss", "acc"].map((k) => [k, [x, d[`train_${k}`], smooth(d[`train_${k}`], view.weight), d[`val_${k}`], d[`train_eval_${k}`]]]);
    return { ...Object.fromEntries(kinds), lr: [x, d.lr] };
  }

  const create = (kind, el, view, hooks, data) => new uPlot(options(kind, view, hooks, Math.max(300, el.clientWidth)), data, el);

  window.PandaCharts = { create, columns, lowerBound };
})();
