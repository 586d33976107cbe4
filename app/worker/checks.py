"""The initial-loss check of a run that starts from step 0, recorded as an ``initial_loss`` event.

Exactly once per run: only for a trainer freshly initialized at step 0 (no checkpoint loaded: a
fork starts from its parent's checkpoint, whose initial loss says nothing about an
initialization; the overfit check's fresh-init run is measured), and only when the run has no
``initial_loss`` event yet. The event is written in the transaction that records ``started`` and
the step-0 checkpoint, so a worker that dies later finds it and does not measure again.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import crud
from app.models import Event
from engine import Trainer
from engine.sanity import initial_loss

INITIAL_LOSS = "initial_loss"


def record_initial_loss(s: Session, run_id: int, trainer: Trainer, *, fresh: bool) -> bool:
    """Measure and record the initial loss when this run owes it; True if recorded.

    ``fresh``: the trainer was initialized, not loaded from a checkpoint."""
    if not fresh or trainer.step_count != 0:
        return False
    done = s.scalar(
        select(Event.id).where(Event.run_id == run_id, Event.type == INITIAL_LOSS).limit(1)
    )
    if done is not None:
        return False
    crud.record_worker_event(s, run_id, INITIAL_LOSS, 0, initial_loss(trainer).payload())
    return True
