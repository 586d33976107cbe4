"""Checkpoints: Trainer states stored as BLOBs with their sha256, verified before use."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

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


def list_checkpoints(session: Session, run_id: int) -> list[dict[str, Any]]:
    """A run's checkpoints in step order, without their (large) state."""
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
        }
        for r in session.execute(stmt)
    ]


def latest_checkpoint(
    session: Session, run_id: int, *, at_or_before: int | None = None
) -> Checkpoint | None:
    """The newest checkpoint (at or before a step) whose bytes still match their hash.

    A checkpoint that fails its hash check is logged and skipped, so a damaged row costs some
    replay instead of a broken run.
    """
    stmt = select(Checkpoint).where(Checkpoint.run_id == run_id)
    if at_or_before is not None:
        stmt = stmt.where(Checkpoint.step <= at_or_before)
    for ckpt in session.scalars(stmt.order_by(Checkpoint.step.desc(), Checkpoint.id.desc())):
        if hashlib.sha256(ckpt.state).hexdigest() == ckpt.sha256:
            return ckpt
        log.error("checkpoint %s of run %s fails its sha256 check; skipped", ckpt.id, run_id)
    return None


def copy_checkpoint(session: Session, ckpt: Checkpoint, run_id: int) -> Checkpoint:
    """Give another run (a fork) its own copy of a checkpoint."""
    return save_checkpoint(session, run_id, ckpt.step, ckpt.state)


def prune_checkpoints(session: Session, run_id: int, *, keep_recent: int, keep_every: int) -> int:
    """Thin out a run's checkpoints: keep the ``keep_recent`` newest and, of the older ones,
    those at multiples of ``keep_every`` (forks of old steps still find one nearby). A long run
    of a big model would otherwise fill the disk. ``keep_every == 0`` keeps everything.
    Returns how many were deleted."""
    if keep_every == 0:
        return 0
    newest = select(Checkpoint.id).where(Checkpoint.run_id == run_id)
    newest = newest.order_by(Checkpoint.step.desc(), Checkpoint.id.desc()).limit(keep_recent)
    keep = list(session.scalars(newest))
    result = session.execute(
        delete(Checkpoint).where(
            Checkpoint.run_id == run_id,
            Checkpoint.id.not_in(keep),
            Checkpoint.step % keep_every != 0,
        )
    )
    return result.rowcount
