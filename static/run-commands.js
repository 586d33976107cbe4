// The worker controls of the run page: the lr slider and number field kept in sync, which
// command buttons make sense in which status, and what the server answered. The buttons
// themselves are htmx (hx-post + json-enc in run.html); they read their values through
// lrValue() / stepN() / paceValue(). Exposes window.PandaCommands.
"use strict";

(function () {
  const ACTIVE = new Set(["queued", "running", "paused"]); // a run in these may still change
  const $ = (id) => document.getElementById(id);

  // One line in a messages area (role=status): a confirmation ("info") or a refusal ("error").
  function showMessage(box, text, kind) {
    const p = document.createElement("p");
    p.className = kind;
    p.textContent = text;
    box.replaceChildren(p);
  }

  // The server's reason for a 4xx, readable: FastAPI's 422 list as "field: message; ...".
  function describeError(xhr) {
    try {
      const detail = JSON.parse(xhr.responseText).detail;
      if (Array.isArray(detail)) {
        return detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
      }
      return typeof detail === "string" ? detail : JSON.stringify(detail);
    } catch {
      return xhr.statusText || "request failed";
    }
  }

  function init() {
    const lrInput = $("lr-input");
    const lrSlider = $("lr-slider");
    function syncSliderFromInput() {
      const v = Number(lrInput.value);
      if (v > 0) lrSlider.value = Math.log10(v);
    }
    lrSlider.addEventListener("input", () => {
      lrInput.value = Number((10 ** Number(lrSlider.value)).toPrecision(3));
    });
    lrInput.addEventListener("input", syncSliderFromInput);
    syncSliderFromInput();
    // Enter in a number field does what its button does.
    for (const [field, button] of [[lrInput, "apply-lr"], [$("step-n"), "step"]]) {
      field.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && !$(button).disabled) $(button).click();
      });
    }
    // Until the user touches the lr controls they show the run's current rate (a queued run has
    // none yet; another tab may change it). After that they hold what the user is composing.
    let lrTouched = false;
    for (const el of [lrInput, lrSlider]) el.addEventListener("input", () => (lrTouched = true));
    function followLr(lr) {
      if (lrTouched || typeof lr !== "number" || !(lr > 0)) return;
      lrInput.value = Number(lr.toPrecision(6));
      syncSliderFromInput();
    }

    // Which commands make sense in which status; the server still has the final word (4xx).
    function updateButtons(s) {
      const active = ACTIVE.has(s);
      const enable = {
        "apply-lr": active,
        "apply-pace": active,
        pause: s === "running" || s === "queued",
        resume: s === "paused",
        step: s === "paused",
        checkpoint: s === "running" || s === "paused",
        stop: active,
      };
      for (const [id, on] of Object.entries(enable)) $(id).disabled = !on;
    }

    // Answers to the htmx command buttons: a short confirmation, or the server's reason.
    const show = (text, kind) => showMessage($("command-messages"), text, kind);
    const controls = $("controls");
    controls.addEventListener("htmx:afterRequest", (e) => {
      const cmd = e.detail.elt.dataset.command;
      const xhr = e.detail.xhr;
      if (e.detail.successful) {
        let id = "";
        try {
          id = ` (command #${JSON.parse(xhr.responseText).id})`;
        } catch { /* the id is a nicety */ }
        show(`${cmd} sent${id}`, "info");
      } else if (xhr && xhr.status) {
        show(`${cmd} refused: HTTP ${xhr.status}: ${describeError(xhr)}`, "error");
      }
    });
    controls.addEventListener("htmx:sendError", () => show("network error: command not sent", "error"));

    return {
      // Called with every run object the page receives (page load and SSE status).
      update(run) {
        updateButtons(run.status);
        followLr(run.lr);
      },
      lrValue: () => Number(lrInput.value),
      stepN: () => Number($("step-n").value),
      // null lifts the limit ("full speed" has an empty value).
      paceValue: () => ($("pace-select").value === "" ? null : Number($("pace-select").value)),
    };
  }

  window.PandaCommands = { init, describeError, showMessage, ACTIVE };
})();
