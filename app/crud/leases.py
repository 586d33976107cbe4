"""Who trains which run: claims, heartbeats and releases, guarded by ``worker_id`` + lease.

Every write a worker makes to its run goes through ``renew_lease`` first: if the lease was lost
(the worker stalled past ``lease_until`` and another worker took the run), the UPDATE matches
nothing and the caller abandons the run instead of writing over the new owner.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, exists, or_, select, update
from sqlalchemy.orm import Session

from app.crud import events
from app.crud.runs import now
from app.models import Event, Run


def _claimable(ts: float) -> Any:
    expired = Run.lease_until < ts
    unowned = Run.worker_id.is_(None)
    pending = exists().where(Event.run_id == Run.id, Event.source == "user", Event.step.is_(None))
    return or_(
        and_(Run.status.in_(("queued", "running")), or_(unowned, expired)),
        and_(Run.status == "paused", Run.worker_id.is_not(None), expired),
        and_(Run.status == "paused", unowned, pending),
    )


def claim_run(
    session: Session,
    worker_id: str,
    lease_seconds: float,
    *,
    run_id: int | None = None,
    max_crashes: int | None = None,
) -> Run | None:
    """Take the next claimable run (or the given one) for ``worker_id``; None if there is none.

    Claimable: queued; running or paused with an expired lease (its worker died); running and
    released at shutdown; paused and released with a pending command (e.g. resume). Runs coming
    back come before queued ones, then oldest first, except a run whose last worker died and
    that has made no progress since, which waits behind the queued ones. The conditional UPDATE
    makes the claim atomic on PostgreSQL as well.

    Taking over an expired lease counts a crash (``crashes``; back to 1 when the run made
    progress since the last one): once ``max_crashes`` workers in a row died on a run without it
    committing a step, the run is marked failed with an error that says so instead of being
    handed to the next worker to kill.
    """
    ts = now()
    stmt = select(Run.id).where(_claimable(ts))
    if run_id is not None:
        stmt = stmt.where(Run.id == run_id)
    crashed_here = and_(Run.crashes > 0, Run.crash_step == Run.step)  # no progress since
    order = case((crashed_here, 2), (Run.status == "queued", 1), else_=0)
    stmt = stmt.order_by(order, Run.id).limit(5)
    takeover = Run.worker_id.is_not(None)  # claimable while held: its lease has expired
    crashes = case(
        (takeover, case((Run.crash_step == Run.step, Run.crashes + 1), else_=1)),
        else_=Run.crashes,
    )
    crash_step = case((takeover, Run.step), else_=Run.crash_step)
    for candidate in session.scalars(stmt).all():
        result = session.execute(
            update(Run)
            .where(Run.id == candidate, _claimable(ts))
            .values(
                worker_id=worker_id,
                lease_until=ts + lease_seconds,
                updated_at=ts,
                crashes=crashes,
                crash_step=crash_step,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            continue
        run = session.get(Run, candidate, populate_existing=True)
        assert run is not None
        if max_crashes is not None and run.crashes >= max_crashes:
            _fail_crashed(session, run, worker_id)
            continue
        return run
    return None


def _fail_crashed(session: Session, run: Run, worker_id: str) -> None:
    """Mark a run failed that killed ``run.crashes`` workers in a row at ``run.step``."""
    error = (
        f"{run.crashes} workers in a row died training this run at step {run.step} (their "
        "leases expired): most likely it needs more memory than this machine has; fork it with "
        "a smaller model or batch"
    )
    release_run(session, run.id, worker_id, status="failed", error=error)
    events.record_worker_event(
        session, run.id, "failed", run.step, {"crashes": run.crashes}, error=error
    )
    events.close_pending_commands(session, run.id, run.step, "failed")
    session.refresh(run)


def renew_lease(
    session: Session, run_id: int, worker_id: str, lease_seconds: float, **values: Any
) -> bool:
    """Extend the lease (and set other columns); False if this worker no longer holds the run."""
    ts = now()
    runs = Run.__table__  # Core UPDATE: this runs every flush, skip the ORM's session sync
    result = session.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.worker_id == worker_id)
        .values(lease_until=ts + lease_seconds, updated_at=ts, **values)
    )
    return result.rowcount == 1


def release_run(session: Session, run_id: int, worker_id: str, **values: Any) -> bool:
    """Hand a run back (status unchanged unless given) so any worker may claim it."""
    runs = Run.__table__
    result = session.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.worker_id == worker_id)
        .values(worker_id=None, lease_until=None, updated_at=now(), **values)
    )
    return result.rowcount == 1


def has_queued_runs(session: Session) -> bool:
    """Whether any run is waiting for a worker (so a paused run should make room)."""
    ts = now()
    stmt = select(Run.id).where(
        Run.status == "queued", or_(Run.worker_id.is_(None), Run.lease_until < ts)
    )
    return session.execute(stmt.limit(1)).first() is not None


def stop_if_unclaimed(session: Session, run_id: int) -> bool:
    """Stop a run no worker holds (queued, or handed back) at once; False if a worker has it.

    A held run is stopped by its worker at a step boundary instead. The conditional UPDATE makes
    this safe against a worker claiming the run at the same moment.
    """
    runs = Run.__table__
    result = session.execute(
        update(runs)
        .where(
            runs.c.id == run_id,
            runs.c.worker_id.is_(None),
            runs.c.status.in_(("queued", "running", "paused")),
        )
        .values(status="stopped", updated_at=now())
    )
    return result.rowcount == 1
