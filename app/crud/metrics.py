"""Metric rows: idempotent batched inserts and columnar reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Insert, Integer, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.crud.runs import now
from app.models import Metric, Run
from app.series import Row, downsample, restore_nan, to_columns

_ROW_COLUMNS = (
    Metric.step,
    Metric.time,
    Metric.lr,
    Metric.train_loss,
    Metric.train_acc,
    Metric.val_loss,
    Metric.val_acc,
)


def _insert_ignoring_duplicates(session: Session) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING in the dialect of the session's database."""
    dialect = session.get_bind().dialect.name
    table = Metric.__table__  # Core table: a plain executemany, not the ORM's bulk-insert path
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=["run_id", "step"])
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=["run_id", "step"])
    raise RuntimeError(f"unsupported database dialect: {dialect}")


def append_metrics(session: Session, run_id: int, rows: list[dict[str, Any]]) -> int:
    """Insert rows (dicts with Metric's columns), skipping steps already stored.

    The run's ``step`` (last committed step) moves forward in the same transaction, which is what
    makes a crash lose nothing: the step counter never runs ahead of the stored rows. Returns the
    number of rows handed in.
    """
    if not rows:
        return 0
    session.execute(_insert_ignoring_duplicates(session), [{"run_id": run_id, **r} for r in rows])
    last = max(int(r["step"]) for r in rows)
    session.execute(
        update(Run).where(Run.id == run_id, Run.step < last).values(step=last, updated_at=now())
    )
    return len(rows)


def metric_rows(
    session: Session,
    run_id: int,
    *,
    after: int = 0,
    before: int | None = None,
    limit: int | None = None,
) -> list[Row]:
    """Rows with after < step < before, in step order, as tuples in ``app.series.COLUMNS`` order."""
    stmt = (
        select(*_ROW_COLUMNS)
        .where(Metric.run_id == run_id, Metric.step > after)
        .order_by(Metric.step)
    )
    if before is not None:
        stmt = stmt.where(Metric.step < before)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [restore_nan(r) for r in session.execute(stmt)]


def iter_metric_rows(session: Session, run_id: int, *, chunk: int = 5000) -> Iterator[Row]:
    """Every row of a run, read in chunks so a long run is never held in memory at once."""
    after = 0
    while True:
        rows = metric_rows(session, run_id, after=after, limit=chunk)
        yield from rows
        if len(rows) < chunk:
            return
        after = int(rows[-1][0])


def metrics_after(
    session: Session, run_id: int, *, after: int = 0, max_points: int | None = None
) -> dict[str, list[Any]]:
    """Columnar metrics after a step, optionally min-max downsampled to ``max_points`` rows."""
    rows = metric_rows(session, run_id, after=after)
    if max_points is not None:
        rows = downsample(rows, max_points)
    return to_columns(rows)


def metrics_overview(
    session: Session,
    run_id: int,
    *,
    after: int = 0,
    before: int | None = None,
    max_points: int = 2000,
) -> list[Row]:
    """At most about ``max_points`` rows over after < step < before keeping spikes (min-max)."""
    return downsample(metric_rows(session, run_id, after=after, before=before), max_points)


def last_metrics(session: Session, run_id: int) -> dict[str, Any]:
    """The latest training row and the latest evaluation of a run (for a final summary)."""
    last = session.execute(
        select(*_ROW_COLUMNS).where(Metric.run_id == run_id).order_by(Metric.step.desc()).limit(1)
    ).first()
    last_val = session.execute(
        select(Metric.step, Metric.val_loss, Metric.val_acc)
        .where(Metric.run_id == run_id, Metric.val_acc.is_not(None))
        .order_by(Metric.step.desc())
        .limit(1)
    ).first()
    cols = to_columns([restore_nan(last)] if last else [])
    out: dict[str, Any] = {k: (v[0] if v else None) for k, v in cols.items()}
    if last_val is not None:
        val = to_columns([restore_nan((last_val[0], 0, 0, 0, 0, last_val[1], last_val[2]))])
        out["val_loss"], out["val_acc"] = val["val_loss"][0], val["val_acc"][0]
        out["val_step"] = int(last_val[0])
    return out


def count_metrics(session: Session, run_id: int) -> int:
    """How many rows a run has."""
    return int(session.scalar(select(func.count()).where(Metric.run_id == run_id)) or 0)


def copy_metrics(session: Session, src_run_id: int, dst_run_id: int, *, up_to: int) -> None:
    """Copy a parent's rows up to a step into a fork, so the fork's history is self-contained."""
    cols = [c.name for c in Metric.__table__.columns if c.name != "run_id"]
    source = select(
        literal(dst_run_id, Integer),
        *[Metric.__table__.c[c] for c in cols],
    ).where(Metric.run_id == src_run_id, Metric.step <= up_to)
    session.execute(insert(Metric).from_select(["run_id", *cols], source))
