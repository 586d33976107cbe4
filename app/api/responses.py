"""Response shapes, for the OpenAPI schema at /docs and to pin what the API promises.

Non-finite floats travel as the strings "NaN", "Infinity", "-Infinity" (see app/series.py), hence
``float | str`` on every metric-like field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Status = Literal["queued", "running", "paused", "finished", "stopped", "failed", "diverged"]
Number = float | str | None


class RunOut(BaseModel):
    """A run (``GET /api/runs/{id}``, the stream's ``status`` messages)."""

    id: int
    name: str
    status: Status
    step: int
    lr: Number
    config: dict[str, Any]
    parent_id: int | None
    parent_step: int | None
    created_at: str
    updated_at: str
    total_steps: int | None
    best_val_loss: Number
    best_val_acc: Number
    error: str | None


class EventOut(BaseModel):
    """A command or a worker status change; payload fields are also copied to the top level."""

    model_config = ConfigDict(extra="allow")

    id: int
    run_id: int
    type: str
    source: Literal["user", "worker"]
    step: int | None
    created_at: str
    applied_at: str | None
    error: str | None
    payload: dict[str, Any]


class CheckpointOut(BaseModel):
    """A stored checkpoint (its state is not served)."""

    id: int
    step: int
    created_at: str
    sha256: str
    size: int


class MetricsOut(BaseModel):
    """Columnar metrics: one list per column, equal lengths, in step order.

    ``exact`` is false when the answer is an overview (``max_points``) that left rows out.
    """

    step: list[int]
    time: list[float]
    lr: list[Number]
    train_loss: list[Number]
    train_acc: list[Number]
    val_loss: list[Number]
    val_acc: list[Number]
    exact: bool
