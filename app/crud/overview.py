"""An overview of a run's metrics over a step range, built from rollups in bounded time and memory.

The range is tiled by rollup buckets of one width (the coarsest with at least one per output
bucket, so at most 4 x max_points of them) and, at its ragged edges, by finer buckets and a few
exact rows (``app.crud.rollups.cover``). Output buckets are runs of whole buckets of that width,
so each keeps the true steps of its lowest and highest training loss (and validation loss); only
those rows are then read, by primary key. Nothing here reads or loops over every row of a long
range: the work grows with ``max_points``, not with the run.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.crud import rollups
from app.crud.lineage import ROW_COLUMNS, Segment, segment_rows, segments, with_train_evals
from app.models import Metric
from app.series import STEP, Row

# Below this many steps a zoomed range too narrow for the finest rollups is read row by row.
RAW_LIMIT = 16_384
_IN_CHUNK = 500  # steps per "step IN (...)" (SQLite's bound-parameter limit is far above)


def metrics_overview(
    session: Session,
    run_id: int,
    *,
    after: int = 0,
    before: int | None = None,
    max_points: int = 2000,
) -> list[Row]:
    """At most about ``max_points`` rows of after < step < before, in step order.

    Every row when the range holds at most ``max_points``; otherwise the first and last rows,
    each bucket's lowest and highest training loss (a non-finite loss counts as the highest) and
    validation loss, and every evaluation row while they take at most half the budget.
    """
    return metrics_window(session, run_id, after=after, before=before, max_points=max_points)[0]


def metrics_window(
    session: Session,
    run_id: int,
    *,
    after: int = 0,
    before: int | None = None,
    max_points: int = 2000,
) -> tuple[list[Row], bool]:
    """``metrics_overview`` and whether it is exact (True: no row of the range was left out)."""
    segs = segments(session, run_id, after=after, before=before)
    first = _edge_row(session, segs, newest=False)
    last = _edge_row(session, segs, newest=True)
    if first is None or last is None:
        return [], True
    a, b = int(first[STEP]), int(last[STEP])
    span = b - a + 1
    if span <= max_points:
        return _all_rows(session, segs), True
    budget = max(max_points - 2, 2)
    top = _level(span, max(budget // 2, 1))
    pieces: list[rollups.Agg] = []
    known: dict[int, Row] = {a: first, b: last}
    for seg in segs:
        lo = max(seg.after + 1, a)
        hi = b if seg.before is None else min(seg.before - 1, b)
        seg_pieces, seg_rows = rollups.cover(session, seg, lo, hi, top)
        pieces.extend(seg_pieces)
        known.update((int(r[STEP]), r) for r in seg_rows)
    table = np.array(pieces, dtype=np.float64).reshape(-1, 1 + len(rollups.FIELDS))
    if int(table[:, 1 + rollups.N].sum()) <= max_points:
        rows = list(known.values()) if top < 0 else _all_rows(session, segs)
        return sorted(rows, key=lambda r: r[STEP]), True
    # Output buckets are runs of whole width-``unit`` buckets: no piece straddles two of them,
    # so each keeps the true extremes of its steps.
    unit = rollups.WIDTHS[top] if top >= 0 else 1
    units = (table[:, 0] - 1) // unit - (a - 1) // unit
    n_units = (b - 1) // unit - (a - 1) // unit + 1
    keep = {a, b}
    val_total = int(table[:, 1 + rollups.VAL_N].sum())
    if val_total <= budget // 2:
        for seg in segs:
            for row in segment_rows(session, seg, evaluations_only=True):
                known[int(row[STEP])] = row
                keep.add(int(row[STEP]))
        train_budget = budget - val_total
    else:
        val_budget = budget // 2
        val_groups = units // -(-n_units // max(val_budget // 2, 1))
        keep |= _extremes(table, val_groups, _VAL)
        train_budget = budget - val_budget
    keep |= _extremes(table, units // -(-n_units // max(train_budget // 2, 1)), _TRAIN)
    missing = sorted(s for s in keep if s not in known)
    known.update(_rows_at(session, segs, missing))
    return [known[s] for s in sorted(keep) if s in known], False


def _level(span: int, groups: int) -> int:
    """The coarsest rollup width with at least one bucket per output bucket (-1: rows)."""
    per_group = span / groups
    fitting = [i for i, width in enumerate(rollups.WIDTHS) if width <= per_group]
    if fitting:
        return fitting[-1]
    return -1 if span <= RAW_LIMIT else 0


# (step column, value column, +1 for the lowest / -1 for the highest) in a pieces table
_TRAIN = (
    (1 + rollups.LO_STEP, 1 + rollups.LO_LOSS, 1.0),
    (1 + rollups.HI_STEP, 1 + rollups.HI_LOSS, -1.0),
)
_VAL = (
    (1 + rollups.VAL_LO_STEP, 1 + rollups.VAL_LO_LOSS, 1.0),
    (1 + rollups.VAL_HI_STEP, 1 + rollups.VAL_HI_LOSS, -1.0),
)


def _extremes(
    table: np.ndarray, group: np.ndarray, pairs: tuple[tuple[int, int, float], ...]
) -> set[int]:
    """Steps of the lowest and the highest value of each group of pieces (earliest on ties)."""
    keep: set[int] = set()
    for step_col, value_col, sign in pairs:
        steps, values = table[:, step_col], table[:, value_col]
        mask = ~(np.isnan(steps) | np.isnan(values))
        if not mask.any():
            continue
        steps, values, groups = steps[mask], values[mask] * sign, group[mask]
        order = np.lexsort((steps, values, groups))  # by group, then value, then step
        ordered = groups[order]
        leads = np.ones(len(order), dtype=bool)
        leads[1:] = ordered[1:] != ordered[:-1]
        keep.update(int(s) for s in steps[order[leads]])
    return keep


def _edge_row(session: Session, segs: list[Segment], *, newest: bool) -> Row | None:
    for seg in reversed(segs) if newest else segs:
        found = segment_rows(session, seg, limit=1, newest_first=newest)
        if found:
            return found[0]
    return None


def _all_rows(session: Session, segs: Iterable[Segment]) -> list[Row]:
    out: list[Row] = []
    for seg in segs:
        out.extend(segment_rows(session, seg))
    return out


def _rows_at(session: Session, segs: list[Segment], steps: list[int]) -> dict[int, Row]:
    """The rows at given steps, each read from the segment that owns it (primary-key lookups)."""
    out: dict[int, Row] = {}
    for seg in segs:
        mine = [s for s in steps if s > seg.after and (seg.before is None or s < seg.before)]
        for start in range(0, len(mine), _IN_CHUNK):
            chunk = mine[start : start + _IN_CHUNK]
            stmt = select(*ROW_COLUMNS).where(Metric.run_id == seg.run_id, Metric.step.in_(chunk))
            found = session.execute(stmt).all()
            rows = with_train_evals(session, seg.run_id, found, sparse=True)
            out.update((int(r[STEP]), r) for r in rows)
    return out
