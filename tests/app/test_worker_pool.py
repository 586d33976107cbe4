"""Several workers on one SQLite database: every queued run is trained by exactly one of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import run_status_in, train_until

from app import crud
from app.db import Database
from app.settings import Settings

pytestmark = pytest.mark.timeout(90)


def test_two_workers_share_the_queue(
    db: Database, settings: Settings, wait: Callable[..., Any], tiny: dict[str, Any]
) -> None:
    with db.write() as s:
        ids = [crud.create_run(s, config={**tiny, "max_steps": 400}).id for _ in range(4)]
    done = run_status_in(db, ("finished",), *ids)
    train_until(db, settings, done, workers=2, what="all runs finished")
    with db.read() as s:
        for rid in ids:
            assert [r[0] for r in crud.metric_rows(s, rid)] == list(range(1, 401))
            types = [e.type for e in crud.list_events(s, rid)]
            assert types == ["started", "initial_loss", "finished"], (rid, types)
