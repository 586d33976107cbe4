// New-run form: turn the fields into {"name", "config"}, POST /api/runs, open the new run.
// Plain fetch instead of htmx because the body is nested JSON merged with a free-form textarea,
// and a 201 must become a navigation rather than a swap.
"use strict";

(function () {
  const form = document.getElementById("new-run");
  const box = document.getElementById("new-run-messages");
  if (!form) return;

  // Fields whose value is a number; an empty one is left out so the config default applies.
  const NUMBER_FIELDS = ["lr", "batch_size", "epochs", "max_steps", "seed"];

  function clearErrors() {
    box.replaceChildren();
    form.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
    form.querySelectorAll(".field-error").forEach((el) => el.remove());
  }

  // Show one problem: in the message area, and next to the input it names when there is one.
  function addError(field, reason) {
    let list = box.querySelector("ul");
    if (!list) {
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = "The run was not created:";
      list = document.createElement("ul");
      list.className = "error";
      box.append(p, list);
    }
    const li = document.createElement("li");
    li.dataset.field = field;
    li.textContent = field ? `${field}: ${reason}` : reason;
    list.append(li);
    // "config.hidden.1" belongs to the hidden input: the last part naming a form field wins.
    const input = field
      .split(".")
      .reverse()
      .map((part) => form.elements.namedItem(part))
      .find((el) => el && el.classList);
    if (input) {
      input.classList.add("invalid");
      const span = document.createElement("span");
      span.className = "field-error";
      span.textContent = reason;
      input.closest("label").append(span);
    }
  }

  function parseHidden(text) {
    const parts = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
    // Keep a part that is not a whole number as-is: the server names it in its 422.
    return parts.map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  }

  // Build the request body; throws with a field name when the advanced JSON is not an object.
  function buildBody() {
    const f = form.elements;
    const config = {
      dataset: f.dataset.value,
      hidden: parseHidden(f.hidden.value),
      optimizer: f.optimizer.value,
      batchnorm: f.batchnorm.checked,
    };
    for (const key of NUMBER_FIELDS) {
      const raw = f[key].value.trim();
      if (raw !== "") config[key] = Number(raw);
    }
    const advanced = f.advanced.value.trim();
    if (advanced !== "") {
      let extra;
      try {
        extra = JSON.parse(advanced);
      } catch (err) {
        throw { field: "advanced", reason: `not valid JSON (${err.message})` };
      }
      if (extra === null || typeof extra !== "object" || Array.isArray(extra)) {
        throw { field: "advanced", reason: "must be a JSON object" };
      }
      Object.assign(config, extra);
    }
    const body = { config };
    const name = f.name.value.trim();
    if (name !== "") body.name = name;
    // The pace is the run's, not the model's: a top-level field, empty for full speed.
    if (f.pace.value !== "") body.pace = Number(f.pace.value);
    return body;
  }

  // FastAPI's 422 is {"detail": [{"loc": [...], "msg": ...}]}; other errors carry a string.
  function showServerError(status, payload) {
    const detail = payload && payload.detail;
    if (Array.isArray(detail)) {
      for (const d of detail) {
        const loc = (d.loc || []).filter((p) => p !== "body");
        addError(loc.join("."), d.msg || JSON.stringify(d));
      }
    } else {
      addError("", `HTTP ${status}: ${detail ? JSON.stringify(detail) : "request failed"}`);
    }
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    let body;
    try {
      body = buildBody();
    } catch (err) {
      addError(err.field, err.reason);
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const resp = await fetch("/api/runs", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      });
      const payload = await resp.json().catch(() => null);
      if (resp.ok && payload && payload.id !== undefined) {
        window.location.assign(`/runs/${payload.id}`);
        return;
      }
      showServerError(resp.status, payload);
    } catch (err) {
      addError("", `network error: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  });
})();
