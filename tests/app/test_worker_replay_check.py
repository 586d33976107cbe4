"""Taking a run over, the worker replays the steps after the last checkpoint and compares each
loss with the stored one: a worker that computes differently (another BLAS, another thread
count) is found out and recorded on the run, instead of silently continuing another trajectory."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import run_status_in, train_until
from sqlalchemy import delete, update

from app import crud
from app.db import Database
from app.models import Checkpoint, Metric, Run
from app.settings import Settings
from app.worker.loading import load_trainer
from app.worker.loop import Worker

pytestmark = pytest.mark.timeout(60)


def _trained_then_crashed(
    db: Database, settings: Settings, config: dict[str, Any], n: int
) -> list[int]:
    """``n`` 150-step runs whose last checkpoint is at step 100, as a crashed worker leaves them."""
    with db.write() as s:
        ids = [crud.create_run(s, config={**config, "max_steps": 150}).id for _ in range(n)]
    done = run_status_in(db, ("finished",), *ids)
    train_until(db, settings, done, timeout=30, what="runs finished")
    with db.write() as s:
        s.execute(delete(Checkpoint).where(Checkpoint.step > 100))
        s.execute(update(Run).values(status="running", worker_id=None))
    return ids


def test_replay_that_differs_from_the_stored_rows_is_recorded(
    db: Database, settings: Settings, tiny: dict[str, Any]
) -> None:
    quick = settings.model_copy(
        update={"checkpoint_every_steps": 100, "checkpoint_every_seconds": 0}
    )
    same, other = _trained_then_crashed(db, quick, tiny, 2)
    with db.write() as s:  # as if another BLAS had computed step 120 of this one
        s.execute(
            update(Metric)
            .where(Metric.run_id == other, Metric.step == 120)
            .values(train_loss=Metric.train_loss + 1e-6)
        )

    loaded = load_trainer(db, same, heartbeat=lambda: None)
    assert (loaded.checkpoint_step, loaded.replayed, loaded.mismatch) == (100, 50, None)
    loaded = load_trainer(db, other, heartbeat=lambda: None)
    assert loaded.replayed == 50
    assert loaded.mismatch is not None and loaded.mismatch["step"] == 120
    assert loaded.mismatch["replayed"] == pytest.approx(loaded.mismatch["stored"] - 1e-6)

    worker = Worker(db, quick, worker_id="second")
    assert worker.run_once() and worker.run_once()
    with db.read() as s:
        flagged = [e for e in crud.list_events(s, other) if e.type == "replay_mismatch"]
        assert not [e for e in crud.list_events(s, same) if e.type == "replay_mismatch"]
    assert len(flagged) == 1 and flagged[0].step == 120
    assert "differs from the stored" in (flagged[0].error or "")
