// Compare page: each run's validation loss and accuracy, one colour per run, on one chart per
// metric (uPlot). The runs (id, label, colour) are the page's JSON; each run's curve is the
// overview of /metrics?max_points=<chart width> (each bucket's min and max kept), so a
// 10M-step run costs what a short one does.
"use strict";

(function () {
  const runs = JSON.parse(document.getElementById("compare-data").textContent);
  const note = document.getElementById("compare-messages");
  const num = (v) => (v === null || v === undefined || !Number.isFinite(Number(v)) ? null : Number(v));
  // Compact step labels so a long run's ticks do not collide: 950k, 1.2M.
  const compact = (v) => {
    const a = Math.abs(v);
    if (a >= 1e6) return `${+(v / 1e6).toFixed(2)}M`;
    return a >= 1e4 ? `${+(v / 1e3).toFixed(1)}k` : String(v);
  };

  // Only the evaluation rows: validation metrics exist every eval_every steps.
  function evalRows(cols) {
    const out = { step: [], val_loss: [], val_acc: [] };
    cols.step.forEach((s, i) => {
      if (cols.val_acc[i] === null && cols.val_loss[i] === null) return;
      out.step.push(s);
      out.val_loss.push(num(cols.val_loss[i]));
      out.val_acc.push(num(cols.val_acc[i]));
    });
    return out;
  }

  function draw(el, key, tables, log) {
    const data = uPlot.join(tables.map((t) => [t.step, t[key]]));
    const fmt = (u, v) => (v == null ? "–" : Number(v.toPrecision(3)).toString());
    const series = [{ label: "step", value: (u, v) => (v == null ? "–" : compact(v)) }].concat(
      runs.map((r) => ({ label: r.label, stroke: r.colour, width: 2, spanGaps: true, value: fmt }))
    );
    const opts = {
      width: el.clientWidth, height: 320, series,
      scales: { x: { time: false }, y: log ? { distr: 3 } : { range: [0, 1] } },
      axes: [{ space: 70, values: (u, ticks) => ticks.map(compact) }, { size: 55 }],
    };
    el.dataset.series = String(runs.length);
    el.dataset.points = String(data[0].length);
    return new uPlot(opts, data, el);
  }

  async function fetchRun(run, points) {
    const resp = await fetch(`/api/runs/${run.id}/metrics?max_points=${points}`);
    if (!resp.ok) throw new Error(`run #${run.id}: HTTP ${resp.status}`);
    return evalRows(await resp.json());
  }

  async function main() {
    const lossEl = document.getElementById("chart-val-loss");
    const accEl = document.getElementById("chart-val-acc");
    const points = Math.max(200, Math.min(4000, Math.round(lossEl.clientWidth * 2)));
    const tables = await Promise.all(runs.map((r) => fetchRun(r, points)));
    const empty = runs.filter((r, i) => tables[i].step.length === 0).map((r) => r.label);
    if (empty.length) note.textContent = `no evaluation yet: ${empty.join(", ")}`;
    const charts = [draw(lossEl, "val_loss", tables, true), draw(accEl, "val_acc", tables, false)];
    window.addEventListener("resize", () => {
      for (const c of charts) c.setSize({ width: c.root.parentElement.clientWidth, height: 320 });
    });
  }

  main().catch((err) => {
    note.textContent = `could not draw the chart: ${err.message}`;
    note.classList.add("error");
  });
})();
