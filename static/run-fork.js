// The fork control of the run page: go back to one of the run's checkpoints and go on in a new
// run, maybe with another learning rate. The button is htmx (hx-post + json-enc in run.html) and
// reads its body from body(); this keeps the checkpoint list current, labels each checkpoint
// with the last evaluation before it, and opens the new run once the server has made it.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const { ACTIVE } = PandaCommands;
  const panel = $("fork-panel");
  const runId = Number(panel.dataset.runId);
  const select = $("fork-step");
  const button = $("fork");
  const REFRESH_MS = 3000;

  // The latest validation result at or before `step`, from the rows the page holds (run.js):
  // a binary search for the step (rows are in step order), then back to the last evaluation.
  function evaluationAt(step) {
    const d = window.pandamode && window.pandamode.data;
    if (!d) return null;
    let lo = 0;
    let hi = d.step.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (d.step[mid] <= step) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo - 1; i >= 0; i--) {
      if (d.val_loss[i] !== null) return { loss: d.val_loss[i], acc: d.val_acc[i] };
    }
    return null;
  }

  // One label per checkpoint step; the one with the lowest validation loss says "best", since
  // that is usually the checkpoint to go back to.
  function labels(steps) {
    const evs = steps.map(evaluationAt);
    let best = -1;
    evs.forEach((ev, i) => {
      if (ev && ev.loss !== null && (best < 0 || ev.loss < evs[best].loss)) best = i;
    });
    return steps.map((step, i) => {
      const ev = evs[i];
      if (!ev) return `step ${step}`;
      const acc = ev.acc === null ? "" : `, acc ${PandaCharts.sig(ev.acc)}`;
      const mark = i === best && steps.length > 1 ? " · best" : "";
      return `step ${step} (val loss ${PandaCharts.sig(ev.loss)}${acc})${mark}`;
    });
  }

  // Labels follow the data: the page may still be loading its history when the list is built.
  let labelledRows = -1;
  function relabel() {
    const rows = window.pandamode ? window.pandamode.data.step.length : 0;
    if (rows === labelledRows) return;
    labelledRows = rows;
    const options = [...select.options].filter((o) => o.value !== "");
    const texts = labels(options.map((o) => Number(o.value)));
    options.forEach((option, i) => (option.textContent = texts[i]));
  }

  // Newest checkpoint first. Not while the list is open: replacing its options would close it,
  // and not again once the run has settled (it makes no more checkpoints; an idle page is quiet).
  let final = false; // loaded after the run settled: the list cannot change any more
  let chosen = false; // the user picked a checkpoint: keep it; until then, the newest
  select.addEventListener("change", () => (chosen = true));
  async function refresh() {
    if (final || document.activeElement === select) return;
    const status = window.pandamode ? window.pandamode.state.run.status : "";
    let rows;
    try {
      const response = await fetch(`/api/runs/${runId}/checkpoints`);
      if (!response.ok) return;
      rows = await response.json();
    } catch {
      return; // the next refresh tries again
    }
    const steps = [...new Set(rows.map((c) => c.step))].sort((a, b) => b - a);
    const kept = select.value;
    const texts = labels(steps);
    const options = steps.map((s, i) => new Option(texts[i], String(s)));
    if (!options.length) options.push(new Option("no checkpoint yet", ""));
    select.replaceChildren(...options);
    final = !ACTIVE.has(status);
    labelledRows = window.pandamode ? window.pandamode.data.step.length : 0;
    if (chosen && kept !== "" && steps.includes(Number(kept))) select.value = kept;
    button.disabled = !steps.length;
  }

  function body() {
    const request = { step: Number(select.value), overrides: {} };
    const lr = $("fork-lr").value.trim();
    if (lr !== "") request.overrides.lr = Number(lr);
    const name = $("fork-name").value.trim();
    if (name) request.name = name;
    return request;
  }

  const show = (text, kind) => PandaCommands.showMessage($("fork-messages"), text, kind);

  // The new run exists: pause this one if asked (so a single worker moves over), then open it.
  async function openChild(child) {
    const status = window.pandamode ? window.pandamode.state.run.status : "";
    if ($("fork-pause").checked && ACTIVE.has(status) && status !== "paused") {
      try {
        await fetch(`/api/runs/${runId}/commands`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ type: "pause" }),
        });
      } catch { /* the new run is made; this run keeps going */ }
    }
    window.location.assign(`/runs/${child.id}`);
  }

  panel.addEventListener("htmx:afterRequest", (e) => {
    const xhr = e.detail.xhr;
    if (e.detail.successful) {
      const child = JSON.parse(xhr.responseText);
      show(`run #${child.id} made from step ${child.parent_step}; opening it`, "info");
      openChild(child);
    } else if (xhr && xhr.status) {
      show(`fork refused: HTTP ${xhr.status}: ${PandaCommands.describeError(xhr)}`, "error");
    }
  });
  panel.addEventListener("htmx:sendError", () => show("network error: no fork made", "error"));

  refresh();
  setInterval(refresh, REFRESH_MS);
  setInterval(relabel, 500);
  window.PandaFork = { body, refresh };
})();
