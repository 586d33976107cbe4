"""Bring a database made by an older pandamode to today's layout, once, when a process starts.

There is no migration tool: each step below checks what the database looks like and changes only
what is old, inside one write transaction that concurrent starters wait for (BEGIN IMMEDIATE on
SQLite with a long busy timeout, an advisory lock on PostgreSQL), so the first process to start
migrates and the others find nothing left to do. No stored metric row is ever dropped.

Steps, in order:
1. ``metrics`` as a WITHOUT ROWID table without the ``epoch`` column (SQLite: copy into the new
   table, in key order; PostgreSQL: drop the column, the rest is unchanged).
2. Missing tables (``metric_rollups``, ``run_pictures``, ``train_evals``), then missing indexes
   (``ix_metrics_eval``).
3. Rollups of every run's stored rows, when ``metric_rollups`` did not exist before.
4. ``runs.crashes`` and ``runs.crash_step`` (the crash counter of claim_run), added to a
   ``runs`` table that lacks them: every run starts with no crash counted.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, inspect, select, text
from sqlalchemy.orm import Session

from app.crud import rollups
from app.crud.lineage import Segment, segment_rows
from app.models import Base, Metric, Run

log = logging.getLogger(__name__)

WRITE_OPTION = "pandamode_write"  # app.db's marker for BEGIN IMMEDIATE
_PG_LOCK_KEY = 0x70616E64  # "pand": the advisory lock migrating processes queue on
_WAIT_MS = 600_000  # a large database takes a while to migrate; others wait for it, not fail
_CHUNK = 20_000
_COLUMNS = "run_id, step, time, lr, train_loss, train_acc, val_loss, val_acc"


def migrate(engine: Engine, *, busy_timeout_ms: int) -> None:
    """Create missing tables and bring old ones to the current layout (idempotent)."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            _busy_timeout(conn, _WAIT_MS)
        try:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                _migrate(conn)
        finally:
            if sqlite:
                _busy_timeout(conn, busy_timeout_ms)


def _busy_timeout(conn: Connection, ms: int) -> None:
    """Straight on the DBAPI connection: a SQLAlchemy execute would autobegin before our BEGIN."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute(f"PRAGMA busy_timeout = {int(ms)}")


def _migrate(conn: Connection) -> None:
    tables = set(inspect(conn).get_table_names())
    had_metrics, had_rollups = "metrics" in tables, "metric_rollups" in tables
    if had_metrics:
        _relayout_metrics(conn)
    Base.metadata.create_all(conn)
    for table in Base.metadata.sorted_tables:  # create_all adds no index to an existing table
        for index in table.indexes:
            index.create(conn, checkfirst=True)
    if had_metrics and not had_rollups:
        _backfill_rollups(conn)
    _add_crash_counter(conn)


def _add_crash_counter(conn: Connection) -> None:
    """Step 4: the two columns of the crash counter on an older ``runs`` table."""
    columns = {c["name"] for c in inspect(conn).get_columns("runs")}
    if "crashes" not in columns:
        log.info("migrating runs: adding the crash counter")
        conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0")
    if "crash_step" not in columns:
        conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN crash_step INTEGER")


def _relayout_metrics(conn: Connection) -> None:
    columns = {c["name"] for c in inspect(conn).get_columns("metrics")}
    if conn.dialect.name != "sqlite":
        if "epoch" in columns:
            log.info("migrating metrics: dropping the derivable epoch column")
            conn.exec_driver_sql("ALTER TABLE metrics DROP COLUMN epoch")
        return
    ddl = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'metrics'"
    ).scalar_one()
    if "epoch" not in columns and "WITHOUT ROWID" in ddl.upper():
        return
    log.info("migrating metrics to a WITHOUT ROWID table without epoch (keeps every row)")
    conn.exec_driver_sql("ALTER TABLE metrics RENAME TO metrics_old")
    Metric.__table__.create(conn)
    conn.exec_driver_sql(
        f"INSERT INTO metrics ({_COLUMNS}) SELECT {_COLUMNS} FROM metrics_old ORDER BY run_id, step"
    )
    conn.exec_driver_sql("DROP TABLE metrics_old")


def _backfill_rollups(conn: Connection) -> None:
    """Rollups of every run's own stored rows, read in chunks (memory stays bounded)."""
    with Session(bind=conn) as session:
        for run_id in session.scalars(select(Run.id).order_by(Run.id)).all():
            after = 0
            while True:
                rows = segment_rows(session, Segment(run_id, after, None), limit=_CHUNK)
                if not rows:
                    break
                rollups.record(session, run_id, rows)
                after = int(rows[-1][0])
