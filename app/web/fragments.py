"""The run page's server-rendered parts, for the page, for its form answers and for the stream.

``run_context`` reads everything the run page shows in one short transaction; ``render_live``
turns it into the page's live elements (``_run_live.html``: header, status, buttons, lr field,
event log, fork list, command messages), each a top-level element with an id that
static/run.js swaps in place. ``Fragments`` is the stream hub's hook: called once per tail poll
that produced ``event`` or ``status`` messages, it renders those parts once, and the hub fans
the same bytes out to every viewer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import HTTPException
from jinja2 import Environment
from sqlalchemy.orm import Session

from app import crud
from app.db import Database
from app.web import health_panel, pictures, present
from app.web.alerts import alerts_context
from app.web.pages import PACE_CHOICES

EVENT_LOG = 200
"""Newest events listed in the log (the chart markers come from the stream's JSON events)."""

FRAGMENT_EVENT = "fragment-{part}"
"""SSE event name of a push, one per part (`status`, `event`): the hub keeps the latest of each
name for a viewer that joins later, so the two must not overwrite each other."""


# The panels the stream pushes when their version moves (app/stream.py PANELS): the SSE event
# and the context of each, read in the same transaction as the rest, then rendered.
PANELS: dict[str, tuple[str, Callable[[Session, int], dict[str, Any]]]] = {
    "health": (health_panel.FRAGMENT, health_panel.health_context),
    "pictures": (pictures.FRAGMENT, pictures.pictures_context),
}
PANEL_RENDER: dict[str, Callable[[Environment, dict[str, Any]], str]] = {
    health_panel.FRAGMENT: health_panel.render_health,
    pictures.FRAGMENT: pictures.render_pictures,
}


def enabled_buttons(status: str, has_checkpoint: bool) -> dict[str, bool]:
    """Which commands make sense in which status (the server still answers 409 to the rest)."""
    active = status in present.ACTIVE_STATUSES
    return {
        "apply-lr": active,
        "apply-pace": active,
        "pause": status in ("running", "queued"),
        "resume": status == "paused",
        "step": status == "paused",
        "checkpoint": status in ("running", "paused"),
        "stop": active,
        "fork": has_checkpoint,
    }


def lr_field_context(lr: Any) -> dict[str, Any]:
    """The lr field's value (the effective rate) and its slider position (log10)."""
    value = lr if isinstance(lr, int | float) and lr > 0 else None
    return {
        "lr_field": present.field_value(value),
        "lr_log10": f"{math.log10(value):.3f}" if value else "-2",
    }


def run_context(
    session: Session, run_id: int, parts: Iterable[str] = ("status", "event")
) -> dict[str, Any]:
    """Everything the run page's ``parts`` show, from one read transaction (``status``: the
    run, its rate and buttons; ``event``: also the events, command messages and checkpoints)."""
    model = crud.get_run(session, run_id)
    if model is None:
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    run = crud.serialize_run(model)
    context: dict[str, Any] = {
        "run": run,
        "lr_text": present.lr_explained(run),
        **lr_field_context(run["lr"] if run["lr"] is not None else run["config"].get("lr")),
        "enabled": enabled_buttons(run["status"], False),
        "active_statuses": present.ACTIVE_STATUSES,
        "pace_choices": PACE_CHOICES,
    }
    if "event" in parts:
        events = present.serialize_events(session, run_id)
        checkpoints = present.checkpoint_options(session, run)
        context["events"] = events[-EVENT_LOG:]
        context["commands"] = [e for e in events if e["source"] == "user"]
        context["commands"] = context["commands"][-present.COMMAND_MESSAGES :]
        context["checkpoints"] = checkpoints
        context["enabled"]["fork"] = bool(checkpoints)
        context.update(alerts_context(session, model))  # notices, autopilot (app/web/alerts.py)
    return context


def render_live(env: Environment, context: dict[str, Any], parts: Iterable[str]) -> str:
    """The live elements for ``parts`` (``status``: header, status, buttons, lr field;
    ``event``: event log, fork list, command messages, alerts and autopilot)."""
    return env.get_template("_run_live.html").render({**context, "parts": set(parts)})


class Fragments:
    """The stream hub's ``fragments`` hook: ``(run_id, changed) -> [(sse_event, html)]``.

    Runs in a worker thread (it reads the database); one render per tail poll, whatever the
    number of viewers.
    """

    def __init__(self, db: Database, env: Environment) -> None:
        self.db = db
        self.env = env

    def __call__(self, run_id: int, changed: set[str]) -> list[tuple[str, str]]:
        panels = [p for p in PANELS if p in changed]  # whose content moved (app/stream.py)
        parts = {p for p in changed if p in ("status", "event")}
        if not parts and not panels:
            return []
        try:
            with self.db.read() as session:
                context = run_context(session, run_id, parts) if parts else {}
                shown = [(PANELS[p][0], PANELS[p][1](session, run_id)) for p in panels]
        except HTTPException:  # the run is gone: nothing to show
            return []
        live = [(FRAGMENT_EVENT.format(part=p), render_live(self.env, context, {p})) for p in parts]
        return live + [(event, PANEL_RENDER[event](self.env, ctx)) for event, ctx in shown]
