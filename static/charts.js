// Charts of one run with uPlot: loss, accuracy and learning rate on one shared step axis.
// This file only draws; run.js owns the data and decides when to redraw (once per animation
// frame). Exposes window.PandaCharts.
"use strict";

(function () {
  const SYNC_KEY = "pandamode";
  const COLORS = {
    train: "#2f6fdf",
    trainRaw: "rgba(47, 111, 223, 0.22)",
    val: "#d9480f",
    parent: "#868e96",
    lr: "#6741d9",
    marker: { set_lr: "#6741d9", set_pace: "#2b6cb0", pause: "#b7791f", resume: "#1f8a4c", stop: "#c8312e" },
    nonfinite: "#c8312e",
  };

  // Three significant digits, switching to exponent form for very small or large numbers.
  function sig(v) {
    if (v === null || v === undefined || !Number.isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2).replace("e-", "e−");
    return Number(v.toPrecision(3)).toString();
  }

  // TensorBoard's debiased exponential moving average, computed incrementally: `ema` carries
  // {last, n} between calls so a new batch costs O(batch), and a slider change recomputes once.
  // Non-finite points are skipped (shown as gaps) and do not disturb the average.
  function smoothInto(raw, out, ema, weight) {
    for (let i = out.length; i < raw.length; i++) {
      const x = raw[i];
      if (x === null || !Number.isFinite(x)) {
        out.push(null);
        continue;
      }
      ema.last = ema.last * weight + (1 - weight) * x;
      ema.n += 1;
      out.push(weight === 0 ? x : ema.last / (1 - weight ** ema.n));
    }
  }

  // Short text drawn beside an event marker.
  function eventLabel(ev) {
    const p = ev.payload || {};
    if (ev.type === "set_lr") return `lr ${sig(p.lr ?? ev.lr)}`;
    if (ev.type === "step") return `step ${p.n ?? ev.n ?? ""}`.trim();
    if (ev.type === "set_pace") {
      const pace = p.steps_per_second ?? ev.steps_per_second;
      return pace == null ? "full speed" : `pace ${sig(pace)}/s`;
    }
    if (ev.type === "status" && p.status) return p.status;
    return ev.type;
  }

  const MAX_LABEL_ROWS = 6;

  // uPlot plugin: a dashed vertical line with a label at every applied event's step, and a red
  // tick at the top for every non-finite training loss. Drawn in the `draw` hook so it follows
  // zoom and resize for free. `state` is read at draw time, so new events need only a redraw.
  function markersPlugin(state) {
    function draw(u) {
      const { ctx } = u;
      const { left, top, width, height } = u.bbox;
      const dpr = window.devicePixelRatio || 1;
      ctx.save();
      ctx.beginPath();
      ctx.rect(left, top, width, height);
      ctx.clip();
      ctx.font = `${11 * dpr}px system-ui, sans-serif`;
      ctx.textAlign = "left"; // uPlot leaves its axis alignment on the shared context
      ctx.textBaseline = "alphabetic";
      ctx.lineWidth = dpr;
      // Markers in step order; each label takes the first row where it does not overlap the
      // previous label of that row, so events at the same step stack instead of colliding.
      const shown = state.events
        .filter((ev) => ev.step !== null && ev.step !== undefined)
        .sort((a, b) => a.step - b.step || a.id - b.id);
      const rowEnds = [];
      const maxRows = Math.max(1, Math.min(MAX_LABEL_ROWS, Math.floor((height / dpr - 4) / 13)));
      // Lines first, labels second (on a light backing), so no line crosses a label.
      const labels = [];
      const drawn = [];
      // An event before the first step (a pace set at creation, step 0) stands at the axis's
      // start while that start is in view, rather than off the chart.
      const steps = u.data[0];
      const first = steps.length ? steps[0] : null;
      const startInView = first !== null && u.scales.x.min <= first;
      for (const ev of shown) {
        let x = Math.round(u.valToPos(ev.step, "x", true));
        if (x < left && startInView && ev.step < first) x = left + dpr;
        if (x < left || x > left + width) continue;
        drawn.push(ev.id);
        const color = COLORS.marker[ev.type] || "#5d6677";
        ctx.strokeStyle = color;
        ctx.setLineDash([4 * dpr, 3 * dpr]);
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
        // Near the right edge a label goes on the left of its line instead of being clipped.
        const text = eventLabel(ev);
        const w = ctx.measureText(text).width;
        const flip = x + w + 6 * dpr > left + width;
        const x0 = flip ? x - 3 * dpr - w : x + 3 * dpr;
        let row = rowEnds.findIndex((end) => end < x0);
        if (row < 0 && rowEnds.length < maxRows) row = rowEnds.length;
        if (row < 0) continue; // no room: the line stays, the event log has the label
        rowEnds[row] = x0 + w + 4 * dpr;
        labels.push({ text, color, x0, w, y: top + (12 + 13 * row) * dpr });
      }
      u.root.dataset.markers = drawn.join(" "); // which events are on the chart (tests, debugging)
      ctx.setLineDash([]);
      for (const { text, color, x0, w, y } of labels) {
        ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
        ctx.fillRect(x0 - dpr, y - 10 * dpr, w + 2 * dpr, 13 * dpr);
        ctx.fillStyle = color;
        ctx.fillText(text, x0, y);
      }
      ctx.setLineDash([]);
      ctx.fillStyle = COLORS.nonfinite;
      for (const step of state.nonfinite) {
        const x = u.valToPos(step, "x", true);
        if (x < left || x > left + width) continue;
        ctx.fillRect(x - dpr, top, 2 * dpr, 8 * dpr);
      }
      ctx.restore();
    }
    return { hooks: { draw } };
  }

  // Tick steps 1, 2, 5 x 10^k over a wide range: uPlot's defaults stop near 1e16, and a
  // diverging loss passes that within a few steps (its axis would go blank just when it matters).
  const WIDE_INCRS = [];
  for (let k = -16; k <= 300; k++) for (const m of [1, 2, 5]) WIDE_INCRS.push(m * 10 ** k);

  // Log-axis ticks: 1-2-5 per decade when there is room, whole decades otherwise, thinned
  // further for a wide range (a diverging loss spans 30+ decades and uPlot's own splits then
  // vanish); the ends as a last resort so an axis always has labels. About one label per 22 px.
  function logSplits(u, axisIdx, min, max) {
    if (!(min > 0) || !(max > 0)) return [];
    const room = Math.max(2, Math.floor(u.bbox.height / (window.devicePixelRatio || 1) / 22));
    const lo = Math.floor(Math.log10(min));
    const hi = Math.ceil(Math.log10(max));
    const ticks = (mults, stride) => {
      const out = [];
      for (let k = lo; k <= hi; k += stride) {
        for (const m of mults) {
          const v = m * 10 ** k;
          if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) out.push(v);
        }
      }
      return out;
    };
    let out = ticks([1, 2, 5], 1);
    if (out.length > room) out = ticks([1], 1);
    for (let stride = 2; out.length > room; stride++) out = ticks([1], stride);
    return out.length >= 2 ? out : [min, max];
  }

  // Tick labels must fit the 60 px gutter: "1e36" rather than "1.00e+36".
  function tick(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) {
      return Number(v.toPrecision(2)).toExponential().replace("e+", "e").replace("e-", "e−");
    }
    return Number(v.toPrecision(4)).toString();
  }

  function axisValues(u, splits) {
    return splits.map((v) => (v === null || v === undefined ? "" : tick(v)));
  }

  // Accuracy lives in [0, 1]: pad the data range a little but never leave that interval.
  function accRange(u, min, max) {
    if (min === null || max === null) return [0, 1];
    const pad = Math.max(0.01, (max - min) * 0.05);
    return [Math.max(0, min - pad), Math.min(1, max + pad)];
  }

  // Validation results are sparse: dot each one while there are few (a single evaluation would
  // otherwise be invisible), then let the connecting line speak alone.
  const MAX_VAL_DOTS = 300;

  function trainValSeries(name, state) {
    const valDots = () => state.evalCount <= MAX_VAL_DOTS;
    const series = [
      { label: "step" },
      { label: `train ${name} (raw)`, stroke: COLORS.trainRaw, width: 1, points: { show: false } },
      { label: `train ${name}`, stroke: COLORS.train, width: 1.5, points: { show: false } },
      { label: `val ${name}`, stroke: COLORS.val, width: 2, spanGaps: true, points: { show: valDots, size: 5 } },
    ];
    // A fork also shows how its parent's validation went on from the fork step (run.js).
    if (state.parent) {
      series.push({
        label: `run #${state.parent.id} val ${name}`, stroke: COLORS.parent, width: 1.5,
        dash: [6, 4], spanGaps: true, points: { show: true, size: 4 },
      });
    }
    return series;
  }

  // The uPlot options for one chart kind ("loss", "acc", "lr").
  function options(kind, state, hooks, width) {
    const y = { auto: true };
    let series;
    if (kind === "loss") {
      series = trainValSeries("loss", state);
      if (state.lossLog) Object.assign(y, { distr: 3, log: 10 });
    } else if (kind === "acc") {
      series = trainValSeries("acc", state);
      y.range = accRange;
    } else {
      series = [
        { label: "step" },
        { label: "lr", stroke: COLORS.lr, width: 1.5, points: { show: false },
          paths: uPlot.paths.stepped({ align: 1 }) },
      ];
      Object.assign(y, { distr: 3, log: 10 });
    }
    return {
      width,
      height: { loss: 190, acc: 160, lr: 150 }[kind],
      scales: { x: { time: false }, y },
      series,
      // The x axis is the step on every chart (the page says so); no axis label saves height.
      axes: [
        {},
        y.distr === 3
          ? { values: axisValues, size: 60, incrs: WIDE_INCRS, splits: logSplits, filter: (u, sp) => sp }
          : { values: axisValues, size: 60, incrs: WIDE_INCRS },
      ],
      cursor: { sync: { key: SYNC_KEY }, drag: { x: true, y: false, setScale: false } },
      legend: { live: true },
      hooks,
      plugins: [markersPlugin(state)],
    };
  }

  // Columns for a chart kind; the arrays are shared with run.js (uPlot only reads them).
  function columns(kind, state) {
    const d = state.data;
    const s = state.smooth;
    const p = state.parent;
    if (kind === "loss") return [d.step, d.train_loss, s.train_loss, d.val_loss, ...(p ? [p.loss] : [])];
    if (kind === "acc") return [d.step, d.train_acc, s.train_acc, d.val_acc, ...(p ? [p.acc] : [])];
    return [d.step, d.lr];
  }

  function create(kind, el, state, hooks) {
    const width = Math.max(300, el.clientWidth);
    return new uPlot(options(kind, state, hooks, width), columns(kind, state), el);
  }

  window.PandaCharts = { create, columns, smoothInto, eventLabel, sig };
})();
