"""A transient database error ("database is locked") mid-run is not the run's fault: the worker
hands the run back and takes it up again from its committed step; the run goes on, with every
step stored once and the losses of a run that never met the error (before: marked failed)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from conftest import run_status_in, train_until
from sqlalchemy.exc import OperationalError

from app import crud
from app.db import Database, is_transient
from app.series import COLUMNS
from app.settings import Settings

pytestmark = pytest.mark.timeout(90)

STEPS = 300
LOSS = COLUMNS.index("train_loss")


def _train(db: Database, settings: Settings, rid: int) -> None:
    done = run_status_in(db, ("finished", "failed"), rid)
    train_until(db, settings, done, what=f"run {rid} ended")


def test_database_locked_mid_run_is_retried_not_failed(
    db: Database,
    settings: Settings,
    tiny: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = {**tiny, "max_steps": STEPS}
    with db.write() as s:
        twin = crud.create_run(s, config=config).id
    _train(db, settings, twin)

    plain_append = crud.append_metrics
    calls = {"n": 0}

    def locked_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:  # a flush in the middle of the run
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        return plain_append(*args, **kwargs)

    monkeypatch.setattr(crud, "append_metrics", locked_once)
    with db.write() as s:
        rid = crud.create_run(s, config=config).id
    _train(db, settings, rid)

    with db.read() as s:
        run = crud.get_run(s, rid)
        assert run.status == "finished", run.error
        rows, twin_rows = crud.metric_rows(s, rid), crud.metric_rows(s, twin)
        started = [e for e in crud.list_events(s, rid) if e.type == "started"]
    assert calls["n"] > 4, "the error was injected"
    assert [r[0] for r in rows] == list(range(1, STEPS + 1))
    assert [r[LOSS] for r in rows] == [r[LOSS] for r in twin_rows]
    assert len(started) == 2, "taken up again once after the error"


def test_only_passing_database_states_are_transient() -> None:
    locked = OperationalError("x", {}, sqlite3.OperationalError("database is locked"))
    no_table = OperationalError("x", {}, sqlite3.OperationalError("no such table: runs"))

    class Deadlock(Exception):
        sqlstate = "40P01"

    class Syntax(Exception):
        sqlstate = "42601"

    assert is_transient(locked)
    assert not is_transient(no_table)
    assert is_transient(OperationalError("x", {}, Deadlock()))
    assert not is_transient(OperationalError("x", {}, Syntax()))
    assert not is_transient(ValueError("database is locked"))
