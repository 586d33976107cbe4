"""``POST /api/runs/{id}/overfit-check``: can this architecture and optimizer fit 20 examples?

The check is an ordinary run, so it trains, survives a worker crash and shows on its own page
like any run: the parent's config with ``train_subset`` (the first 20 rows of its training
split), one full batch of them per step, no regularization (dropout, weight_decay and
label_smoothing 0), a constant rate (the parent's configured ``lr``) and a bounded number of
steps (300). It starts from a **fresh initialization**, not from the parent's checkpoint: the
classic check (Karpathy's "overfit one batch") asks whether the model and optimizer can learn at
all, and a trained checkpoint would answer a different question (its weights already fit most
examples). It is recorded as a child of the run (``parent_id``, ``parent_step`` 0: it shares
none of the parent's steps), and, being freshly initialized, it gets its own initial-loss event.

``GET /api/runs/{id}/overfit-check`` on the check's run reads its result from its own metric
rows: the first step whose training accuracy (on all 20 examples, the whole batch) is 100%.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from app import crud
from app.api.deps import DbDep, ReadSession, SettingsDep, run_or_404
from app.api.responses import RunOut
from app.api.schemas import stored_config
from app.crud.lr_find import is_range_test
from app.crud.metrics import metric_rows
from app.db import Database
from app.models import TERMINAL_STATUSES, Run
from app.series import STEP, TRAIN_ACC
from app.settings import Settings

router = APIRouter(prefix="/api/runs", tags=["runs"])

MAX_SUBSET = 1000
MAX_CHECK_STEPS = 10_000


class OverfitRequest(BaseModel):
    """How many training examples and steps; the defaults are the classic 20 and 300."""

    model_config = ConfigDict(extra="forbid")

    subset: int = Field(20, ge=2, le=MAX_SUBSET, strict=True)
    steps: int = Field(300, ge=10, le=MAX_CHECK_STEPS, strict=True)
    name: str | None = Field(default=None, max_length=200)


class OverfitResult(BaseModel):
    """Where an overfit check stands; ``passed`` is None while it can still change."""

    run_id: int
    status: str
    step: int
    subset: int
    steps: int
    reached_at: int | None
    passed: bool | None
    verdict: str


def is_overfit_check(config: dict[str, Any]) -> bool:
    return config.get("train_subset") is not None


def overfit_config(parent_config: dict[str, Any], body: OverfitRequest) -> dict[str, Any]:
    """The check's config: the parent's model and optimizer, fresh, on ``subset`` rows."""
    return {
        **parent_config,
        "train_subset": body.subset,
        "batch_size": body.subset,  # one full batch: each step's accuracy is over all of them
        "dropout": 0.0,
        "weight_decay": 0.0,
        "label_smoothing": 0.0,
        "schedule": "constant",
        "max_steps": body.steps,
        "eval_every": body.steps,
    }


@router.post("/{run_id}/overfit-check", status_code=201, response_model=RunOut)
def overfit_check(
    run_id: int,
    db: DbDep,
    settings: SettingsDep,
    body: Annotated[OverfitRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Start an overfit check of the run's model (the body is optional): 201 with the new run,
    409 when the run has no checkpoint yet or is itself a range test or an overfit check."""
    return start_overfit_check(run_id, body or OverfitRequest(), db, settings)


def start_overfit_check(
    run_id: int, body: OverfitRequest, db: Database, settings: Settings
) -> dict[str, Any]:
    """The check's run, created and queued (also called by the run page's button)."""
    with db.write() as s:
        parent = run_or_404(s, run_id)
        parent_config = crud.run_config(parent)
        if is_range_test(parent_config) or is_overfit_check(parent_config):
            raise HTTPException(409, f"run {run_id} is a check itself: check its parent")
        if crud.latest_checkpoint(s, run_id) is None:
            raise HTTPException(409, f"run {run_id} has no checkpoint yet: start it first")
        merged = overfit_config(parent_config, body)
        # A parent config this version no longer accepts is a 422 too.
        config = stored_config(merged, settings)
        name = body.name or f"{parent.name} overfit-check"
        child = crud.create_run(s, config=config, name=name, parent_id=parent.id, parent_step=0)
        child.total_steps = body.steps
        s.flush()
        return crud.serialize_run(child)


def overfit_result(session: Session, run: Run) -> OverfitResult:
    """The check's verdict, from its own rows (the first step at 100% training accuracy)."""
    config = crud.run_config(run)
    subset, steps = int(config["train_subset"]), int(config.get("max_steps") or 0)
    reached = next(
        (
            int(row[STEP])
            for row in metric_rows(session, run.id)
            if row[TRAIN_ACC] is not None and row[TRAIN_ACC] >= 1.0
        ),
        None,
    )
    ended = run.status in TERMINAL_STATUSES
    if reached is not None:
        passed: bool | None = True
        verdict = f"reached 100% training accuracy on {subset} examples at step {reached}: "
        verdict += "the model can learn"
    elif run.status == "diverged":
        passed = False
        verdict = f"diverged at step {run.step} before reaching 100%: the rate is too high"
    elif ended and run.step >= steps:
        passed = False
        verdict = f"did not reach 100% on {subset} examples in {steps} steps: "
        verdict += "something is broken (lr, init, a bug)"
    else:
        passed = None
        verdict = f"step {run.step} of {steps}: not at 100% yet"
        if ended:
            verdict = f"{run.status} at step {run.step} of {steps} before reaching 100%"
    return OverfitResult(
        run_id=run.id,
        status=run.status,
        step=run.step,
        subset=subset,
        steps=steps,
        reached_at=reached,
        passed=passed,
        verdict=verdict,
    )


@router.get("/{run_id}/overfit-check", response_model=OverfitResult)
def get_overfit_check(run_id: int, session: ReadSession) -> OverfitResult:
    """The result of the overfit check ``run_id``; 409 for a run that is not one."""
    run = run_or_404(session, run_id)
    if not is_overfit_check(crud.run_config(run)):
        raise HTTPException(409, f"run {run_id} is not an overfit check")
    return overfit_result(session, run)
