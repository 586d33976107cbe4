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
