"""Runs: create, read, update, serialize."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import Run
from app.series import json_float


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


def serialize_run(run: Run) -> dict[str, Any]:
    """The run object of the API (``GET /api/runs/{id}``, SSE ``status``), JSON-safe."""
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "step": run.step,
        "lr": json_float(run.lr),
        "config": run_config(run),
        "parent_id": run.parent_id,
        "parent_step": run.parent_step,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "total_steps": run.total_steps,
        "best_val_loss": json_float(run.best_val_loss),
        "best_val_acc": json_float(run.best_val_acc),
        "error": run.error,
    }
