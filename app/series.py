"""Metric rows as columnar JSON, and min-max downsampling that keeps the spikes.

JSON has no NaN or Infinity, and a diverging run is exactly when they matter, so non-finite floats
travel as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (JavaScript's ``Number()``
parses all three); ``null`` only ever means "no value" (e.g. no evaluation at that step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

COLUMNS = ("step", "time", "lr", "train_loss", "train_acc", "val_loss", "val_acc")
STEP, TIME, LR, TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC = range(len(COLUMNS))

Row = tuple[Any, ...]


def restore_nan(row: Sequence[Any]) -> Row:
    """Undo SQLite's NaN-to-NULL: a NULL loss beside a set accuracy was a NaN loss."""
    out = list(row)
    if out[TRAIN_LOSS] is None and out[TRAIN_ACC] is not None:
        out[TRAIN_LOSS] = math.nan
    if out[VAL_LOSS] is None and out[VAL_ACC] is not None:
        out[VAL_LOSS] = math.nan
    return tuple(out)


def json_float(value: float | None) -> float | str | None:
    """A float JSON can carry: non-finite values become their JavaScript spelling."""
    if value is None or math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def to_columns(rows: Iterable[Sequence[Any]]) -> dict[str, list[Any]]:
    """Rows (in COLUMNS order) to ``{"step": [...], "time": [...], ...}``, JSON-safe."""
    cols: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for row in rows:
        cols["step"].append(int(row[STEP]))
        for index in range(1, len(COLUMNS)):
            cols[COLUMNS[index]].append(json_float(row[index]))
    return cols


def downsample(rows: Sequence[Row], max_points: int) -> list[Row]:
    """At most ``max_points`` rows keeping, per bucket, the lowest and highest losses.

    The first and last rows are always kept, and evaluation rows get their own share of the
    budget (they are sparse and would otherwise vanish). A non-finite loss counts as the highest
    value, so a divergence spike is never dropped.
    """
    n = len(rows)
    if n <= max_points:
        return list(rows)
    budget = max(max_points - 2, 2)
    val_idx = np.array([i for i, r in enumerate(rows) if r[VAL_ACC] is not None], dtype=np.int64)
    keep: set[int] = {0, n - 1}
    if len(val_idx) and len(val_idx) <= budget // 2:
        keep.update(int(i) for i in val_idx)
        train_budget = budget - len(val_idx)
    elif len(val_idx):
        val_budget = budget // 2
        keep.update(_minmax(val_idx, _values(rows, val_idx, VAL_LOSS), val_budget))
        train_budget = budget - val_budget
    else:
        train_budget = budget
    all_idx = np.arange(n, dtype=np.int64)
    keep.update(_minmax(all_idx, _values(rows, all_idx, TRAIN_LOSS), train_budget))
    return [rows[i] for i in sorted(keep)]


def _values(rows: Sequence[Row], idx: np.ndarray, column: int) -> np.ndarray:
    raw = [rows[i][column] for i in idx]
    return np.array([math.nan if v is None else v for v in raw], dtype=np.float64)


def _minmax(idx: np.ndarray, values: np.ndarray, budget: int) -> set[int]:
    """Indices of the min and max of each of ``budget // 2`` equal buckets."""
    buckets = max(budget // 2, 1)
    high = np.where(np.isfinite(values), values, np.inf)
    keep: set[int] = set()
    for part_idx, part_high in zip(
        np.array_split(idx, buckets), np.array_split(high, buckets), strict=True
    ):
        if len(part_idx) == 0:
            continue
        keep.add(int(part_idx[int(np.argmax(part_high))]))
        keep.add(int(part_idx[int(np.argmin(part_high))]))
    return keep
