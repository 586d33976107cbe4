"""SQLite set-up: WAL and the pragmas on every connection, BEGIN IMMEDIATE for writers only."""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from app import crud
from app.db import Database
from app.settings import Settings

pytestmark = pytest.mark.timeout(30)


def test_pragmas_on_every_connection(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    db.create_all()
    with db.read() as s:
        conn = s.connection()
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


def test_wal_can_be_switched_off(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}", wal=False)
    with db.read() as s:
        assert s.connection().exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
    db.dispose()


def test_writers_begin_immediate_readers_plain(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.create_all()
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine.Engine"):
        with db.write() as s:
            crud.create_run(s, config={})
        with db.read() as s:
            crud.list_runs(s)
    mine = [r for r in caplog.records if r.thread == threading.get_ident()]  # not a stray thread's
    begins = [r.getMessage() for r in mine if r.getMessage().startswith("BEGIN")]
    begins = [b for b in begins if "implicit" not in b]
    assert begins == ["BEGIN IMMEDIATE", "BEGIN"]
    db.dispose()


def test_failed_write_rolls_back(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.create_all()
    with pytest.raises(RuntimeError), db.write() as s:
        crud.create_run(s, config={})
        raise RuntimeError("boom")
    with db.read() as s:
        assert crud.list_runs(s) == []
    db.dispose()


# The schema a database made by main before the rollups had (SQLAlchemy's DDL, verbatim).
OLD_SCHEMA = """
CREATE TABLE runs (
    id INTEGER NOT NULL, name VARCHAR(200) NOT NULL, status VARCHAR(16) NOT NULL,
    config TEXT NOT NULL, parent_id INTEGER, parent_step INTEGER, created_at FLOAT NOT NULL,
    updated_at FLOAT NOT NULL, step INTEGER NOT NULL, lr FLOAT, total_steps INTEGER,
    best_val_loss FLOAT, best_val_acc FLOAT, error TEXT, worker_id VARCHAR(100),
    lease_until FLOAT, PRIMARY KEY (id), FOREIGN KEY(parent_id) REFERENCES runs (id)
);
CREATE INDEX ix_runs_status ON runs (status);
CREATE TABLE metrics (
    run_id INTEGER NOT NULL, step INTEGER NOT NULL, time FLOAT NOT NULL, epoch FLOAT,
    lr FLOAT, train_loss FLOAT, train_acc FLOAT, val_loss FLOAT, val_acc FLOAT,
    PRIMARY KEY (run_id, step), FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE TABLE events (
    id INTEGER NOT NULL, run_id INTEGER NOT NULL, type VARCHAR(32) NOT NULL,
    payload TEXT NOT NULL, source VARCHAR(16) NOT NULL, created_at FLOAT NOT NULL,
    applied_at FLOAT, step INTEGER, error TEXT, PRIMARY KEY (id),
    FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE INDEX ix_events_run_id ON events (run_id);
CREATE INDEX ix_events_run_pending ON events (run_id, step);
CREATE TABLE checkpoints (
    id INTEGER NOT NULL, run_id INTEGER NOT NULL, step INTEGER NOT NULL,
    created_at FLOAT NOT NULL, sha256 VARCHAR(64) NOT NULL, size INTEGER NOT NULL,
    state BLOB NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE INDEX ix_checkpoints_run_step ON checkpoints (run_id, step);
"""


def _old_database(path: Path) -> list[tuple[object, ...]]:
    """An old-layout database: a run with a NaN (stored as NULL) and a fork with copied rows."""
    rows = []
    for step in range(1, 3001):
        evaluated = step % 100 == 0
        loss = None if step == 1500 else 1.0 / step  # NULL beside an accuracy: a NaN loss
        rows.append(
            (1, step, 1000.0 + step, step / 30, 0.1, loss, 0.5, 0.2 if evaluated else None,
             0.7 if evaluated else None)
        )  # fmt: skip
    fork = [(2, *r[1:]) for r in rows[:1000]] + [
        (2, s, 5000.0 + s, s / 30, 0.01, 0.3, 0.6, None, None) for s in range(1001, 1201)
    ]
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute(
            "INSERT INTO runs (id, name, status, config, created_at, updated_at, step) "
            "VALUES (1, 'old', 'finished', '{}', 0, 0, 3000)"
        )
        conn.execute(
            "INSERT INTO runs (id, name, status, config, parent_id, parent_step, created_at, "
            "updated_at, step) VALUES (2, 'old fork', 'stopped', '{}', 1, 1000, 0, 0, 1200)"
        )
        conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows + fork)
    return rows + fork


def test_an_old_database_opens_and_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = _old_database(path)
    db = Database(f"sqlite:///{path}")
    db.create_all()
    db.create_all()  # idempotent: a second start finds nothing to do
    with sqlite3.connect(path) as conn:
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'metrics'").fetchone()[0]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        kept = conn.execute(
            "SELECT run_id, step, time, lr, train_loss, train_acc, val_loss, val_acc "
            "FROM metrics ORDER BY run_id, step"
        ).fetchall()
    assert "WITHOUT ROWID" in ddl and "epoch" not in ddl
    assert "ix_metrics_eval" in indexes
    assert kept == [(*r[:3], *r[4:]) for r in old], "every row, every value but the epoch"
    with db.read() as s:
        assert crud.count_metrics(s, 1) == 3000 and crud.count_metrics(s, 2) == 1200
        rows, exact = crud.metrics_window(s, 1, max_points=100)
        assert not exact and 1500 in [r[0] for r in rows], "rollups built for the old rows"
        assert math.isnan(next(r for r in rows if r[0] == 1500)[3])
        fork = crud.metric_rows(s, 2)
        assert [r[0] for r in fork] == list(range(1, 1201)) and fork[1100][1:3] == (6101.0, 0.01)
    db.dispose()


def test_several_processes_migrating_at_once(tmp_path: Path) -> None:
    """Starters queue on the write lock: one migrates, the others find it done, none fails."""
    path = tmp_path / "old.db"
    _old_database(path)
    errors: list[BaseException] = []

    def start() -> None:
        db = Database(f"sqlite:///{path}")
        try:
            db.create_all()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    db = Database(f"sqlite:///{path}")
    with db.read() as s:
        assert crud.count_metrics(s, 1) == 3000
        assert s.connection().exec_driver_sql("SELECT count(*) FROM metrics").scalar() == 4200
    db.dispose()


def test_the_suite_runs_on_the_database_it_was_asked_for(settings: Settings) -> None:
    """`make test-postgres` must really exercise PostgreSQL, not fall back to SQLite."""
    database = Database(settings.database_url)
    try:
        wanted = os.environ.get("PANDAMODE_TEST_DB") or "sqlite"
        assert database.engine.dialect.name == wanted
        with database.read() as s:
            assert s.execute(text("SELECT 1")).scalar() == 1
    finally:
        database.dispose()
