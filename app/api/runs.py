"""``/api/runs``: list, create, read, events, checkpoints, fork."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException
from sqlalchemy.orm import Session

from app import crud
from app.api.deps import DbDep, ReadSession, RunId, SettingsDep, run_or_404
from app.api.responses import CheckpointOut, EventOut, RunOut
from app.api.schemas import (
    FROZEN_ON_FORK,
    ForkRequest,
    RunCreate,
    config_for_storage,
    invalid,
    stored_config,
)
from app.crud.fork_rates import settle_fork_rate

router = APIRouter(prefix="/api/runs", tags=["runs"])


@router.get("", response_model=list[RunOut])
def list_runs(s: ReadSession) -> list[dict[str, Any]]:
    """All runs, newest first."""
    return crud.serialize_runs(s, crud.list_runs(s))


@router.post("", status_code=201, response_model=RunOut)
def create_run(body: RunCreate, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """Create a run; it is queued and the next free worker starts it."""
    config = config_for_storage(body.config, settings)
    with db.write() as s:
        run = crud.create_run(s, config=config, name=body.name)
        if body.pace is not None:
            crud.record_command(s, run.id, "set_pace", {"steps_per_second": body.pace})
        for policy in dict.fromkeys(body.autopilot):  # each once, in the order given
            crud.record_command(s, run.id, "autopilot", {"policy": policy, "on": True})
        return crud.serialize_run(run)


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: RunId, s: ReadSession) -> dict[str, Any]:
    """One run."""
    return crud.serialize_run(run_or_404(s, run_id))


@router.get("/{run_id}/events", response_model=list[EventOut])
def list_events(run_id: RunId, db: DbDep) -> list[dict[str, Any]]:
    """Commands and worker status changes in id order; ``step`` is null while pending, ``state``
    and ``note`` say what became of each. Commands an older version left pending on an ended run
    are closed here first (the run ended before they applied)."""
    with db.read() as s:
        stale = crud.has_stale_commands(s, run_or_404(s, run_id))
    if stale:
        with db.write() as s:
            crud.close_if_ended(s, run_or_404(s, run_id))
    with db.read() as s:
        events = crud.list_events(s, run_id)
        holders = crud.live_lease_holders(s) if any(e.step is None for e in events) else []
        return [
            crud.serialize_event(e, crud.describe_command(s, e, holders=holders)) for e in events
        ]


@router.get("/{run_id}/checkpoints", response_model=list[CheckpointOut])
def list_checkpoints(run_id: RunId, s: ReadSession) -> list[dict[str, Any]]:
    """Checkpoints in step order (without their state); ``label`` "before lr X" marks the state
    written just before a learning-rate change."""
    run_or_404(s, run_id)
    return crud.list_checkpoints(s, run_id)


@router.post("/{run_id}/fork", status_code=201, response_model=RunOut)
def fork_run(run_id: RunId, body: ForkRequest, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """A new run continuing from the checkpoint at ``step`` (409 if there is none there; with
    ``nearest``, the newest at or before it), with config overrides; ``more_steps`` N makes it
    train N steps after the fork step. It goes on at the parent's rate at the fork step unless a
    new ``lr`` is given (app/crud/fork_rates.py)."""
    for key in body.overrides:
        if key in FROZEN_ON_FORK:
            raise invalid(
                ("body", "overrides", key), "cannot change on a fork", body.overrides[key]
            )
    with db.write() as s:
        parent = run_or_404(s, run_id)
        overrides = dict(body.overrides)
        if body.more_steps is not None:
            overrides["max_steps"] = _max_steps_for(s, run_id, body)
        merged = {**crud.run_config(parent), **overrides}
        config = stored_config(merged, settings, ("body", "overrides"))
        new_lr = body.overrides.get("lr")
        new_lr = float(new_lr) if new_lr is not None else None
        if not body.nearest:
            _require_checkpoint_at(s, run_id, body.step)
        child = crud.fork_run(s, parent, step=body.step, config=config, name=body.name, lr=new_lr)
        if child is None:
            raise _no_checkpoint(run_id, body.step)
        if not body.nearest and child.parent_step != body.step:  # damaged: rolled back
            raise _not_at(s, run_id, body.step)
        if body.more_steps is not None and child.parent_step is not None:
            # A damaged newest checkpoint was skipped: count the steps from the one used.
            config["max_steps"] = child.parent_step + body.more_steps
            child.config = json.dumps(config)
        settle_fork_rate(s, parent, child, new_lr=new_lr)
        s.flush()
        return crud.serialize_run(child)


def _require_checkpoint_at(s: Session, run_id: int, step: int) -> None:
    """409 unless the run has a checkpoint at exactly ``step`` (read without any state)."""
    if crud.checkpoint_step_at_or_before(s, run_id, step) != step:
        raise _not_at(s, run_id, step)


def _not_at(s: Session, run_id: int, step: int) -> HTTPException:
    steps = [c["step"] for c in crud.list_checkpoints(s, run_id)]
    before = max((k for k in steps if k < step), default=None)
    after = min((k for k in steps if k > step), default=None)
    near = " and ".join(str(k) for k in (before, after) if k is not None) or "none"
    return HTTPException(
        status_code=409,
        detail=f"run {run_id} has no usable checkpoint at step {step} (it may have been "
        f"thinned out since the list was shown); the nearest are at steps {near}; "
        '"nearest": true forks from the newest at or before it',
    )


def _no_checkpoint(run_id: int, step: int) -> HTTPException:
    return HTTPException(
        status_code=409, detail=f"run {run_id} has no checkpoint at or before step {step}"
    )


def _max_steps_for(s: Session, run_id: int, body: ForkRequest) -> int:
    """``max_steps`` of a fork asked to train ``more_steps`` after its fork step; 422 when an
    explicit ``overrides.max_steps`` says otherwise, 409 when there is no checkpoint."""
    assert body.more_steps is not None
    start = crud.checkpoint_step_at_or_before(s, run_id, body.step)
    if start is None:
        raise _no_checkpoint(run_id, body.step)
    wanted = start + body.more_steps
    explicit = body.overrides.get("max_steps")
    if explicit is not None and explicit != wanted:
        raise invalid(
            ("body", "more_steps"),
            f"conflicts with overrides.max_steps={explicit!r}: the fork starts at step {start}, "
            f"so {body.more_steps} more steps end at step {wanted}",
            body.more_steps,
        )
    return wanted
