"""SQLite set-up: WAL and the pragmas on every connection, BEGIN IMMEDIATE for writers only."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app import crud
from app.db import Database

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
    begins = [r.getMessage() for r in caplog.records if r.getMessage().startswith("BEGIN")]
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
