"""HTML pages and the htmx fragments they refresh themselves with.

Pages render what the JSON API would return (``crud.serialize_run``), so a template and
``static/run.js`` read the same run object whether it came from the page or from the stream.
Each fragment (``_runs_table.html``, ``_run_status.html``) is both included by its page and served
alone for htmx, and carries its own polling trigger only while something can still change.
Handlers are plain ``def``: database calls block, and FastAPI runs these in its threadpool.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment
from sqlalchemy.orm import Session

from app.crud import runs as crud_runs
from app.models import TERMINAL_STATUSES
from engine.config import RunConfig

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


def _read_session(request: Request) -> AbstractContextManager[Session]:
    """A short read transaction on the app's database."""
    return request.app.state.db.read()


def _runs_context(request: Request) -> dict[str, Any]:
    with _read_session(request) as session:
        runs = [crud_runs.serialize_run(r) for r in crud_runs.list_runs(session)]
    any_active = any(r["status"] not in TERMINAL_STATUSES for r in runs)
    return {"runs": runs, "any_active": any_active}


def _run_context(request: Request, run_id: int) -> dict[str, Any]:
    with _read_session(request) as session:
        run = crud_runs.get_run(session, run_id)
        if run is None:
            raise HTTPException(status_code=404, detail=f"run {run_id} not found")
        data = crud_runs.serialize_run(run)
    return {"run": data, "active_statuses": ACTIVE_STATUSES}


@router.get("/", response_class=HTMLResponse, name="runs_page")
def runs_page(request: Request) -> HTMLResponse:
    """The runs list and the new-run form, prefilled with RunConfig's own defaults."""
    context = _runs_context(request)
    context["defaults"] = RunConfig().model_dump()
    return _templates(request).TemplateResponse(request, "index.html", context)


@router.get("/_runs", response_class=HTMLResponse, name="runs_fragment")
def runs_fragment(request: Request) -> HTMLResponse:
    """The runs table alone, for its own htmx polling."""
    return _templates(request).TemplateResponse(request, "_runs_table.html", _runs_context(request))


@router.get("/runs/{run_id}", response_class=HTMLResponse, name="run_page")
def run_page(request: Request, run_id: int) -> HTMLResponse:
    """One run: header, status, controls, charts; live data comes from static/run.js."""
    return _templates(request).TemplateResponse(request, "run.html", _run_context(request, run_id))


@router.get("/runs/{run_id}/_status", response_class=HTMLResponse, name="run_status_fragment")
def run_status_fragment(request: Request, run_id: int) -> HTMLResponse:
    """The status block alone, for its own htmx polling (stops once the run is settled)."""
    context = _run_context(request, run_id)
    return _templates(request).TemplateResponse(request, "_run_status.html", context)
