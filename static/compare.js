// Compare page: each run's validation curves, one colour per run, one chart per metric (uPlot).
// The runs (id, label, colour) and the charts (element, metric column, log scale) are the
// page's JSON, from Python. Each run's curve is the overview of /metrics?max_points=<width>
// (each bucket's min and max kept), so a 10M-step run costs what a short one does.
"use strict";

(function () {
  const spec = JSON.parse(document.getElementById("compare-data").textContent);
  const note = document.getElementById("compare-messages");
  const columns = spec.charts.map((c) => c.column);
  const num = (v) => (v === null || v === undefined || !Number.isFinite(Number(v)) ? null : Number(v));
  // Compact step labels so a long run's ticks do not collide: 950k, 1.2M.
  const compact = (v) => {
    const a = Math.abs(v);
    if (a >= 1e6) return `${+(v / 1e6).toFixed(2)}M`;
    return a >= 1e4 ? `${+(v / 1e3).toFixed(1)}k` : String(v);
  };

  // Only the evaluation rows (where any charted column has a value), as {step: [...], col: [...]}.
  function evalRows(cols) {
    const out = { step: [] };
    for (const c of columns) out[c] = [];
    cols[spec.step].forEach((s, i) => {
      if (columns.every((c) => cols[c][i] === null)) return;
      out.step.push(s);
      for (const c of columns) out[c].push(num(cols[c][i]));
    });
    return out;
  }

  function draw(chart, tables) {
    const el = document.getElementById(chart.id);
    const data = uPlot.join(tables.map((t) => [t.step, t[chart.column]]));
    const fmt = (u, v) => (v == null ? "–" : Number(v.toPrecision(3)).toString());
    const series = [{ label: "step", value: (u, v) => (v == null ? "–" : compact(v)) }].concat(
      spec.runs.map((r) => ({ label: r.label, stroke: r.colour, width: 2, spanGaps: true, value: fmt }))
    );
    const opts = {
      width: el.clientWidth, height: 320, series,
      scales: { x: { time: false }, y: chart.log ? { distr: 3 } : {} },
      axes: [{ space: 70, values: (u, ticks) => ticks.map(compact) }, { size: 55 }],
    };
    el.dataset.series = String(spec.runs.length);
    el.dataset.points = String(data[0].length);
    return new uPlot(opts, data, el);
  }

  async function fetchRun(run, points) {
    const resp = await fetch(`/api/runs/${run.id}/metrics?max_points=${points}`);
    if (!resp.ok) throw new Error(`run #${run.id}: HTTP ${resp.status}`);
    return evalRows(await resp.json());
  }

  async function main() {
    const width = document.getElementById(spec.charts[0].id).clientWidth;
    const points = Math.max(200, Math.min(4000, Math.round(width * 2)));
    const tables = await Promise.all(spec.runs.map((r) => fetchRun(r, points)));
    const empty = spec.runs.filter((r, i) => tables[i].step.length === 0).map((r) => r.label);
    if (empty.length) note.textContent = `no evaluation yet: ${empty.join(", ")}`;
    const charts = spec.charts.map((chart) => draw(chart, tables));
    window.addEventListener("resize", () => {
      for (const c of charts) c.setSize({ width: c.root.parentElement.clientWidth, height: 320 });
    });
  }

  main().catch((err) => {
    note.textContent = `could not draw the chart: ${err.message}`;
    note.classList.add("error");
  });
})();
