"""Checkpoints: Trainer states stored as BLOBs with their sha256, verified before use.

A worker writes a checkpoint of the state *before* every learning-rate change, at the step the
change applies (its id goes into the set_lr event's payload): listed with the label "before lr X"
and never thinned out, so any change can be undone by going back to it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.crud.events import lr_change_checkpoints
from app.crud.runs import iso, now
from app.models import Checkpoint

log = logging.getLogger(__name__)


def save_checkpoint(session: Session, run_id: int, step: int, state: bytes) -> Checkpoint:
    """Store a state blob; call it in the same transaction as the metrics it covers."""
    ckpt = Checkpoint(
        run_id=run_id,
        step=step,
        created_at=now(),
        sha256=hashlib.sha256(state).hexdigest(),
        size=len(state),
        state=state,
    )
    session.add(ckpt)
    session.flush()
    return ckpt


def lr_change_label(lr: float) -> str:
    """The label of the checkpoint written before a change to ``lr``: "before lr 0.003"."""
    return f"before lr {lr:.4g}"


def list_checkpoints(session: Session, run_id: int) -> list[dict[str, Any]]:
    """A run's checkpoints in step order, without their (large) state; ``label`` is "before lr
    X" for those written before a learning-rate change, None for the others."""
    labels = lr_change_checkpoints(session, run_id)
    stmt = (
        select(
            Checkpoint.id,
            Checkpoint.step,
            Checkpoint.created_at,
            Checkpoint.sha256,
            Checkpoint.size,
        )
        .where(Checkpoint.run_id == run_id)
        .order_by(Checkpoint.step, Checkpoint.id)
    )
    return [
        {
            "id": r.id,
            "step": r.step,
            "created_at": iso(r.created_at),
            "sha256": r.sha256,
            "size": r.size,
            "label": lr_change_label(labels[r.id]) if r.id in labels else None,
        }
        for r in session.execute(stmt)
    ]


def latest_checkpoint(
    session: Session, run_id: int, *, at_or_before: int | None = None
) -> Checkpoint | None:
    """The newest checkpoint (at or before a step) whose bytes still match their hash.

    Candidates are listed without their state and loaded one at a time, newest first, so finding
    one costs one blob (not every candidate's: 20 checkpoints of a big model are 100 MB, read
    inside a fork's write transaction). A checkpoint that fails its hash check is logged and
    skipped, so a damaged row costs some replay instead of a broken run.
    """
    stmt = select(Checkpoint.id).where(Checkpoint.run_id == run_id)
    if at_or_before is not None:
        stmt = stmt.where(Checkpoint.step <= at_or_before)
    ids = session.scalars(stmt.order_by(Checkpoint.step.desc(), Checkpoint.id.desc())).all()
    for ckpt_id in ids:
        ckpt = session.get(Checkpoint, ckpt_id)
        if ckpt is None:  # deleted (thinned) since the list was read
            continue
        if hashlib.sha256(ckpt.state).hexdigest() == ckpt.sha256:
            return ckpt
        log.error("checkpoint %s of run %s fails its sha256 check; skipped", ckpt.id, run_id)
        session.expunge(ckpt)  # its blob is not kept in memory while the next one loads
    return None


def copy_checkpoint(session: Session, ckpt: Checkpoint, run_id: int) -> Checkpoint:
    """Give another run (a fork) its own copy of a checkpoint."""
    return save_checkpoint(session, run_id, ckpt.step, ckpt.state)


def prune_checkpoints(
    session: Session,
    run_id: int,
    *,
    keep_recent: int,
    keep_every: int,
    keep: Collection[int] = (),
) -> int:
    """Thin out a run's checkpoints: keep the ``keep_recent`` newest and, of the older ones,
    those at multiples of ``keep_every`` (forks of old steps still find one nearby). A long run
    of a big model would otherwise fill the disk. ``keep_every == 0`` keeps everything.
    Checkpoints written before a learning-rate change are always kept: they are how a change is
    undone. So are the ids in ``keep`` (early stopping's best checkpoint, app/worker/alerts.py).
    Returns how many were deleted."""
    if keep_every == 0:
        return 0
    newest = select(Checkpoint.id).where(Checkpoint.run_id == run_id)
    newest = newest.order_by(Checkpoint.step.desc(), Checkpoint.id.desc()).limit(keep_recent)
    kept = [*session.scalars(newest), *lr_change_checkpoints(session, run_id), *keep]
    result = session.execute(
        delete(Checkpoint).where(
            Checkpoint.run_id == run_id,
            Checkpoint.id.not_in(kept),
            Checkpoint.step % keep_every != 0,
        )
    )
    return result.rowcount


def checkpoint_step_at_or_before(session: Session, run_id: int, step: int) -> int | None:
    """The step of the newest checkpoint at or before ``step`` (where a fork would start), read
    without loading any state; None when there is none."""
    stmt = select(func.max(Checkpoint.step)).where(
        Checkpoint.run_id == run_id, Checkpoint.step <= step
    )
    return session.scalar(stmt)
