// Charts of one run with uPlot: loss, accuracy and learning rate on one shared x axis (step or
// wall-clock time). This file only draws; run.js owns the data (`view`) and decides when to
// redraw. Exposes window.PandaCharts.
"use strict";

(function () {
  const COLORS = {
    train: "#2f6fdf", trainRaw: "rgba(47, 111, 223, 0.22)", val: "#d9480f", parent: "#868e96",
    lr: "#6741d9", chance: "#9aa1ad", best: "#1f8a4c", nonfinite: "#c8312e",
    marker: { set_lr: "#6741d9", set_pace: "#2b6cb0", pause: "#b7791f", resume: "#1f8a4c", stop: "#c8312e" },
  };

  // Three significant digits, exponent form below 1e-3 and from 1e5: "0.0046", "1.5e-4", "1e-8"
  // (as app/web/present.py number(), so the page and the charts read the same).
  function num(v) {
    if (v === null || v === undefined) return "–";
    if (!Number.isFinite(v)) return String(v);
    const r = Number(v.toPrecision(3));
    const a = Math.abs(r);
    return a === 0 || (a >= 1e-3 && a < 1e5) ? String(r) : r.toExponential().replace("e+", "e");
  }
  // Axis labels that do not collide on a long run: 950k, 1M, 1.25M.
  function compact(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return `${Number((v / 1e6).toPrecision(4))}M`;
    return a >= 1e4 ? `${Number((v / 1e3).toPrecision(4))}k` : num(v);
  }
  // First index whose value is >= x in a sorted array (binary search).
  function lowerBound(xs, x) {
    let lo = 0;
    let hi = xs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  // TensorBoard's debiased exponential moving average, incremental: `ema` carries {last, n}
  // between calls. Non-finite points are gaps and do not disturb the average.
  function smoothInto(raw, out, ema, weight) {
    for (let i = out.length; i < raw.length; i++) {
      const x = raw[i];
      if (x === null) {
        out.push(null);
        continue;
      }
      ema.last = ema.last * weight + (1 - weight) * x;
      ema.n += 1;
      out.push(weight === 0 ? x : ema.last / (1 - weight ** ema.n));
    }
  }

  // Short text beside an event marker.
  function eventLabel(ev) {
    const p = ev.payload || {};
    if (ev.type === "set_lr") return `lr ${num(p.lr ?? ev.lr)}`;
    if (ev.type === "step") return `step ${p.n ?? ev.n ?? ""}`;
    if (ev.type === "set_pace") return p.steps_per_second == null ? "full speed" : `pace ${num(p.steps_per_second)}/s`;
    return ev.type;
  }

  // "Ignore outliers" (as TensorBoard): the 2nd to 98th percentile of the visible points of
  // the shown series, with a margin, so step 1 (or a spike) does not squash the rest.
  function robust(u, log) {
    const xs = u.data[0];
    const { min, max } = u.scales.x;
    const i0 = min == null ? 0 : lowerBound(xs, min);
    const i1 = max == null ? xs.length : lowerBound(xs, max + 1e-9);
    const stride = Math.max(1, Math.floor((i1 - i0) / 4000));
    const vals = [];
    for (let s = 1; s < u.series.length; s++) {
      if (!u.series[s].show) continue;
      for (let i = i0; i < i1; i += s === 3 ? 1 : stride) {
        const v = u.data[s][i];
        if (v != null && (!log || v > 0)) vals.push(v);
      }
    }
    if (vals.length < 20) return null;
    vals.sort((a, b) => a - b);
    const lo = vals[Math.floor(0.02 * (vals.length - 1))];
    const hi = vals[Math.ceil(0.98 * (vals.length - 1))];
    if (log) return [lo / 1.3, hi * 1.3];
    const pad = Math.max((hi - lo) * 0.15, Math.abs(hi) * 1e-3, 1e-12);
    return [lo - pad, hi + pad];
  }

  function yRange(view, kind, log) {
    return (u, min, max) => {
      const r = kind !== "lr" && view.outliers ? robust(u, log) : null;
      if (r) [min, max] = r;
      if (min == null || max == null) return kind === "acc" ? [0, 1] : [0.1, 1];
      if (log) return r || uPlot.rangeLog(min, max, 10, true);
      const pad = r ? 0 : Math.max((max - min) * 0.05, Math.abs(max) * 1e-3, 1e-12);
      return kind === "acc" ? [Math.max(0, min - pad), Math.min(1, max + pad)] : [min - pad, max + pad];
    };
  }

  // The x range: the zoomed one, else the data, widened to a fork's parent's last step.
  function xRange(view) {
    return (u, min, max) => {
      if (view.zoom) return [view.zoom.min, view.zoom.max];
      const p = view.parent;
      if (p && !view.timeAxis && p.step.length) max = Math.max(max, p.step.at(-1));
      return min === max ? [min - 1, max + 1] : [min, max];
    };
  }

  // Drawn over each chart, following zoom and resize: chance level, a fork's parent curve, the
  // best validation point, a dashed line per applied event, a red tick per non-finite loss.
  function overlay(kind, view) {
    function draw(u) {
      const { ctx } = u;
      const { left, top, width, height } = u.bbox;
      const dpr = window.devicePixelRatio || 1;
      const set = view.shown();
      const steps = set.cols.step;
      const xOf = (step) => (view.timeAxis ? set.cols.time[Math.min(lowerBound(steps, step), steps.length - 1)] : step);
      const X = (step) => u.valToPos(xOf(step), "x", true);
      const Y = (v) => u.valToPos(v, "y", true);
      const label = (text, x, y, color) => {
        const w = ctx.measureText(text).width;
        const x0 = x + w + 6 * dpr > left + width ? x - 4 * dpr - w : x + 4 * dpr;
        ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
        ctx.fillRect(x0 - dpr, y - 10 * dpr, w + 2 * dpr, 13 * dpr);
        ctx.fillStyle = color;
        ctx.fillText(text, x0, y);
        return [x0, x0 + w];
      };
      ctx.save();
      ctx.beginPath();
      ctx.rect(left, top, width, height);
      ctx.clip();
      ctx.font = `${11 * dpr}px system-ui, sans-serif`;
      ctx.textAlign = "left";
      ctx.textBaseline = "alphabetic";
      ctx.lineWidth = dpr;
      const line = (color, dash, pts) => {
        ctx.strokeStyle = color;
        ctx.setLineDash(dash.map((d) => d * dpr));
        ctx.beginPath();
        pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        ctx.stroke();
      };
      if (kind !== "lr" && steps.length) {
        if (view.classes) {
          const y = Y(kind === "loss" ? Math.log(view.classes) : 1 / view.classes);
          line(COLORS.chance, [2, 3], [[left, y], [left + width, y]]);
          label("chance", left + width, y - 3 * dpr, COLORS.chance);
        }
        const p = view.parent;
        if (p && view.showParent && !view.timeAxis) {
          const col = p[kind === "loss" ? "val_loss" : "val_acc"];
          line(COLORS.parent, [6, 4], p.step.map((s, i) => [X(s), Y(col[i])]).filter((pt, i) => col[i] !== null));
        }
        const val = set.cols[kind === "loss" ? "val_loss" : "val_acc"];
        let best = -1;
        set.cols.val_loss.forEach((v, i) => { if (v !== null && (best < 0 || v < set.cols.val_loss[best])) best = i; });
        if (best >= 0 && view.showVal && val[best] !== null) {
          const [x, y] = [X(steps[best]), Y(val[best])];
          ctx.strokeStyle = COLORS.best;
          ctx.setLineDash([]);
          ctx.lineWidth = 2 * dpr;
          ctx.beginPath();
          ctx.arc(x, y, 5 * dpr, 0, 2 * Math.PI);
          ctx.stroke();
          ctx.lineWidth = dpr;
          label(`best ${num(val[best])}`, x, y < top + 20 * dpr ? y + 18 * dpr : y - 8 * dpr, COLORS.best);
        }
      }
      // Event markers in step order; a label takes the first row where it fits. An event before
      // the first step (a pace set at creation) stands at the axis's start.
      const rowEnds = [];
      const drawn = [];
      const startInView = steps.length && u.scales.x.min <= xOf(steps[0]);
      const events = view.events.filter((ev) => ev.step != null).sort((a, b) => a.step - b.step || a.id - b.id);
      for (const ev of events) {
        let x = Math.round(X(ev.step));
        if (x < left && startInView && ev.step < steps[0]) x = left + dpr;
        if (!(x >= left && x <= left + width)) continue;
        drawn.push(ev.id);
        const color = COLORS.marker[ev.type] || "#5d6677";
        line(color, [4, 3], [[x, top], [x, top + height]]);
        const text = eventLabel(ev);
        let row = rowEnds.findIndex((end) => end < x);
        if (row < 0 && rowEnds.length < 5) row = rowEnds.length;
        if (row >= 0) rowEnds[row] = label(text, x, top + (12 + 13 * row) * dpr, color)[1] + 4 * dpr;
      }
      u.root.dataset.markers = drawn.join(" "); // which events are on the chart (tests)
      ctx.fillStyle = COLORS.nonfinite;
      for (const step of set.nonfinite) ctx.fillRect(X(step) - dpr, top, 2 * dpr, 8 * dpr);
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
    const series = kind === "lr"
      ? [{ label: "lr", stroke: COLORS.lr, width: 1.5, value, paths: uPlot.paths.stepped({ align: 1 }) }]
      : [
        { label: `train ${kind} (raw)`, stroke: COLORS.trainRaw, width: 1, value, show: view.showTrain },
        { label: `train ${kind}`, stroke: COLORS.train, width: 1.5, value, show: view.showTrain },
        { label: `val ${kind}`, stroke: COLORS.val, width: 2, value, spanGaps: true, show: view.showVal,
          points: { show: () => view.shown().evals <= 300, size: 5 } },
      ];
    const x = view.timeAxis ? { label: "time" } : { label: "step", value: (u, v) => (v == null ? "–" : String(Math.round(v))) };
    return {
      width,
      height: { loss: 190, acc: 160, lr: 150 }[kind],
      scales: { x: { time: view.timeAxis, range: xRange(view) }, y: { distr: log ? 3 : 1, log: 10, range: yRange(view, kind, log) } },
      series: [x, ...series.map((s) => ({ points: { show: false }, ...s }))],
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

  // The columns of a chart kind from a set of rows (arrays shared, uPlot only reads them).
  function columns(kind, set, timeAxis) {
    const d = set.cols;
    const x = timeAxis ? d.time : d.step;
    if (kind === "lr") return [x, d.lr];
    return [x, d[`train_${kind}`], set.smooth[`train_${kind}`], d[`val_${kind}`]];
  }

  const create = (kind, el, view, hooks) =>
    new uPlot(options(kind, view, hooks, Math.max(300, el.clientWidth)), columns(kind, view.shown(), view.timeAxis), el);

  window.PandaCharts = { create, columns, smoothInto, lowerBound, num };
})();
