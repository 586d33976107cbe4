"""``/runs/{id}``: the run page, its live parts, and the form posts of its controls.

The controls post plain forms here (htmx); each answer is a fragment the page swaps in: the
command's message (kept current afterwards by the stream's pushes, see app/web/fragments.py),
or the reason it was refused with the status code of the JSON API (422 naming the field, 409).
The work itself is the JSON API's (app/api/commands.py, app/api/runs.py), called directly, so
the page and the API cannot disagree.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import FormData

from app import crud
from app.api.commands import post_command
from app.api.deps import ReadSession
from app.api.runs import fork_run
from app.api.schemas import Command, ForkRequest
from app.db import Database
from app.web import present
from app.web.fragments import lr_field_context, run_context
from app.web.messages import message, refusal

router = APIRouter(include_in_schema=False)

_COMMAND = TypeAdapter(Command)


def _templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


def _fork_name(run: dict[str, Any]) -> str:
    """The default name of a fork, as app/crud/forks.py makes it (placeholders do not stack)."""
    base = run["name"].removesuffix(f" fork@{run['parent_step']}")
    return f"{base} fork@step"


@router.get("/runs/{run_id}", response_class=HTMLResponse, name="run_page")
def run_page(request: Request, run_id: int, session: ReadSession) -> HTMLResponse:
    """One run: header, status, controls, fork, charts, settings, events. Live data and pushed
    fragments come through one stream (static/run.js)."""
    context = run_context(session, run_id)
    run = context["run"]
    parent = crud.get_run(session, run["parent_id"]) if run["parent_id"] is not None else None
    parent_active = parent is not None and parent.status in present.ACTIVE_STATUSES
    context.update(
        page_data=present.page_data(run, parent_active=parent_active),
        pace=crud.current_pace(session, run_id, pending=True),
        settings=present.settings_rows(run["config"]),
        chance=present.classes(run["config"]),
        fork_name=_fork_name(run),
    )
    return _templates(request).TemplateResponse(request, "run.html", context)


@router.get("/runs/{run_id}/_fragments", response_class=HTMLResponse, name="run_fragments")
def run_fragments(request: Request, run_id: int, session: ReadSession) -> HTMLResponse:
    """Every live part at once: the page fetches it when its stream (re)connects, so a change
    between the page's render and the stream's start is not missed."""
    context = run_context(session, run_id)
    html = (
        _templates(request)
        .env.get_template("_run_live.html")
        .render({**context, "parts": {"status", "event"}})
    )
    return HTMLResponse(html)


def _command_body(form: FormData) -> dict[str, Any]:
    """The form's fields as the JSON API's command body (empty pace: full speed)."""
    body: dict[str, Any] = {k: v for k, v in form.items() if k not in ("shown",)}
    if body.get("type") == "set_pace" and body.get("steps_per_second") == "":
        body["steps_per_second"] = None
    return body


@router.post("/runs/{run_id}/commands", response_class=HTMLResponse, name="run_command_form")
async def command_form(request: Request, run_id: int) -> HTMLResponse:
    """A command from the page's controls; answers its message fragment (and, for a new rate,
    a fresh lr field showing it). An lr field sent back unchanged sends nothing."""
    form = await request.form()
    body = _command_body(form)
    kind = str(body.get("type", "command"))
    if kind == "set_lr" and _same_number(form.get("lr"), form.get("shown")):
        return message(f"learning rate unchanged ({form.get('lr')}): nothing sent", "info")
    try:
        command = _COMMAND.validate_python(body)
        event = await to_thread.run_sync(post_command, run_id, command, request.app.state.db)
    except (HTTPException, ValidationError) as exc:
        return refusal(kind, exc, kind)
    templates = _templates(request)
    html = templates.env.get_template("_command_message.html").render(ev=event)
    if kind == "set_lr":
        fields = lr_field_context(event.get("lr"))
        html += templates.env.get_template("_run_lr_fields.html").render(**fields, oob=True)
    return HTMLResponse(html, status_code=202)


def _same_number(a: Any, b: Any) -> bool:
    """Two form fields holding the same finite number (``0.0100`` is ``0.01``)."""
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return False
    return math.isfinite(x) and x == y


def _integer(text: str) -> int | str:
    """A form field as an int when it is one (else unchanged, for the validator to name it)."""
    try:
        return int(text)
    except ValueError:
        return text


def pause_if_moving(db: Database, run_id: int) -> None:
    """Pause a queued or running run, so a single worker moves over to its fork or range test."""
    with db.read() as session:
        run = crud.get_run(session, run_id)
        moving = run is not None and run.status in ("queued", "running")
    if moving:
        with contextlib.suppress(HTTPException):  # it ended meanwhile: nothing to pause
            post_command(run_id, _COMMAND.validate_python({"type": "pause"}), db)


@router.post("/runs/{run_id}/fork", response_class=HTMLResponse, name="run_fork_form")
async def fork_form(request: Request, run_id: int) -> HTMLResponse:
    """Fork from the chosen checkpoint; on success the browser opens the new run."""
    form = await request.form()
    body: dict[str, Any] = {"step": form.get("step") or None, "overrides": {}}
    if form.get("lr"):
        body["overrides"]["lr"] = form.get("lr")
    if form.get("name", "").strip():
        body["name"] = str(form.get("name")).strip()
    if form.get("more_steps"):  # the API takes JSON integers only (strict): a form sends text
        body["more_steps"] = _integer(str(form.get("more_steps")))
    db, settings = request.app.state.db, request.app.state.settings
    try:
        fork = ForkRequest.model_validate(body)
        child = await to_thread.run_sync(fork_run, run_id, fork, db, settings)
        if form.get("pause"):
            await to_thread.run_sync(pause_if_moving, db, run_id)
    except (HTTPException, ValidationError, RequestValidationError) as exc:
        return refusal("fork", exc)
    text = f"run #{child['id']} made from step {child['parent_step']}; opening it"
    response = message(text, "info")
    response.headers["HX-Redirect"] = f"/runs/{child['id']}"
    return response
