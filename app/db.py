"""Database engine and sessions: SQLite in WAL mode by default, PostgreSQL by URL.

SQLite allows one writer at a time. Writers therefore start with ``BEGIN IMMEDIATE`` (a deferred
transaction that reads first and writes later can fail with SQLITE_BUSY without ever calling the
busy handler); readers keep a plain ``BEGIN`` and short transactions so WAL checkpoints are not
stalled. pysqlite's own transaction handling is switched off (``isolation_level = None``) so the
``begin`` listener decides what BEGIN to emit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.migrate import WRITE_OPTION, migrate

log = logging.getLogger(__name__)

_WRITE_OPTION = WRITE_OPTION
BUSY_TIMEOUT_MS = 10_000
# No thread of the server may wait for a pooled connection. A request used to hold its
# ReadSession's connection until its response was sent, and in between FastAPI validates the
# response in the threadpool (anyio's 40 threads): with SQLAlchemy's bounded default (5 + 10), 40
# threads blocked in the pool waiting for connections held by requests that waited for a thread,
# and the server deadlocked under load until the pool's 30 s timeout answered 500 (bench/load.py;
# tests/app/test_db_pool.py). Read sessions now end with the route function (app/api/deps.py),
# and the pool has room for every thread at once: a file SQLite's without limit (a connection is
# a file handle; 40 stay pooled), PostgreSQL's up to THREADS + a few for the server's own threads
# (the study driver, the lifespan), within PostgreSQL's default max_connections of 100.
SQLITE_POOL: dict[str, Any] = {"pool_size": 40, "max_overflow": -1}
SERVER_POOL: dict[str, Any] = {"pool_size": 10, "max_overflow": 40, "pool_pre_ping": True}


class Database:
    """One engine plus a read and a write session factory; owned by whoever created it."""

    def __init__(self, url: str, *, wal: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url, wal=wal)
        writer = self.engine.execution_options(**{_WRITE_OPTION: True})
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``: crud picks its INSERT ... ON CONFLICT flavour by it."""
        return self.engine.dialect.name

    def create_all(self) -> None:
        """Create missing tables and migrate old ones (idempotent; safe for several processes).

        See app/migrate.py: a database made by an older version keeps every row.
        """
        migrate(self.engine, busy_timeout_ms=BUSY_TIMEOUT_MS)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A short read transaction."""
        with self._read() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction (BEGIN IMMEDIATE on SQLite); commits on success, else rolls back."""
        with self._write() as session, session.begin():
            yield session

    def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def make_engine(url: str, *, wal: bool = True) -> Engine:
    """Build an engine; for SQLite install the pragmas and the BEGIN IMMEDIATE hook."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, **SERVER_POOL)
    pool: dict[str, Any] = {}
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        pool = SQLITE_POOL
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10}, **pool)
    _install_sqlite_hooks(engine, wal=wal)
    return engine


def _install_sqlite_hooks(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = "WAL" if wal else "DELETE"
            answer = cursor.execute(f"PRAGMA journal_mode = {mode}").fetchone()[0]
            if answer.lower() != mode.lower():
                log.warning("SQLite answered journal_mode=%s when asked for %s", answer, mode)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# SQLSTATE classes of errors that say nothing about the work itself: a transaction rolled back
# (serialization failure, deadlock), the connection, the server's resources or a shutdown.
_TRANSIENT_SQLSTATE_CLASSES = ("40", "08", "53", "57")


def is_transient(exc: BaseException) -> bool:
    """Whether a database error is the database's passing state (SQLite "database is locked" or
    busy, a PostgreSQL deadlock, serialization failure or lost connection), not the run's fault:
    such an error is retried, never recorded as the run failing."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
    message = str(exc.orig).lower()
    return "locked" in message or "busy" in message
