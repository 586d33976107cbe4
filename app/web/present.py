"""What the run page says, computed once in Python: the templates only lay it out.

The same helpers serve the page, its fragments (pushed through the stream) and the answers to
its form posts, so a learning rate, a command's fate or a checkpoint's label reads the same
wherever it appears. Nothing here writes.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sqlalchemy.orm import Session

from app import crud
from app.models import RUN_STATUSES, TERMINAL_STATUSES
from app.series import COLUMNS
from engine import RunConfig
from engine.data import BUILTIN

ACTIVE_STATUSES = tuple(s for s in RUN_STATUSES if s not in TERMINAL_STATUSES)
"""Statuses in which a run can still change (queued, running, paused)."""

CHECKPOINTS_WITH_EVAL = 30
"""Newest checkpoints labelled with the evaluation before them (one small query each)."""

COMMAND_MESSAGES = 20
"""Newest user commands whose message a fragment push may update."""

DEFAULTS: dict[str, Any] = RunConfig().model_dump(mode="json")


def number(value: Any) -> str:
    """Three significant digits, readable from 1e-8 to 1e5 and beyond: ``0.0046``, ``1.5e-4``.

    Non-finite values keep the API's spelling (``NaN``), since a diverged run is when they
    matter; None is an en dash.
    """
    if value is None:
        return "\u2013"
    if isinstance(value, str):
        return value
    x = float(value)
    if not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    rounded = abs(float(f"{x:.3g}"))
    if 1e3 <= rounded < 1e5:  # ``.3g`` would write 1500 as 1.5e+03
        return f"{x:.0f}"
    if x == 0 or 1e-3 <= rounded < 1e3:
        return f"{x:.3g}"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def field_value(value: Any) -> str:
    """A rate for an ``<input type=number>``, four significant digits (the form also carries
    the value as shown, so an untouched field sends nothing)."""
    return "" if not isinstance(value, int | float) else f"{float(value):.4g}"


def lr_explained(run: dict[str, Any]) -> str:
    """How the effective rate is made: ``0.0046 = 0.01 \u00d7 cosine 0.46`` (or just the rate)."""
    lr, base, factor = run.get("lr"), run.get("lr_base"), run.get("lr_factor")
    schedule = run["config"].get("schedule", "constant")
    if not isinstance(base, int | float) or not isinstance(factor, int | float):
        return number(lr)
    if schedule == "constant" and factor == 1:
        return f"{number(lr)} (constant)"
    return f"{number(lr)} = {number(base)} \u00d7 {schedule} {number(factor)}"


def classes(config: dict[str, Any]) -> int | None:
    """Classes of a built-in dataset (chance level is 1/C); None for a file we have not read."""
    dataset = config.get("dataset")
    if dataset == "digits":
        return 10
    if dataset == "moons":
        return 2
    if dataset in BUILTIN:
        return int(config.get("n_classes", DEFAULTS["n_classes"]))
    return None


def settings_rows(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every RunConfig field in declaration order, flagged where it differs from the default."""
    rows = []
    for name in RunConfig.model_fields:
        value, default = config.get(name), DEFAULTS.get(name)
        if value is None:
            shown = "\u2013"
        elif isinstance(value, bool | list | dict):
            shown = json.dumps(value)
        else:
            shown = number(value) if isinstance(value, float) else value
        rows.append(
            {"name": name, "value": shown,
             "changed": value != default, "default": default}
        )  # fmt: skip
    return rows


def page_data(run: dict[str, Any], *, parent_active: bool = False) -> dict[str, Any]:
    """What static/run.js needs, from the Python constants (one source of truth)."""
    return {
        "run": run,
        "columns": list(COLUMNS),
        "statuses": list(RUN_STATUSES),
        "active": list(ACTIVE_STATUSES),
        "classes": classes(run["config"]),
        "parent_active": parent_active,
    }


# -- events --------------------------------------------------------------------------------------


def command_text(event: dict[str, Any]) -> str:
    """``set_lr 0.003``, ``step 10``, ``set_pace 10/s``: the command as the user sent it."""
    kind = event["type"]
    if kind == "set_lr":
        return f"set_lr {number(event.get('lr'))}"
    if kind == "step":
        return f"step {event.get('n', '')}".strip()
    if kind == "autopilot":
        return f"autopilot {event.get('policy')} {'on' if event.get('on') else 'off'}"
    if kind == "set_pace":
        pace = event.get("steps_per_second")
        return "set_pace full speed" if pace is None else f"set_pace {number(pace)}/s"
    return kind


def event_state(event: dict[str, Any]) -> str:
    """pending, applied or error: the backend's ``state`` when it sends one."""
    if event.get("state"):
        return str(event["state"])
    if event.get("error"):
        return "error"
    return "pending" if event.get("step") is None else "applied"


def event_note(event: dict[str, Any]) -> str:
    """What became of it: the backend's ``note`` ("applied at step 545", the error, "waiting for
    a worker: run #3 holds it") or the same words from the event's own fields."""
    if event.get("note"):
        return str(event["note"])
    if event.get("error"):
        return str(event["error"])
    return "pending" if event.get("step") is None else f"applied at step {event['step']}"


def event_label(event: dict[str, Any]) -> str:
    """One line of the event log."""
    what = command_text(event) if event.get("source") in ("user", "autopilot") else event["type"]
    return f"{what} ({event.get('source') or 'user'}, {event_note(event)})"


def serialize_events(session: Session, run_id: int) -> list[dict[str, Any]]:
    """The run's events as the API lists them, a pending command saying what it waits for."""
    events = crud.list_events(session, run_id)
    pending = any(e.step is None for e in events)
    holders = crud.live_lease_holders(session) if pending else []
    return [
        crud.serialize_event(e, crud.describe_command(session, e, holders=holders))
        if e.step is None
        else crud.serialize_event(e)
        for e in events
    ]


# -- checkpoints ---------------------------------------------------------------------------------


def checkpoint_options(session: Session, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The fork list, newest first: ``step 1200 · val loss 0.21, acc 0.94 · before lr 0.003``.

    A checkpoint is labelled with the last evaluation at or before it (evaluations happen every
    ``eval_every`` steps, so that row is found by its step); the lowest validation loss is
    marked "best", since that is usually the one to go back to.
    """
    every = int(run["config"].get("eval_every") or 1)
    seen: dict[int, dict[str, Any]] = {}
    for ckpt in crud.list_checkpoints(session, run["id"]):
        seen[ckpt["step"]] = ckpt  # one entry per step (a copy and a fresh one may share it)
    newest = sorted(seen.items(), reverse=True)
    labelled = [k // every * every for k, _ in newest[:CHECKPOINTS_WITH_EVAL]]
    evaluations = crud.evaluations_at(session, run["id"], [at for at in labelled if at >= 1])
    options = []
    for step, ckpt in newest:
        option: dict[str, Any] = {"step": step, "label": ckpt.get("label"), "val_loss": None}
        found = evaluations.get(step // every * every) if len(options) < len(labelled) else None
        if found is not None:
            option["val_loss"], option["val_acc"] = found
        options.append(option)
    scored = [
        o for o in options if isinstance(o["val_loss"], float) and math.isfinite(o["val_loss"])
    ]
    best = min(scored, key=lambda o: o["val_loss"]) if len(options) > 1 and scored else None
    for option in options:
        parts = [f"step {option['step']}"]
        if option["val_loss"] is not None:
            parts.append(f"val loss {number(option['val_loss'])}, acc {number(option['val_acc'])}")
        if option["label"] and option["label"] != "best":
            parts.append(str(option["label"]))
        if option is best or option["label"] == "best":
            parts.append("best")
        option["text"] = " \u00b7 ".join(parts)
    return options
