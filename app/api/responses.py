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
    # How lr is made: lr = lr_base x lr_factor (the schedule's factor at the next step); both
    # null when the rate is not of that form (set where the schedule's factor is 0).
    lr_base: float | None = None
    lr_factor: float | None = None
    config: dict[str, Any]
    parent_id: int | None
    parent_step: int | None
    created_at: str
    updated_at: str
    total_steps: int | None
    best_val_loss: Number
    best_val_acc: Number
    error: str | None
    # A finished learning-rate range test's suggested rate (steepest descent of its smoothed
    # loss, engine/lr_find.py); null while it runs, for any other run, or with no suggestion.
    suggested_lr: float | None = None
    # The study this run is a trial of, and its trial number (null for a run of no study).
    study_id: int | None = None
    trial: int | None = None


class EventOut(BaseModel):
    """A command or a worker status change; payload fields are also copied to the top level."""

    model_config = ConfigDict(extra="allow")

    id: int
    run_id: int
    type: str
    source: Literal["user", "worker", "autopilot"]
    step: int | None
    created_at: str
    applied_at: str | None
    error: str | None
    payload: dict[str, Any]
    # What became of it: pending (not applied yet), applied, error (could not apply, or the run
    # ended first); note says it for a person ("applied at step 545", "waiting for a worker: run
    # #3 holds it", the error text).
    state: Literal["pending", "applied", "error"]
    note: str


class CheckpointOut(BaseModel):
    """A stored checkpoint (its state is not served)."""

    id: int
    step: int
    created_at: str
    sha256: str
    size: int
    # "before lr 0.003" for the state written just before a learning-rate change (never thinned
    # out: going back to it undoes the change); null for the others.
    label: str | None = None


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
    # The training split in evaluation mode (no dropout, BN running statistics), on a fixed
    # subset as large as the validation split; set where val_* is, null elsewhere. train_* is
    # the step's mini-batch in training mode.
    train_eval_loss: list[Number]
    train_eval_acc: list[Number]
    exact: bool
