"""Forks: a new run that continues from a parent's checkpoint."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.crud.checkpoints import copy_checkpoint, latest_checkpoint
from app.crud.events import current_pace, record_command
from app.crud.metrics import last_metrics
from app.crud.runs import create_run
from app.models import Run


def fork_run(
    session: Session,
    parent: Run,
    *,
    step: int,
    config: dict[str, Any],
    name: str | None = None,
    lr: float | None = None,
) -> Run | None:
    """Create a queued run continuing from the parent's checkpoint at or before ``step``.

    The child gets its own copy of that checkpoint (crash recovery needs nothing from the parent)
    but no copy of the parent's metric rows: its steps up to ``parent_step`` are read from the
    parent through the lineage (app/crud/lineage.py), so a fork of a 1M-step run writes a few
    rows and holds the write lock for milliseconds. A new base learning rate is queued as a
    ``set_lr`` command, so it shows on the chart at the fork step. Returns None when the parent
    has no checkpoint at or before ``step``.
    """
    ckpt = latest_checkpoint(session, parent.id, at_or_before=step)
    if ckpt is None:
        return None
    child = create_run(
        session,
        config=config,
        name=name or f"{parent.name.removesuffix(f' fork@{parent.parent_step}')} fork@{ckpt.step}",
        parent_id=parent.id,
        parent_step=ckpt.step,
    )
    copy_checkpoint(session, ckpt, child.id)
    last = last_metrics(session, child.id)
    child.lr = last.get("lr") if isinstance(last.get("lr"), float) else child.lr
    child.total_steps = parent.total_steps
    if lr is not None:
        record_command(session, child.id, "set_lr", {"lr": lr})
    pace = current_pace(session, parent.id)
    if pace is not None:  # the child goes on at the pace its parent was watched at
        record_command(session, child.id, "set_pace", {"steps_per_second": pace})
    session.flush()
    return child
