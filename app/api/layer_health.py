"""``GET /api/runs/{id}/health``: per-layer health as columnar JSON (engine/health.py).

Not to be confused with ``/healthz`` (app/api/health.py), the server's own health check.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.api.deps import ReadSession, run_or_404
from app.crud.health import health_columns, health_rows

router = APIRouter(prefix="/api/runs", tags=["health"])

DEFAULT_LIMIT, MAX_LIMIT = 5000, 50_000
"""Rows per answer: whole steps only, so a page may hold a few rows fewer than the limit."""

Number = float | str | None


class HealthOut(BaseModel):
    """One row per (step, layer), columnar; null where a statistic does not apply (dead_frac
    without ReLU or on the output layer, bn_shift without batch norm); non-finite numbers as the
    strings "NaN", "Infinity", "-Infinity". ``more``: rows after the last step are waiting
    (ask again with ``after`` = that step)."""

    step: list[int]
    layer: list[int]
    grad_norm: list[Number]
    weight_norm: list[Number]
    update_ratio: list[Number]
    act_mean: list[Number]
    act_std: list[Number]
    dead_frac: list[Number]
    bn_shift: list[Number]
    more: bool


@router.get("/{run_id}/health", response_model=HealthOut)
def get_health(
    run_id: int,
    s: ReadSession,
    after: Annotated[int, Query(ge=0, le=2**62, description="only steps > after")] = 0,
    limit: Annotated[
        int,
        Query(ge=100, le=MAX_LIMIT, description="at most this many rows (whole steps)"),
    ] = DEFAULT_LIMIT,
) -> JSONResponse:
    """Per-layer health of the measured steps after ``after`` (every ``health_every`` steps),
    layer 0 = the first hidden layer, the last = the output layer; a fork's steps up to its
    fork step are its parent's."""
    run_or_404(s, run_id)
    rows, more = health_rows(s, run_id, after=after, limit=limit)
    return JSONResponse({**health_columns(rows), "more": more})
