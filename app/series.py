"""Metric rows as columnar JSON (overviews that keep the spikes: app/crud/overview.py).

JSON has no NaN or Infinity, and a diverging run is exactly when they matter, so non-finite floats
travel as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (JavaScript's ``Number()``
parses all three); ``null`` only ever means "no value" (e.g. no evaluation at that step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

COLUMNS = (
    "step",
    "time",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "train_eval_loss",
    "train_eval_acc",
)
"""``train_*``: the step's mini-batch in training mode (dropout, BN batch statistics);
``train_eval_*``: a fixed subset of the training split in evaluation mode, measured with the
validation split (set on the same rows as ``val_*``, null elsewhere): beside ``val_*``, the gap
that shows overfitting."""
(STEP, TIME, LR, TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, TRAIN_EVAL_LOSS, TRAIN_EVAL_ACC) = range(
    len(COLUMNS)
)

Row = tuple[Any, ...]


def restore_nan(row: Sequence[Any]) -> Row:
    """Undo SQLite's NaN-to-NULL: a NULL loss beside a set accuracy was a NaN loss."""
    out = list(row)
    if out[TRAIN_LOSS] is None and out[TRAIN_ACC] is not None:
        out[TRAIN_LOSS] = math.nan
    if out[VAL_LOSS] is None and out[VAL_ACC] is not None:
        out[VAL_LOSS] = math.nan
    if out[TRAIN_EVAL_LOSS] is None and out[TRAIN_EVAL_ACC] is not None:
        out[TRAIN_EVAL_LOSS] = math.nan
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
