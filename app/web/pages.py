"""HTML pages and the htmx fragments they refresh themselves with.

Pages render what the JSON API would return (``crud.serialize_run``), so a template and
``static/run.js`` read the same run object whether it came from the page or from the stream.
Each fragment (``_runs_table.html``, ``_run_status.html``) is both included by its page and served
alone for htmx, and carries its own polling trigger only while something can still change.
Handlers are plain ``def``: database calls block, and FastAPI runs these in its threadpool.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment
from sqlalchemy.orm import Session

from app import crud
from app.api.deps import ReadSession, run_or_404

router = APIRouter(include_in_schema=False)

ACTIVE_STATUSES = ("queued", "running", "paused")
"""Statuses in which a run can still change, so its fragments keep polling."""


def sig(value: Any) -> str:
    """A metric for people: three significant digits, exponent form when tiny, dash when absent.

    Accepts the API's spellings of non-finite floats (``"NaN"``, ``"Infinity"``) unchanged, since
    a diverged run is exactly when the reader must see them.
    """
    if value is None:
        return "\u2013"  # en dash: "no value yet"
    if isinstance(value, str):
        return value
    number = float(value)
    if number != 0 and (abs(number) < 1e-3 or abs(number) >= 1e5):
        return f"{number:.2e}"
    return f"{number:.3g}"


def short_time(value: str | None) -> str:
    """An ISO timestamp from the API as ``YYYY-MM-DD HH:MM`` UTC (seconds are noise in a list)."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value


def install_filters(env: Environment) -> None:
    """Register the filters these templates use; idempotent, so any caller may run it."""
    env.filters.setdefault("sig", sig)
    env.filters.setdefault("short_time", short_time)


def _templates(request: Request) -> Jinja2Templates:
    """The app's templates, with our filters: the app factory owns the Jinja2 environment, the
    pages own the filters their templates need, so they are added here on first use."""
    templates: Jinja2Templates = request.app.state.templates
    install_filters(templates.env)
    return templates


# Steps per second offered by the pace selects (here and in the new-run form of
# app/web/new_run_form.py); None is full speed.
PACE_CHOICES: tuple[float | None, ...] = (1, 5, 10, 20, 50, 100, 200, 500, 1000, None)


def _run_context(session: Session, run_id: int) -> dict[str, Any]:
    run = run_or_404(session, run_id)
    return {
        "run": crud.serialize_run(run),
        "active_statuses": ACTIVE_STATUSES,
        "pace": crud.current_pace(session, run_id, pending=True),
        "pace_choices": PACE_CHOICES,
    }


@router.get("/runs/{run_id}", response_class=HTMLResponse, name="run_page")
def run_page(request: Request, run_id: int, session: ReadSession) -> HTMLResponse:
    """One run: header, status, controls, charts; live data comes from static/run.js."""
    return _templates(request).TemplateResponse(request, "run.html", _run_context(session, run_id))


@router.get("/runs/{run_id}/_status", response_class=HTMLResponse, name="run_status_fragment")
def run_status_fragment(request: Request, run_id: int, session: ReadSession) -> HTMLResponse:
    """The status block alone, for its own htmx polling (stops once the run is settled)."""
    context = _run_context(session, run_id)
    return _templates(request).TemplateResponse(request, "_run_status.html", context)
