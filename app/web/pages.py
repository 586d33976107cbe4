"""What the HTML pages share: Jinja filters and the pace choices.

The pages themselves live beside it: the runs list (app/web/runs_list.py), the new-run form
(app/web/new_run_form.py), the run page (app/web/run_page.py, its live parts in
app/web/fragments.py). Pages render what the JSON API would return (``crud.serialize_run``), so a
template and the page's JavaScript read the same run object.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment

from app.web import present, run_summary

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
    """Register every filter the templates use, once, where the app makes its environment
    (app/main.py): a page or fragment rendered first then finds them all."""
    env.filters.update(
        sig=sig,
        short_time=short_time,
        steps=steps,
        number=present.number,
        command_text=present.command_text,
        event_state=present.event_state,
        event_note=present.event_note,
        event_label=present.event_label,
        rate=run_summary.rate,
        layers=run_summary.layers,
        dataset_name=run_summary.dataset_name,
        setting=run_summary.setting,
    )


# Steps per second offered by the pace selects (here and in the new-run form of
# app/web/new_run_form.py); None is full speed.
PACE_CHOICES: tuple[float | None, ...] = (1, 5, 10, 20, 50, 100, 200, 500, 1000, None)
