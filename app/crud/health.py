"""Per-layer health rows (table ``layer_health``): written by the worker with the metric rows of
their steps, read by ``GET /api/runs/{id}/health``, the run page's health panel and the stream.

Reads go through the run's lineage like the metrics (app/crud/lineage.py): a fork's steps up to
its ``parent_step`` are its parent's rows. Values travel as the metrics API's JSON does
(app/series.py): non-finite floats as ``"NaN"`` / ``"Infinity"``, null only for "does not apply".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Insert, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.crud.lineage import segments
from app.models import LayerHealth as HealthRow
from app.series import json_float
from engine.health import LayerHealth

__all__ = [
    "COLUMNS",
    "VALUES",
    "append_health",
    "health_columns",
    "health_rows",
    "health_series",
    "latest_health",
    "latest_health_step",
    "to_rows",
]

VALUES = (
    "grad_norm",
    "weight_norm",
    "update_ratio",
    "act_mean",
    "act_std",
    "dead_frac",
    "bn_shift",
)
"""The measured columns, in the order of ``nan_mask``'s bits."""
COLUMNS = ("step", "layer", *VALUES)
"""What a read returns per row (and the API's columnar keys)."""

Row = tuple[Any, ...]
_SELECT = (HealthRow.step, HealthRow.layer, *(getattr(HealthRow, c) for c in VALUES))


def to_rows(step: int, health: Iterable[LayerHealth]) -> list[dict[str, Any]]:
    """One step's measurements as insertable rows: NaN stored as NULL plus its bit in
    ``nan_mask`` (SQLite cannot keep a NaN; PostgreSQL could, but both are read the same way)."""
    rows: list[dict[str, Any]] = []
    for h in health:
        row: dict[str, Any] = {"step": int(step), "layer": int(h.layer), "nan_mask": 0}
        for bit, name in enumerate(VALUES):
            value = getattr(h, name)
            if value is not None and math.isnan(value):
                row["nan_mask"] |= 1 << bit
                value = None
            row[name] = None if value is None else float(value)
        rows.append(row)
    return rows


def _insert_ignoring_duplicates(session: Session) -> Insert:
    dialect = session.get_bind().dialect.name
    table = HealthRow.__table__
    keys = ["run_id", "step", "layer"]
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
    raise RuntimeError(f"unsupported database dialect: {dialect}")


def append_health(session: Session, run_id: int, rows: list[dict[str, Any]]) -> int:
    """Insert rows made by ``to_rows``; a step already stored (a replay after a crash, a fork
    training again over its parent's steps) is left as it is. Returns the rows handed in."""
    if rows:
        session.execute(
            _insert_ignoring_duplicates(session), [{"run_id": run_id, **r} for r in rows]
        )
    return len(rows)


def _restore(row: Sequence[Any], mask: int) -> Row:
    """A stored row with its NaNs back (``mask`` bit k: VALUES[k] was NaN)."""
    out = list(row)
    if mask:
        for bit in range(len(VALUES)):
            if mask >> bit & 1:
                out[2 + bit] = math.nan
    return tuple(out)


def health_rows(
    session: Session, run_id: int, *, after: int = 0, limit: int | None = None
) -> tuple[list[Row], bool]:
    """Rows with step > after in (step, layer) order, as ``COLUMNS`` tuples, NaN restored, and
    whether more rows follow.

    With ``limit``, whole steps only: rows of a step cut by the limit are left for the next
    read (``after`` = the last step returned), so paging never loses a layer.
    """
    out: list[Row] = []
    for seg in segments(session, run_id, after=after):
        stmt = select(*_SELECT, HealthRow.nan_mask).where(
            HealthRow.run_id == seg.run_id, HealthRow.step > seg.after
        )
        if seg.before is not None:
            stmt = stmt.where(HealthRow.step < seg.before)
        stmt = stmt.order_by(HealthRow.step, HealthRow.layer)
        if limit is not None:
            stmt = stmt.limit(limit - len(out) + 1)
        out.extend(_restore(r[:-1], r[-1]) for r in session.execute(stmt))
        if limit is not None and len(out) > limit:
            break
    if limit is None or len(out) <= limit:
        return out, False
    cut = out[limit][0]  # the first step that did not fit entirely
    return [r for r in out[:limit] if r[0] != cut] or out[:limit], True


def health_columns(rows: Iterable[Sequence[Any]]) -> dict[str, list[Any]]:
    """Rows (``COLUMNS`` order) to ``{"step": [...], "layer": [...], ...}``, JSON-safe."""
    cols: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for row in rows:
        cols["step"].append(int(row[0]))
        cols["layer"].append(int(row[1]))
        for k, name in enumerate(VALUES, start=2):
            cols[name].append(json_float(row[k]))
    return cols


def latest_health_step(session: Session, run_id: int) -> int | None:
    """The run's own newest measured step (one key lookup); None before its first one. The
    stream polls this to know when the panel has something new."""
    found = session.execute(
        select(func.max(HealthRow.step)).where(HealthRow.run_id == run_id)
    ).scalar_one_or_none()
    return None if found is None else int(found)


def latest_health(session: Session, run_id: int) -> list[Row]:
    """Every layer's row at the newest measured step (through the lineage); [] before any."""
    for seg in reversed(segments(session, run_id)):
        stmt = select(func.max(HealthRow.step)).where(
            HealthRow.run_id == seg.run_id, HealthRow.step > seg.after
        )
        if seg.before is not None:
            stmt = stmt.where(HealthRow.step < seg.before)
        step = session.execute(stmt).scalar_one_or_none()
        if step is not None:
            rows = session.execute(
                select(*_SELECT, HealthRow.nan_mask)
                .where(HealthRow.run_id == seg.run_id, HealthRow.step == step)
                .order_by(HealthRow.layer)
            )
            return [_restore(r[:-1], r[-1]) for r in rows]
    return []


def health_series(session: Session, run_id: int, *, every: int, max_steps: int) -> list[Row]:
    """Rows of at most about ``max_steps`` measured steps spread over the whole run, plus the
    newest: steps that are multiples of a stride (a multiple of ``every``, the run's
    health_every), so a long run is thinned evenly and the panel's cost stays flat."""
    latest = _latest_step(session, run_id)
    if latest is None:
        return []
    every = max(int(every), 1)
    stride = every * max(1, math.ceil(latest / every / max(max_steps, 1)))
    out: list[Row] = []
    for seg in segments(session, run_id):
        stmt = select(*_SELECT, HealthRow.nan_mask).where(
            HealthRow.run_id == seg.run_id,
            HealthRow.step > seg.after,
            or_(HealthRow.step % stride == 0, HealthRow.step == latest),
        )
        if seg.before is not None:
            stmt = stmt.where(HealthRow.step < seg.before)
        stmt = stmt.order_by(HealthRow.step, HealthRow.layer)
        out.extend(_restore(r[:-1], r[-1]) for r in session.execute(stmt))
    return out


def _latest_step(session: Session, run_id: int) -> int | None:
    rows = latest_health(session, run_id)
    return int(rows[0][0]) if rows else None
