"""The run page's "Pictures" panel: decision regions, confusion matrix, model downloads.

Rendered with the page (``/runs/{id}/_pictures``, fetched once), then pushed by the run's stream
as ``fragment-pictures`` whenever what it shows changes (a new confusion matrix at an evaluation,
a new regions grid, a new checkpoint to download: app/crud/pictures.py ``pictures_version``), at
most every 2 s and once for all viewers, like the health panel. No viewer polls.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment
from sqlalchemy.orm import Session

from app import crud
from app.api.deps import ReadSession
from app.crud.pictures import get_pictures
from app.regions_image import class_colour
from app.web import present

router = APIRouter(include_in_schema=False)

FRAGMENT = "fragment-pictures"
"""SSE event name of the pushed panel (static/run.js swaps it in)."""
MAX_CLASSES = 30
"""A confusion matrix wider than this is not drawn (it would not fit the page)."""
DOWNLOADS = 6
"""Newest checkpoints offered as weights.npz links."""


def _shade(count: int, total: int, diagonal: bool) -> dict[str, Any]:
    """A cell of the heat map: its share of the true class's rows sets the colour's strength
    (blue on the diagonal, red for the errors, so a confusion stands out however rare)."""
    share = count / total if total else 0.0
    if diagonal:
        alpha = share
        rgb = "47, 111, 223"
    else:
        alpha = min(0.85, 0.15 + 1.5 * share) if count else 0.0
        rgb = "200, 49, 46"
    return {
        "count": count,
        "share": share,
        "style": f"background: rgba({rgb}, {alpha:.2f})" if alpha else "",
        "dark": alpha > 0.55,
    }


def confusion_rows(labels: list[Any], matrix: list[list[int]]) -> list[dict[str, Any]]:
    """The matrix as table rows: each true class with its cells, shaded by share of the row."""
    return [
        {
            "label": label,
            "total": sum(row),
            "cells": [_shade(c, sum(row), i == j) for j, c in enumerate(row)],
        }
        for i, (label, row) in enumerate(zip(labels, matrix, strict=True))
    ]


def pictures_context(session: Session, run_id: int) -> dict[str, Any]:
    """What the panel shows, from one read transaction; ``key`` changes when anything does."""
    run = crud.get_run(session, run_id)
    if run is None:
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    pictures = get_pictures(session, run_id)
    checkpoints = crud.list_checkpoints(session, run_id)
    steps = sorted({c["step"] for c in checkpoints}, reverse=True)[:DOWNLOADS]
    regions = pictures.regions if pictures is not None else None
    context: dict[str, Any] = {
        "run_id": run_id,
        "status": run.status,
        "active": run.status in present.ACTIVE_STATUSES,
        "pictures": pictures,
        "regions_step": regions.step if regions is not None else None,
        "download_steps": steps,
        "more_checkpoints": max(0, len({c["step"] for c in checkpoints}) - len(steps)),
        "too_many_classes": False,
        "rows": [],
        "swatches": [],
    }
    if pictures is not None:
        n_classes = len(pictures.labels)
        context["too_many_classes"] = n_classes > MAX_CLASSES
        if not context["too_many_classes"]:
            context["rows"] = confusion_rows(pictures.labels, pictures.matrix)
        if regions is not None:
            context["swatches"] = [
                "rgb({}, {}, {})".format(*class_colour(k)) for k in range(n_classes)
            ]
    context["key"] = "-".join(
        str(v)
        for v in (
            pictures.step if pictures else None,
            context["regions_step"],
            steps[0] if steps else None,
            run.status,
        )
    )
    return context


def render_pictures(env: Environment, context: dict[str, Any]) -> str:
    """The panel's live part (``#pictures-live``)."""
    return env.get_template("_run_pictures_live.html").render(pp=context)


@router.get("/runs/{run_id}/_pictures", response_class=HTMLResponse, name="run_pictures")
def run_pictures(request: Request, run_id: int, session: ReadSession, shown: str = "") -> Response:
    """The panel's live part; 204 when it would show what the page already has (``shown``)."""
    context = pictures_context(session, run_id)
    if shown and shown == context["key"]:
        return Response(status_code=204)
    return HTMLResponse(render_pictures(request.app.state.templates.env, context))
