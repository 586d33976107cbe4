"""The worker's side of a learning-rate range test: when to end it.

A range test (config ``schedule: "range_test"``) ends when its last step is done, like any run,
or earlier when the loss explodes (engine/lr_find.py ``LossWatch``): that is the test's normal
end, so the session finishes the run (status ``finished``) instead of marking it diverged.

The watch is rebuilt at every start from the run's own stored rows after ``lr_range_start``
(a few hundred at most), so a worker that crashed and restarted stops at the very step an
uninterrupted one would have.
"""

from __future__ import annotations

from app import crud
from app.crud.lr_find import is_range_test, range_rows
from app.db import Database
from engine import Trainer
from engine.lr_find import LossWatch


def range_watch(db: Database, run_id: int, trainer: Trainer) -> LossWatch | None:
    """The loss watch of a range test positioned at the trainer's step; None for other runs."""
    config = trainer.cfg.model_dump(mode="json")
    if not is_range_test(config):
        return None
    with db.read() as s:
        run = crud.get_run(s, run_id)
        if run is None:
            return LossWatch()
        _, losses = range_rows(s, run, config)
    return LossWatch.replay(losses[: max(trainer.step_count - trainer.cfg.lr_range_start, 0)])


def finish_payload(watch: LossWatch | None) -> dict[str, str]:
    """What the ``finished`` event adds for a range test: why it ended."""
    if watch is None:
        return {}
    return {"range_test": watch.stop_reason or "reached lr_range_max"}
