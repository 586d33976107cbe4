"""Which run's table holds which steps of a run: a fork reads its parent's rows, not copies.

A fork continues from its parent's checkpoint at ``parent_step``; its own rows start after that
step and every earlier step is the parent's (recursively, for a fork of a fork). Forking therefore
writes no metric rows at all, and every read of a run's rows goes through ``segments``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Metric, Run, TrainEval
from app.series import STEP, VAL_ACC, Row, restore_nan

ROW_COLUMNS = (
    Metric.step,
    Metric.time,
    Metric.lr,
    Metric.train_loss,
    Metric.train_acc,
    Metric.val_loss,
    Metric.val_acc,
)
"""What ``metrics`` holds of a row: ``app.series.COLUMNS`` up to ``val_acc``; the ``train_eval_*``
columns come from ``train_evals`` (``with_train_evals``)."""

_NO_EVAL = (None, None)
_MAX_DEPTH = 10_000  # a guard against a corrupt parent cycle, far above any real lineage


class Segment(NamedTuple):
    """Rows of ``run_id``'s own table with ``after < step < before`` (``before`` None: no end)."""

    run_id: int
    after: int
    before: int | None


def segments(
    session: Session, run_id: int, *, after: int = 0, before: int | None = None
) -> list[Segment]:
    """Where the rows of ``run_id`` with ``after < step < before`` live, in step order.

    Rows a fork made by an older version copied from its parent (steps up to ``parent_step``)
    are ignored: the parent's rows are the same ones. Empty when the run does not exist.
    """
    chain: list[Segment] = []
    upper: int | None = None  # exclusive end of what the current run owns
    current: int | None = run_id
    seen: set[int] = set()
    while current is not None and current not in seen and len(seen) < _MAX_DEPTH:
        seen.add(current)
        row = session.execute(
            select(Run.parent_id, Run.parent_step).where(Run.id == current)
        ).first()
        if row is None:
            break
        parent_id, parent_step = row
        forked = parent_id is not None and parent_step is not None
        lower = int(parent_step) if forked else 0
        chain.append(Segment(current, lower, upper))
        if not forked:
            break
        upper = lower + 1 if upper is None else min(upper, lower + 1)
        current = parent_id
    out: list[Segment] = []
    for seg in reversed(chain):
        lo = max(seg.after, after)
        hi = _min_end(seg.before, before)
        if hi is None or lo < hi - 1:
            out.append(Segment(seg.run_id, lo, hi))
    return out


def segment_rows(
    session: Session,
    seg: Segment,
    *,
    limit: int | None = None,
    newest_first: bool = False,
    evaluations_only: bool = False,
) -> list[Row]:
    """A segment's rows (as ``app.series.COLUMNS`` tuples, NaN restored), one index range scan."""
    stmt = select(*ROW_COLUMNS).where(Metric.run_id == seg.run_id, Metric.step > seg.after)
    if seg.before is not None:
        stmt = stmt.where(Metric.step < seg.before)
    if evaluations_only:  # the partial index ix_metrics_eval serves exactly this filter
        stmt = stmt.where(Metric.val_acc.is_not(None))
    stmt = stmt.order_by(Metric.step.desc() if newest_first else Metric.step)
    if limit is not None:
        stmt = stmt.limit(limit)
    return with_train_evals(session, seg.run_id, session.execute(stmt).all())


def with_train_evals(
    session: Session, run_id: int, rows: Sequence[Sequence[Any]], *, sparse: bool = False
) -> list[Row]:
    """``metrics`` rows (``ROW_COLUMNS`` tuples) of one run completed with their ``train_evals``
    values (null where none), as ``app.series.COLUMNS`` tuples, NaN restored.

    Only evaluation rows can have one, so a batch without any costs no query; otherwise one
    range scan of ``train_evals`` over the batch's evaluation steps, or with ``sparse`` (rows
    picked across a long run, as an overview's) primary-key lookups of exactly those steps.
    """
    evaluated = [int(r[STEP]) for r in rows if r[VAL_ACC] is not None]
    found: dict[int, tuple[Any, Any]] = {}
    if evaluated:
        stmt = select(TrainEval.step, TrainEval.train_eval_loss, TrainEval.train_eval_acc).where(
            TrainEval.run_id == run_id
        )
        if sparse:
            stmt = stmt.where(TrainEval.step.in_(evaluated))
        else:
            stmt = stmt.where(TrainEval.step >= min(evaluated), TrainEval.step <= max(evaluated))
        found = {int(step): (loss, acc) for step, loss, acc in session.execute(stmt)}
    return [restore_nan((*r, *found.get(int(r[STEP]), _NO_EVAL))) for r in rows]


def _min_end(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
