"""Rollups: per-bucket extremes of a run's losses, kept as the run grows (as time-series stores do).

Each flush of metric rows folds them into one bucket (rarely two) per width, in the same
transaction, with an INSERT ... ON CONFLICT DO UPDATE that keeps the lower low and the higher high.
An overview of any range then reads the buckets that tile it (``cover``): a few thousand rows
whatever the run's length, plus the exact rows at the range's ragged edges.

A summary ("agg") is a tuple in ``FIELDS`` order. Ties keep the earlier step. A non-finite loss
counts as +infinity for the high and is left out of the low, so a divergence is always the high.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Insert, case, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.crud.lineage import Segment, segment_rows
from app.models import MetricRollup
from app.series import STEP, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Row

# Bucket widths, finest first. A factor of 4 between levels lets an overview pick a level within
# 4x of the resolution it needs; 64 keeps the finest level at ~1/64 of the rows (~2% of the space).
WIDTHS = (64, 256, 1024, 4096, 16384, 65536, 262144)

FIELDS = (
    "n",
    "lo_step",
    "lo_loss",
    "hi_step",
    "hi_loss",
    "val_n",
    "val_lo_step",
    "val_lo_loss",
    "val_hi_step",
    "val_hi_loss",
)
N, LO_STEP, LO_LOSS, HI_STEP, HI_LOSS, VAL_N, VAL_LO_STEP, VAL_LO_LOSS, VAL_HI_STEP, VAL_HI_LOSS = (
    range(len(FIELDS))
)
Agg = tuple[Any, ...]


def row_agg(step: int, loss: float | None, evaluated: bool, val_loss: float | None) -> Agg:
    """The summary of one row."""
    finite = loss is not None and math.isfinite(loss)
    lo = (step, loss) if finite else (None, None)
    hi = (step, loss if finite else math.inf)
    if not evaluated:
        return (1, *lo, *hi, 0, None, None, None, None)
    val_finite = val_loss is not None and math.isfinite(val_loss)
    val_lo = (step, val_loss) if val_finite else (None, None)
    return (1, *lo, *hi, 1, *val_lo, step, val_loss if val_finite else math.inf)


def agg_of(row: Row) -> Agg:
    """The summary of one row given as an ``app.series.COLUMNS`` tuple."""
    return row_agg(int(row[STEP]), row[TRAIN_LOSS], row[VAL_ACC] is not None, row[VAL_LOSS])


def merge(a: Agg, b: Agg) -> Agg:
    """Two summaries as one; on ties ``a`` (the earlier) wins, as in the SQL upsert."""
    lo = b[LO_STEP : LO_LOSS + 1] if _lower(b[LO_LOSS], a[LO_LOSS]) else a[LO_STEP : LO_LOSS + 1]
    hi = b[HI_STEP : HI_LOSS + 1] if _higher(b[HI_LOSS], a[HI_LOSS]) else a[HI_STEP : HI_LOSS + 1]
    vlo = a[VAL_LO_STEP : VAL_LO_LOSS + 1]
    if _lower(b[VAL_LO_LOSS], a[VAL_LO_LOSS]):
        vlo = b[VAL_LO_STEP : VAL_LO_LOSS + 1]
    vhi = a[VAL_HI_STEP : VAL_HI_LOSS + 1]
    if _higher(b[VAL_HI_LOSS], a[VAL_HI_LOSS]):
        vhi = b[VAL_HI_STEP : VAL_HI_LOSS + 1]
    return (a[N] + b[N], *lo, *hi, a[VAL_N] + b[VAL_N], *vlo, *vhi)


def _lower(new: float | None, old: float | None) -> bool:
    return new is not None and (old is None or new < old)


def _higher(new: float | None, old: float | None) -> bool:
    return new is not None and (old is None or new > old)


def summarize(rows: Iterable[Row]) -> Agg:
    """The summary of rows, in one pass (the hot path of every flush; ``merge`` of ``agg_of``
    each row gives the same)."""
    n = val_n = 0
    lo_step = lo = hi_step = hi = None
    vlo_step = vlo = vhi_step = vhi = None
    for row in rows:
        step, loss = int(row[STEP]), row[TRAIN_LOSS]
        n += 1
        if loss is None or not math.isfinite(loss):
            loss = math.inf
        elif lo is None or loss < lo:
            lo_step, lo = step, loss
        if hi is None or loss > hi:
            hi_step, hi = step, loss
        if row[VAL_ACC] is None:
            continue
        val_n += 1
        val = row[VAL_LOSS]
        if val is None or not math.isfinite(val):
            val = math.inf
        elif vlo is None or val < vlo:
            vlo_step, vlo = step, val
        if vhi is None or val > vhi:
            vhi_step, vhi = step, val
    return (n, lo_step, lo, hi_step, hi, val_n, vlo_step, vlo, vhi_step, vhi)


def fold(rows: Iterable[Row]) -> dict[tuple[int, int], Agg]:
    """Summaries of rows (``app.series.COLUMNS`` tuples) for every (width, bucket) they touch."""
    w0 = WIDTHS[0]
    parts: dict[int, list[Row]] = {}
    for row in rows:
        parts.setdefault((int(row[STEP]) - 1) // w0, []).append(row)
    finest = {key: summarize(part) for key, part in sorted(parts.items())}
    out: dict[tuple[int, int], Agg] = {}
    for width in WIDTHS:
        ratio = width // w0
        for key, agg in finest.items():
            have = out.get((width, key // ratio))
            out[(width, key // ratio)] = agg if have is None else merge(have, agg)
    return out


def record(session: Session, run_id: int, rows: Sequence[Row]) -> None:
    """Fold newly stored rows into the run's rollups (once per row, in the same transaction)."""
    aggs = fold(rows)
    if not aggs:
        return
    params = [
        {"run_id": run_id, "width": width, "bucket": bucket, **dict(zip(FIELDS, agg, strict=True))}
        for (width, bucket), agg in aggs.items()
    ]
    session.connection().execute(_upsert(session), params)


def _upsert(session: Session) -> Insert:
    """INSERT ... ON CONFLICT DO UPDATE keeping the lower low and the higher high.

    Built once per dialect: building it costs more than running it (a flush is ~100 rows).
    """
    dialect = session.get_bind().dialect.name
    if dialect not in _UPSERTS:
        _UPSERTS[dialect] = _build_upsert(dialect)
    return _UPSERTS[dialect]


_UPSERTS: dict[str, Insert] = {}


def _build_upsert(dialect: str) -> Insert:
    table = MetricRollup.__table__
    if dialect == "sqlite":
        stmt = sqlite.insert(table)
    elif dialect == "postgresql":
        stmt = postgresql.insert(table)
    else:
        raise RuntimeError(f"unsupported database dialect: {dialect}")
    new, old = stmt.excluded, table.c

    def pick(value: str, step: str, *, low: bool) -> dict[str, Any]:
        better = new[value] < old[value] if low else new[value] > old[value]
        wins = new[value].is_not(None) & (old[value].is_(None) | better)
        return {
            value: case((wins, new[value]), else_=old[value]),
            step: case((wins, new[step]), else_=old[step]),
        }

    return stmt.on_conflict_do_update(
        index_elements=["run_id", "width", "bucket"],
        set_={
            "n": old.n + new.n,
            "val_n": old.val_n + new.val_n,
            **pick("lo_loss", "lo_step", low=True),
            **pick("hi_loss", "hi_step", low=False),
            **pick("val_lo_loss", "val_lo_step", low=True),
            **pick("val_hi_loss", "val_hi_step", low=False),
        },
    )


def cover(
    session: Session, seg: Segment, first: int, last: int, top: int
) -> tuple[list[Agg], list[Row]]:
    """Pieces tiling steps ``first..last`` of a segment's run, and the exact rows at the edges.

    A piece is ``(the first step it covers, *summary)``. The middle comes from width
    ``WIDTHS[top]``, each ragged edge from the next finer width down to single rows (fewer than
    ``WIDTHS[0]`` per edge), so no piece straddles a multiple of ``WIDTHS[top]``; ``top = -1``
    reads every row. Returns (pieces, one per exact row among them; the exact rows).
    """
    pieces: list[Agg] = []
    rows: list[Row] = []
    _cover(session, seg.run_id, first, last, top, pieces, rows)
    return pieces, rows


def _cover(
    session: Session,
    run_id: int,
    first: int,
    last: int,
    level: int,
    pieces: list[Agg],
    rows: list[Row],
) -> None:
    if first > last:
        return
    if level < 0:
        found = segment_rows(session, Segment(run_id, first - 1, last + 1))
        rows.extend(found)
        pieces.extend((r[STEP], *agg_of(r)) for r in found)
        return
    width = WIDTHS[level]
    lo_bucket = (first - 1 + width - 1) // width  # first bucket starting at or after ``first``
    hi_bucket = last // width - 1  # last bucket ending at or before ``last``
    if lo_bucket > hi_bucket:
        _cover(session, run_id, first, last, level - 1, pieces, rows)
        return
    _cover(session, run_id, first, lo_bucket * width, level - 1, pieces, rows)
    table = MetricRollup.__table__
    stmt = (
        select(table.c.bucket, *(table.c[f] for f in FIELDS))
        .where(
            table.c.run_id == run_id,
            table.c.width == width,
            table.c.bucket >= lo_bucket,
            table.c.bucket <= hi_bucket,
        )
        .order_by(table.c.bucket)
    )
    pieces.extend((r[0] * width + 1, *r[1:]) for r in session.execute(stmt))
    _cover(session, run_id, (hi_bucket + 1) * width + 1, last, level - 1, pieces, rows)
