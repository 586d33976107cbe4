"""A range test's rows and its suggested rate, read from the run's own metric rows.

Nothing is stored for the suggestion: it is a pure function (engine/lr_find.py) of the few
hundred rows the range test wrote after ``lr_range_start``, so the number shown is always the
one the rows give, and no column or migration is needed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, object_session

from app.crud.metrics import metric_rows
from app.models import Run
from app.series import LR, TRAIN_LOSS
from engine.lr_find import suggest_lr

__all__ = ["is_range_test", "range_rows", "suggested_lr"]


def is_range_test(config: dict[str, Any]) -> bool:
    return config.get("schedule") == "range_test"


def range_rows(session: Session, run: Run, config: dict[str, Any]) -> tuple[list, list]:
    """(lrs, train losses) of the range test's own steps, in step order (NaN for a non-finite
    loss, which ended the test)."""
    start = int(config.get("lr_range_start", 0))
    rows = metric_rows(session, run.id, after=start)
    lrs = [float(r[LR]) if r[LR] is not None else float("nan") for r in rows]
    losses = [float(r[TRAIN_LOSS]) if r[TRAIN_LOSS] is not None else float("nan") for r in rows]
    return lrs, losses


def suggested_lr(run: Run, config: dict[str, Any]) -> float | None:
    """The suggested rate of a finished range test; None while it runs, for any other run, or
    when the rows allow no suggestion (too few, a loss that never fell)."""
    if not is_range_test(config) or run.status != "finished":
        return None
    session = object_session(run)
    if session is None:
        return None
    return suggest_lr(*range_rows(session, run, config))
