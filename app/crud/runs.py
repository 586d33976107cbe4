"""Runs: create, read, update, serialize."""

from __future__ import annotations

import json
import math
import sys
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, object_session

from app.models import Run
from app.series import json_float
from engine import RunConfig
from engine.schedules import Schedule


def now() -> float:
    """Wall-clock unix seconds, the time unit of every table."""
    return time.time()


def iso(ts: float | None) -> str | None:
    """Unix seconds as an ISO 8601 UTC string for the API."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def create_run(
    session: Session,
    *,
    config: dict[str, Any],
    name: str | None = None,
    status: str = "queued",
    parent_id: int | None = None,
    parent_step: int | None = None,
    worker_id: str | None = None,
    lease_until: float | None = None,
) -> Run:
    """Insert a run; without a name it is called ``run-<id>``."""
    ts = now()
    run = Run(
        name=name or "",
        status=status,
        config=json.dumps(config),
        parent_id=parent_id,
        parent_step=parent_step,
        created_at=ts,
        updated_at=ts,
        step=parent_step or 0,
        lr=config.get("lr"),
        worker_id=worker_id,
        lease_until=lease_until,
    )
    session.add(run)
    session.flush()
    if not name:
        run.name = f"run-{run.id}"
        session.flush()
    return run


def list_runs(session: Session, *, limit: int = 500) -> list[Run]:
    """Runs, newest first."""
    return list(session.scalars(select(Run).order_by(Run.id.desc()).limit(limit)))


def get_run(session: Session, run_id: int) -> Run | None:
    """The run with this id, or None."""
    return session.get(Run, run_id)


def run_config(run: Run) -> dict[str, Any]:
    """The run's config as a dict (stored as JSON text for portability)."""
    return json.loads(run.config)


def update_run(session: Session, run_id: int, **values: Any) -> None:
    """Set columns of one run and bump updated_at."""
    values["updated_at"] = now()
    runs = Run.__table__
    session.execute(update(runs).where(runs.c.id == run_id).values(**values))


def lr_parts(
    lr: float | None, config: dict[str, Any], step: int, total_steps: int | None
) -> tuple[float | None, float | None]:
    """How the rate of the next step is made: (lr_base, lr_factor) with lr = lr_base x lr_factor,
    lr_factor the schedule's factor at the next step (a pure function of config, step and
    total_steps). (None, None) when the rate is not of that form: set where the schedule's factor
    is 0 (engine/schedules.py), or the factor unknown (a cosine run whose length is not known yet).
    """
    if lr is None or not math.isfinite(lr):
        return None, None
    total = total_steps or config.get("max_steps")
    if total is None:
        if step != 0:
            return None, None
        total = 1  # at position 0 every schedule's factor is 1, whatever the length
    # The stored config was validated when the run was made; model_construct only fills in the
    # defaults of fields added since, so the schedule is built exactly as the worker builds it.
    schedule = Schedule.of(RunConfig.model_construct(**config), int(total))
    try:
        factor = schedule.factor(step)
    except ValueError:
        return None, None
    if factor < sys.float_info.min:
        return None, None
    base = lr / factor
    return (base, factor) if math.isfinite(base) else (None, None)


def serialize_runs(session: Session, runs: list[Run]) -> list[dict[str, Any]]:
    """``serialize_run`` of many runs, their study links read in one query (one per run made
    ``GET /api/runs`` of 100 runs cost 20 ms, most of a request's time under load)."""
    from app.crud.studies import trial_links  # studies -> runs: imported when first needed

    links = trial_links(session, [r.id for r in runs])
    return [serialize_run(r, links=links) for r in runs]


def serialize_run(run: Run, *, links: dict[int, tuple[int, int]] | None = None) -> dict[str, Any]:
    """The run object of the API (``GET /api/runs/{id}``, SSE ``status``), JSON-safe.

    ``lr`` is the rate the next step trains at, ``lr_base`` x ``lr_factor`` how it is made (see
    ``lr_parts``), so a page can say "0.0046 = 0.01 x cosine 0.46". ``links``: the study links
    of a batch of runs already read (``serialize_runs``); without, this run's is read.
    """
    config = run_config(run)
    lr_base, lr_factor = lr_parts(run.lr, config, run.step, run.total_steps)
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "step": run.step,
        "lr": json_float(run.lr),
        "lr_base": lr_base,
        "lr_factor": lr_factor,
        "config": config,
        "parent_id": run.parent_id,
        "parent_step": run.parent_step,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "total_steps": run.total_steps,
        "best_val_loss": json_float(run.best_val_loss),
        "best_val_acc": json_float(run.best_val_acc),
        "error": run.error,
        "suggested_lr": _suggested_lr(run, config),
        **_study_link(run, links),
    }


def _study_link(run: Run, links: dict[int, tuple[int, int]] | None) -> dict[str, int | None]:
    """``study_id`` and ``trial`` (its number) of a run that is a study's trial, else null."""
    from app.crud.studies import trial_link  # studies -> runs: imported when first needed

    session = object_session(run)
    if links is not None:
        link = links.get(run.id)
    else:
        known = session is not None and run.id is not None
        link = trial_link(session, run.id) if known else None
    return {"study_id": link[0], "trial": link[1]} if link else {"study_id": None, "trial": None}


def _suggested_lr(run: Run, config: dict[str, Any]) -> float | None:
    from app.crud.lr_find import suggested_lr  # metrics -> runs: imported when first needed

    return suggested_lr(run, config)
