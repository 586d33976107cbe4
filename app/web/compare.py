"""``/compare?ids=3,5,7``: several runs on one chart, and the settings in which they differ.

The page carries only the runs (id, name, colour) and their settings table; static/compare.js
fetches each run's overview from ``/api/runs/{id}/metrics?max_points=W`` (min and max kept per
bucket), so a 10M-step run costs the page what a short one does.

``ids`` is comma-separated, or repeated as a plain form of checkboxes sends it
(``?ids=3&ids=5``): the runs list's Compare button is that form.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app import crud
from app.api.deps import ReadSession
from app.series import COLUMNS, STEP, VAL_ACC, VAL_LOSS
from app.web import run_summary
from app.web.runs_list import templates

router = APIRouter(include_in_schema=False)

MAX_RUNS = 8
"""Runs one chart can show with colours a reader tells apart (PALETTE)."""

PALETTE = (
    "#2f6fdf", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285", "#e67700", "#495057",
)  # fmt: skip
"""One colour per run, shared by the chart (via the page's JSON) and the table's swatches."""


LEGEND_CHARS = 40
"""A legend entry is cut here: uPlot lays its legend out inline, and one long name would push
the others onto lines of their own (the settings table keeps the full name in a title)."""


def legend_label(run: dict[str, Any]) -> str:
    """``#3 name``, cut with an ellipsis past LEGEND_CHARS."""
    label = f"#{run['id']} {run['name']}"
    return label if len(label) <= LEGEND_CHARS else label[: LEGEND_CHARS - 1].rstrip() + "\u2026"


CHARTS: tuple[dict[str, Any], ...] = (
    {"id": "chart-val-loss", "column": COLUMNS[VAL_LOSS], "title": "validation loss (log scale)",
     "log": True},
    {"id": "chart-val-acc", "column": COLUMNS[VAL_ACC], "title": "validation accuracy",
     "log": False},
)  # fmt: skip
"""The compare charts: one metric column each (names from app/series.py, as /metrics serves them),
rendered into the page as data so compare.js retypes no column name."""


class BadIds(ValueError):
    """The ids parameter names no valid set of runs to compare."""


def parse_ids(raw: list[str]) -> list[int]:
    """``["3,5", "7"]`` -> ``[3, 5, 7]`` in the order given, duplicates dropped; BadIds naming
    the first problem (not a number, fewer than two runs, more than MAX_RUNS)."""
    ids: list[int] = []
    for part in (p.strip() for chunk in raw for p in chunk.split(",")):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise BadIds(f"ids: {part!r} is not a run id (a positive whole number)")
        if int(part) not in ids:
            ids.append(int(part))
    if len(ids) < 2:
        raise BadIds("ids: tick at least two runs to compare")
    if len(ids) > MAX_RUNS:
        raise BadIds(f"ids: at most {MAX_RUNS} runs fit on one chart ({len(ids)} given)")
    return ids


def _error(request: Request, status: int, message: str) -> HTMLResponse:
    return templates(request).TemplateResponse(
        request, "compare.html", {"error": message}, status_code=status
    )


@router.get("/compare", response_class=HTMLResponse, name="compare_page")
def compare_page(
    request: Request,
    session: ReadSession,
    ids: Annotated[list[str], Query(description="run ids: 3,5,7 or ids=3&ids=5")] = [],  # noqa: B006
) -> HTMLResponse:
    """The runs' validation curves on one chart per metric, and a table of their settings:
    those that differ first, the common ones folded away. 422 for bad ids, 404 for a missing
    run, each as a page saying so."""
    try:
        wanted = parse_ids(ids)
    except BadIds as exc:
        return _error(request, 422, str(exc))
    runs: list[dict[str, Any]] = []
    for run_id in wanted:
        run = crud.get_run(session, run_id)
        if run is None:
            return _error(request, 404, f"run {run_id} not found")
        runs.append(crud.serialize_run(run))
    for run, colour in zip(runs, PALETTE, strict=False):
        run["colour"] = colour
    differ, same = run_summary.config_table([r["config"] for r in runs])
    chart = [{"id": r["id"], "label": legend_label(r), "colour": r["colour"]} for r in runs]
    data = {"runs": chart, "charts": CHARTS, "step": COLUMNS[STEP]}
    context = {"runs": runs, "differ": differ, "same": same, "charts": CHARTS, "data": data}
    return templates(request).TemplateResponse(request, "compare.html", context)
