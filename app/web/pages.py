"""What the HTML pages share: Jinja filters and the pace choices.

The pages themselves live beside it: the runs list (app/web/runs_list.py), the new-run form
(app/web/new_run_form.py), the run page (app/web/run_page.py, its live parts in
app/web/fragments.py). Pages render what the JSON API would return (``crud.serialize_run``), so a
template and the page's JavaScript read the same run object.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment

from app.web import present

router = APIRouter(include_in_schema=False)

ACTIVE_STATUSES = ("queued", "running", "paused")
"""Statuses in which a run can still change, so its fragments keep polling."""


sig = present.number
"""A metric for people (one formatter for every page: ``0.0046``, ``1.5e-4``, ``NaN``)."""


def steps(value: Any) -> str:
    """A step count short enough for a table cell: ``950``, ``12,500``, ``950k``, ``1M``, ``1.2M``
    (a long run's ``1000000 / 1000000`` would widen its column; the exact count is in a title)."""
    if not isinstance(value, int | float):
        return "\u2013"
    n = int(value)
    if abs(n) < 100_000:
        return f"{n:,}"
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(n) >= size:
            return f"{n / size:.3g}{suffix}"
    return str(n)  # unreachable: kept for the type checker


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
    env.filters.setdefault("steps", steps)


def _templates(request: Request) -> Jinja2Templates:
    """The app's templates, with our filters: the app factory owns the Jinja2 environment, the
    pages own the filters their templates need, so they are added here on first use."""
    templates: Jinja2Templates = request.app.state.templates
    install_filters(templates.env)
    return templates


# Steps per second offered by the pace selects (here and in the new-run form of
# app/web/new_run_form.py); None is full speed.
PACE_CHOICES: tuple[float | None, ...] = (1, 5, 10, 20, 50, 100, 200, 500, 1000, None)
