"""A step longer than the lease: the worker keeps its lease from a side thread, so a second
worker never takes the run over mid-step (before: two workers livelocked on such a run, 17
"started" events and one step committed in 6 s with a 0.3 s lease)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import run_status_in, train_until

from app import crud
from app.db import Database
from app.settings import Settings
from app.worker.keepalive import LeaseKeeper
from engine import Trainer

pytestmark = pytest.mark.timeout(60)

LEASE = 0.3
STEP_SECONDS = 0.45  # each step outlasts the lease


def test_two_workers_and_steps_longer_than_the_lease(
    db: Database,
    settings: Settings,
    wait: Callable[..., Any],
    tiny: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow = settings.model_copy(update={"lease_seconds": LEASE, "checkpoint_every_seconds": 0})
    plain_step = Trainer.step

    def slow_step(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        time.sleep(STEP_SECONDS)
        return plain_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "step", slow_step)
    with db.write() as s:
        rid = crud.create_run(s, config={**tiny, "max_steps": 6, "eval_every": 3}).id
    done = run_status_in(db, ("finished",), rid)
    train_until(db, slow, done, workers=2, timeout=30, what="the slow run finished")
    with db.read() as s:
        assert [r[0] for r in crud.metric_rows(s, rid)] == list(range(1, 7))
        started = [e for e in crud.list_events(s, rid) if e.type == "started"]
    assert len(started) == 1, f"the run changed hands {len(started) - 1} times"


def test_keeper_beats_only_when_due_and_stops_when_the_lease_is_lost() -> None:
    due = threading.Event()
    calls: list[float] = []

    def heartbeat() -> None:
        calls.append(time.monotonic())
        if len(calls) == 3:
            raise RuntimeError("lease lost")

    keeper = LeaseKeeper(heartbeat, due.is_set, every=0.01)
    with keeper.running():
        time.sleep(0.1)
        assert calls == [], "not due: no write"
        due.set()
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
    assert len(calls) == 3, "the thread stops at the first failed renewal"
    assert keeper.beats == 2


def test_lease_is_renewed_while_a_slow_dataset_loads() -> None:
    """Loading keeps the lease with the same keeper, beating every interval (always due)."""
    beats: list[int] = []
    with LeaseKeeper(lambda: beats.append(1), lambda: True, every=0.02).running():
        threading.Event().wait(0.3)  # stands in for a slow Trainer(...) construction
    count = len(beats)
    assert count >= 3
    threading.Event().wait(0.1)
    assert len(beats) == count, "no heartbeats after loading"
