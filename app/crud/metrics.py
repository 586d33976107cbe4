"""Metric rows: idempotent batched inserts that keep the rollups, and reads through a lineage.

Every read goes through ``app.crud.lineage.segments``: a fork's steps up to its ``parent_step``
are read from its parent (no copy is made when forking).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Insert, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.crud import rollups
from app.crud.lineage import Segment, segment_rows, segments
from app.crud.runs import now
from app.models import Metric, Run, TrainEval
from app.series import COLUMNS, Row, to_columns

_STORED = frozenset(c.name for c in Metric.__table__.columns) - {"run_id"}
_TRAIN_EVAL = ("train_eval_loss", "train_eval_acc")  # stored in train_evals, at evaluations


def _insert_ignoring_duplicates(session: Session, table: Table = Metric.__table__) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING in the dialect of the session's database.

    On the Core table: a plain executemany, not the ORM's bulk-insert path."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=["run_id", "step"])
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=["run_id", "step"])
    raise RuntimeError(f"unsupported database dialect: {dialect}")


def append_metrics(session: Session, run_id: int, rows: list[dict[str, Any]]) -> int:
    """Insert rows (dicts with Metric's columns), skipping steps already stored.

    The run's ``step`` (last committed step) moves forward in the same transaction, which is what
    makes a crash lose nothing: the step counter never runs ahead of the stored rows. Only rows
    not stored yet are folded into the rollups, so a replay after a crash counts nothing twice.
    Keys that are not stored (``epoch``, derivable from the step) are dropped. A row's
    ``train_eval_loss``/``train_eval_acc`` (set at evaluations) go to ``train_evals``. Returns
    the number of rows handed in.
    """
    if not rows:
        return 0
    steps = [int(r["step"]) for r in rows]
    first, last = min(steps), max(steps)
    # Stored rows never run ahead of the run's step (it moves in the same transaction), so when
    # the step is below this batch none of it is stored: the usual flush needs no extra read.
    ahead = session.execute(
        update(Run).where(Run.id == run_id, Run.step < first).values(step=last, updated_at=now())
    )
    fresh = rows if ahead.rowcount else _not_stored(session, run_id, rows, first, last)
    if fresh:
        session.execute(
            _insert_ignoring_duplicates(session),
            [{"run_id": run_id, **{k: v for k, v in r.items() if k in _STORED}} for r in fresh],
        )
        rollups.record(session, run_id, [tuple(r.get(c) for c in COLUMNS) for r in fresh])
        evals = [
            {"run_id": run_id, "step": r["step"], **{k: r[k] for k in _TRAIN_EVAL}}
            for r in fresh
            if r.get("train_eval_acc") is not None
        ]
        if evals:
            session.execute(_insert_ignoring_duplicates(session, TrainEval.__table__), evals)
    if not ahead.rowcount:
        session.execute(
            update(Run).where(Run.id == run_id, Run.step < last).values(step=last, updated_at=now())
        )
    return len(rows)


def _not_stored(
    session: Session, run_id: int, rows: list[dict[str, Any]], first: int, last: int
) -> list[dict[str, Any]]:
    """The rows of a batch (a replay after a crash) whose step is not stored yet."""
    table = Metric.__table__
    stored = set(
        session.connection()
        .execute(
            select(table.c.step).where(
                table.c.run_id == run_id, table.c.step >= first, table.c.step <= last
            )
        )
        .scalars()
    )
    return [r for r in rows if int(r["step"]) not in stored]


def metric_rows(
    session: Session,
    run_id: int,
    *,
    after: int = 0,
    before: int | None = None,
    limit: int | None = None,
) -> list[Row]:
    """Rows with after < step < before, in step order, as tuples in ``app.series.COLUMNS`` order."""
    out: list[Row] = []
    for seg in segments(session, run_id, after=after, before=before):
        left = None if limit is None else limit - len(out)
        if left is not None and left <= 0:
            break
        out.extend(segment_rows(session, seg, limit=left))
    return out


def iter_metric_rows(session: Session, run_id: int, *, chunk: int = 5000) -> Iterator[Row]:
    """Every row of a run, read in chunks so a long run is never held in memory at once."""
    after = 0
    while True:
        rows = metric_rows(session, run_id, after=after, limit=chunk)
        yield from rows
        if len(rows) < chunk:
            return
        after = int(rows[-1][0])


def last_row(
    session: Session, run_id: int, *, evaluations_only: bool = False, before: int | None = None
) -> Row | None:
    """The newest row of a run (or its newest evaluation row), through its lineage."""
    for seg in reversed(segments(session, run_id, before=before)):
        found = segment_rows(
            session, seg, limit=1, newest_first=True, evaluations_only=evaluations_only
        )
        if found:
            return found[0]
    return None


def last_metrics(session: Session, run_id: int) -> dict[str, Any]:
    """The latest training row and the latest evaluation of a run (for a final summary)."""
    last = last_row(session, run_id)
    last_val = last_row(session, run_id, evaluations_only=True)
    cols = to_columns([last] if last else [])
    out: dict[str, Any] = {k: (v[0] if v else None) for k, v in cols.items()}
    if last_val is not None:
        val = to_columns([last_val])
        out["val_loss"], out["val_acc"] = val["val_loss"][0], val["val_acc"][0]
        out["train_eval_loss"] = val["train_eval_loss"][0]
        out["train_eval_acc"] = val["train_eval_acc"][0]
        out["val_step"] = int(last_val[0])
    return out


def count_metrics(session: Session, run_id: int) -> int:
    """How many rows a run has (its lineage's), summed from the rollups plus the ragged edges."""
    total = 0
    top = len(rollups.WIDTHS) - 1
    for seg in segments(session, run_id):
        last = seg.before - 1 if seg.before is not None else _own_last_step(session, seg.run_id)
        if last is None or last <= seg.after:
            continue
        pieces, _rows = rollups.cover(session, seg, seg.after + 1, last, top)
        total += sum(int(p[1 + rollups.N]) for p in pieces)
    return total


def _own_last_step(session: Session, run_id: int) -> int | None:
    found = segment_rows(session, Segment(run_id, 0, None), limit=1, newest_first=True)
    return int(found[0][0]) if found else None


def evaluations_at(
    session: Session, run_id: int, steps: list[int]
) -> dict[int, tuple[float, float | None]]:
    """Validation (loss, accuracy) of the evaluations at ``steps``, through the lineage: one
    query per segment, whatever the number of steps (the fork list labels up to 30 checkpoints
    with the evaluation before each; a query per checkpoint made it the costliest part of the
    run page under load). A non-finite loss (stored NULL beside a set accuracy) is NaN."""
    wanted = sorted(set(steps))
    out: dict[int, tuple[float, float | None]] = {}
    if not wanted:
        return out
    for seg in segments(session, run_id, after=wanted[0] - 1, before=wanted[-1] + 1):
        inside = [k for k in wanted if k > seg.after and (seg.before is None or k < seg.before)]
        for i in range(0, len(inside), 500):
            stmt = select(Metric.step, Metric.val_loss, Metric.val_acc).where(
                Metric.run_id == seg.run_id,
                Metric.step.in_(inside[i : i + 500]),
                Metric.val_acc.is_not(None),
            )
            for step, loss, acc in session.execute(stmt):
                out[int(step)] = (float("nan") if loss is None else float(loss), acc)
    return out
