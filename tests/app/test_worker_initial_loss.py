"""The initial-loss event (app/worker/checks.py): recorded once at step 0 by the worker that
starts a new run, not again by a worker that takes the run over, never on a fork."""

from __future__ import annotations

import math
from typing import Any

import pytest

from app import crud
from app.db import Database
from app.settings import Settings
from app.worker.session import RunSession

pytestmark = pytest.mark.timeout(60)


def _initial_loss_events(db: Database, rid: int) -> list[dict[str, Any]]:
    with db.read() as s:
        return [
            crud.serialize_event(e) for e in crud.list_events(s, rid) if e.type == "initial_loss"
        ]


def _session(db: Database, settings: Settings, worker: str, rid: int, steps: int) -> str:
    """Claim the run and train ``steps`` steps, then shut down as a stopping worker does."""
    with db.write() as s:
        crud.claim_run(s, worker, 60, run_id=rid)
    seen: list[int] = []
    session = RunSession(
        db, settings, worker, rid, should_stop=lambda: len(seen) >= steps, on_step=seen.append
    )
    return session.run()


def test_recorded_once_at_step_0_also_across_a_restart_and_not_on_a_fork(
    db: Database, settings: Settings, tiny: dict[str, Any]
) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config={**tiny, "max_steps": 400}).id
    _session(db, settings, "w1", rid, 0)  # starts (event), stops before its first step
    _session(db, settings, "w2", rid, 20)  # restart at step 0: no second event
    events = _initial_loss_events(db, rid)
    assert len(events) == 1
    ev = events[0]
    assert ev["step"] == 0 and ev["source"] == "worker"
    payload = ev["payload"]
    assert payload["expected"] == pytest.approx(math.log(3))
    assert payload["ok"] is True and payload["loss"] > 0
    assert "as expected" in ev["note"]

    with db.write() as s:
        parent = crud.get_run(s, rid)
        child = crud.fork_run(s, parent, step=0, config={**tiny, "max_steps": 400})
        assert child is not None
        cid = child.id
    _session(db, settings, "w3", cid, 5)
    assert _initial_loss_events(db, cid) == []
