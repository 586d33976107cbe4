"""A file SQLite database under many concurrent requests: no thread ever waits for a pooled
connection, so the server cannot deadlock.

bench/load.py found it (200 clients with 0.1 s think time): a ``def`` route holds its
ReadSession's connection until its response is sent, and FastAPI validates the response in the
threadpool (40 threads) in between. With SQLAlchemy's default pool (5 + 10 connections), 40
threads blocked waiting for connections held by requests that wait for a thread: nothing moved
until the pool's 30 s timeout answered 500 (``QueuePool limit of size 5 overflow 10 reached``),
and the workers, whose flushes waited behind a writer stuck the same way, stalled with it.

These tests use their own SQLite settings whatever database the suite runs on: the unbounded
pool is SQLite's (connections are file handles); PostgreSQL keeps a bounded pool.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from conftest import fast_settings
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.db import Database
from app.main import create_app
from app.settings import Settings


def test_many_sessions_at_once_each_get_a_connection_without_waiting(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'pool.db'}")
    try:
        with ExitStack() as stack:  # 60 open read transactions, each holding its connection
            sessions = [stack.enter_context(db.read()) for _ in range(60)]
            answers = [s.execute(text("SELECT 1")).scalar_one() for s in sessions]
        assert answers == [1] * 60  # the bounded pool's 16th checkout waited 30 s, then raised
    finally:
        db.dispose()


def test_many_concurrent_reads_through_the_app_all_answer(tmp_path: Path) -> None:
    with TestClient(create_app(fast_settings(tmp_path))) as client:
        run = client.post("/api/runs", json={"config": {"dataset": "spirals"}}).json()
        with ThreadPoolExecutor(150) as pool:
            codes = Counter(
                pool.map(lambda _: client.get(f"/api/runs/{run['id']}").status_code, range(600))
            )
    assert codes == Counter({200: 600})


def test_many_concurrent_reads_on_the_suites_database_all_answer(settings: Settings) -> None:
    """The same load on the database the suite runs on (PostgreSQL's bounded pool in
    `make test-postgres`): a read session ends with its route function, so no response holds
    a connection while it waits for a thread (before: no answer within 300 s on PostgreSQL)."""
    with TestClient(create_app(settings)) as client:
        run = client.post("/api/runs", json={"config": {"dataset": "spirals"}}).json()
        with ThreadPoolExecutor(150) as pool:
            codes = Counter(
                pool.map(lambda _: client.get(f"/api/runs/{run['id']}").status_code, range(600))
            )
    assert codes == Counter({200: 600})
