"""Several workers on one SQLite database: every queued run is trained by exactly one of them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from app import crud
from app.db import Database
from app.settings import Settings
from app.worker.loop import Worker

pytestmark = pytest.mark.timeout(90)


def test_two_workers_share_the_queue(
    db: Database, settings: Settings, wait: Callable[..., Any], tiny: dict[str, Any]
) -> None:
    with db.write() as s:
        ids = [crud.create_run(s, config={**tiny, "max_steps": 400}).id for _ in range(4)]
    workers = [Worker(db, settings, worker_id=f"w{i}") for i in range(2)]
    threads = [threading.Thread(target=w.run_forever) for w in workers]
    for thread in threads:
        thread.start()

    def all_finished() -> bool:
        with db.read() as s:
            return all(crud.get_run(s, rid).status == "finished" for rid in ids)

    try:
        wait(all_finished, timeout=60, what="all runs finished")
    finally:
        for w in workers:
            w.stopping.set()
        for thread in threads:
            thread.join(timeout=10)
    with db.read() as s:
        for rid in ids:
            assert [r[0] for r in crud.metric_rows(s, rid)] == list(range(1, 401))
            types = [e.type for e in crud.list_events(s, rid)]
            assert types == ["started", "initial_loss", "finished"], (rid, types)
