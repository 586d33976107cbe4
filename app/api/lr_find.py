"""``POST /api/runs/{id}/lr-find``: a learning-rate range test on a fork of a run.

The range test is an ordinary run: a fork of the parent's latest checkpoint whose config asks for
the ``range_test`` schedule (engine/schedules.py), so it trains, checkpoints, survives a worker
crash and shows on its own page like any run, and the parent's history is untouched. Its first
rate is pinned by a ``set_lr`` of ``min_lr`` at the fork step (as a fork with a new rate is); the
worker ends it early when the loss explodes (app/worker/lr_find.py); once it has ended, its run
object carries ``suggested_lr`` (app/crud/lr_find.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from app import crud
from app.api.deps import DbDep, SettingsDep, run_or_404
from app.api.responses import RunOut
from app.api.schemas import MAX_LR, invalid, stored_config
from app.crud.fork_rates import settle_fork_rate
from app.crud.lr_find import is_range_test
from app.db import Database
from app.settings import Settings

router = APIRouter(prefix="/api/runs", tags=["runs"])

MAX_RANGE_STEPS = 10_000


class LrFindRequest(BaseModel):
    """The range: from ``min_lr`` to ``max_lr``, exponentially, over ``steps`` steps.

    The defaults (1e-7 to 10 over 200 steps) span every rate worth trying on the built-in
    problems; fewer than 20 steps leave too few points for a suggestion (the first 10 and the
    last 5 are left out of it, engine/lr_find.py).
    """

    model_config = ConfigDict(extra="forbid")

    min_lr: float = Field(1e-7, gt=0, le=MAX_LR, allow_inf_nan=False)
    max_lr: float = Field(10.0, gt=0, le=MAX_LR, allow_inf_nan=False)
    steps: int = Field(200, ge=20, le=MAX_RANGE_STEPS, strict=True)
    name: str | None = Field(default=None, max_length=200)


@router.post("/{run_id}/lr-find", status_code=201, response_model=RunOut)
def lr_find(
    run_id: int,
    db: DbDep,
    settings: SettingsDep,
    body: Annotated[LrFindRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Start a range test from the run's latest checkpoint (the body is optional): 201 with the
    new run, 409 when the run has no checkpoint yet or is itself a range test."""
    return start_range_test(run_id, body or LrFindRequest(), db, settings)


def start_range_test(
    run_id: int, body: LrFindRequest, db: Database, settings: Settings
) -> dict[str, Any]:
    """The range-test run, created and queued (also called by the run page's button)."""
    if not body.max_lr > body.min_lr:
        raise invalid(("body", "max_lr"), f"must be above min_lr ({body.min_lr})", body.max_lr)
    with db.write() as s:
        parent = run_or_404(s, run_id)
        parent_config = crud.run_config(parent)
        if is_range_test(parent_config):
            raise HTTPException(409, f"run {run_id} is a range test itself: test its parent")
        ckpt = crud.latest_checkpoint(s, run_id)
        if ckpt is None:
            raise HTTPException(409, f"run {run_id} has no checkpoint yet: start it first")
        merged = {
            **parent_config,
            "schedule": "range_test",
            "lr": body.min_lr,
            "lr_range_max": body.max_lr,
            "lr_range_start": ckpt.step,
            "max_steps": ckpt.step + body.steps,
            "eval_every": body.steps,  # one evaluation, at the end: the test reads train losses
        }
        # A parent config this version no longer accepts is a 422 too.
        config = stored_config(merged, settings)
        name = body.name or f"{parent.name} lr-find@{ckpt.step}"
        child = crud.fork_run(s, parent, step=ckpt.step, config=config, name=name, lr=body.min_lr)
        assert child is not None  # the checkpoint exists (same transaction)
        settle_fork_rate(s, parent, child, new_lr=body.min_lr)
        if crud.current_pace(s, run_id) is not None:  # a measurement: at full speed
            crud.record_command(s, child.id, "set_pace", {"steps_per_second": None})
        s.flush()
        return crud.serialize_run(child)
