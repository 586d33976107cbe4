"""``/api/runs``: list, create, read, events, checkpoints, fork."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import ValidationError

from app import crud
from app.api.deps import DbDep, ReadSession, SettingsDep, run_or_404
from app.api.responses import CheckpointOut, EventOut, RunOut
from app.api.schemas import FROZEN_ON_FORK, ForkRequest, RunCreate, config_for_storage, invalid
from engine import RunConfig

router = APIRouter(prefix="/api/runs", tags=["runs"])


@router.get("", response_model=list[RunOut])
def list_runs(s: ReadSession) -> list[dict[str, Any]]:
    """All runs, newest first."""
    return [crud.serialize_run(r) for r in crud.list_runs(s)]


@router.post("", status_code=201, response_model=RunOut)
def create_run(body: RunCreate, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """Create a run; it is queued and the next free worker starts it."""
    config = config_for_storage(body.config, settings.data_dir)
    with db.write() as s:
        run = crud.create_run(s, config=config, name=body.name)
        if body.pace is not None:
            crud.record_command(s, run.id, "set_pace", {"steps_per_second": body.pace})
        return crud.serialize_run(run)


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: int, s: ReadSession) -> dict[str, Any]:
    """One run."""
    return crud.serialize_run(run_or_404(s, run_id))


@router.get("/{run_id}/events", response_model=list[EventOut])
def list_events(run_id: int, s: ReadSession) -> list[dict[str, Any]]:
    """Commands and worker status changes in id order; ``step`` is null while pending."""
    run_or_404(s, run_id)
    return [crud.serialize_event(e) for e in crud.list_events(s, run_id)]


@router.get("/{run_id}/checkpoints", response_model=list[CheckpointOut])
def list_checkpoints(run_id: int, s: ReadSession) -> list[dict[str, Any]]:
    """Checkpoints in step order (without their state)."""
    run_or_404(s, run_id)
    return crud.list_checkpoints(s, run_id)


@router.post("/{run_id}/fork", status_code=201, response_model=RunOut)
def fork_run(run_id: int, body: ForkRequest, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """A new run continuing from the checkpoint at or before ``step``, with config overrides."""
    for key in body.overrides:
        if key in FROZEN_ON_FORK:
            raise invalid(
                ("body", "overrides", key), "cannot change on a fork", body.overrides[key]
            )
    with db.write() as s:
        parent = run_or_404(s, run_id)
        merged = {**crud.run_config(parent), **body.overrides}
        try:
            cfg = RunConfig(**merged)
        except ValidationError as exc:
            raise invalid(
                ("body", "overrides", *exc.errors()[0]["loc"]), exc.errors()[0]["msg"], merged
            ) from exc
        config = config_for_storage(cfg, settings.data_dir, ("body", "overrides"))
        new_lr = body.overrides.get("lr")
        child = crud.fork_run(
            s, parent, step=body.step, config=config, name=body.name,
            lr=float(new_lr) if new_lr is not None else None,
        )  # fmt: skip
        if child is None:
            raise HTTPException(
                status_code=409,
                detail=f"run {run_id} has no checkpoint at or before step {body.step}",
            )
        return crud.serialize_run(child)
