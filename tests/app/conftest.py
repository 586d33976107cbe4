"""Shared fixtures: temp-file SQLite settings, an app client, an in-thread worker, ``wait_for``.

Tests wait on observable state with ``wait_for`` (a polling helper with a timeout), never with
bare sleeps. The worker runs in a thread here for speed; the crash test uses real processes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient
from postgres_cluster import throwaway_postgres

from app import crud
from app.db import Database
from app.main import create_app
from app.models import Base
from app.settings import Settings
from app.worker.loop import Worker

T = TypeVar("T")
StartedWorker = tuple[Worker, threading.Thread]

TINY: dict[str, Any] = {
    "dataset": "spirals",
    "n_samples": 200,
    "hidden": [16],
    "batch_size": 32,
    "max_steps": 1_000_000,
    "eval_every": 20,
    "lr": 0.01,
    "schedule": "constant",
    "optimizer": "adam",
}


def wait_for(
    predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def holds_for(predicate: Callable[[], object], duration: float = 0.4, what: str = "") -> None:
    """Check that ``predicate`` stays true for ``duration`` seconds (e.g. "no more steps")."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert predicate(), f"stopped holding: {what or predicate}"
        time.sleep(0.02)


def train_until(
    db: Database,
    settings: Settings,
    done: Callable[[], object],
    *,
    workers: int = 1,
    timeout: float = 60.0,
    what: str = "",
) -> None:
    """Train with ``workers`` worker threads (on ``settings``, which a test may have changed)
    until ``done()`` holds, then stop them; they must stop."""
    started = [Worker(db, settings, worker_id=f"w{i}") for i in range(workers)]
    threads = [threading.Thread(target=w.run_forever, daemon=True) for w in started]
    for thread in threads:
        thread.start()
    try:
        wait_for(done, timeout=timeout, what=what)
    finally:
        for w in started:
            w.stopping.set()
        for thread in threads:
            thread.join(timeout=10)
            assert not thread.is_alive(), "worker thread did not stop"


def run_status_in(db: Database, statuses: tuple[str, ...], *ids: int) -> Callable[[], bool]:
    """A ``done`` for ``train_until``: every run of ``ids`` has one of ``statuses``."""

    def check() -> bool:
        with db.read() as s:
            return all(crud.get_run(s, rid).status in statuses for rid in ids)

    return check


def create_run(client: TestClient, config: dict[str, Any]) -> int:
    """``POST /api/runs`` of ``config``, which must be accepted; the new run's id."""
    response = client.post("/api/runs", json={"config": config})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def finished_run(client: TestClient, rid: int, timeout: float = 60.0) -> dict[str, Any]:
    """The run object once the run has finished (a worker must be training it)."""
    return wait_for(
        lambda: (r := client.get(f"/api/runs/{rid}").json())["status"] == "finished" and r,
        timeout=timeout,
        what=f"run {rid} finished",
    )


def run_async(coro: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run``, also when this thread already runs a loop: Playwright's sync API leaves
    one behind when the e2e tests ran first in the same pytest process."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


async def next_message(viewer: AsyncIterator[bytes]) -> dict[str, str]:
    """A stream viewer's next SSE message as ``{"event", "data", ...}`` (data lines joined)."""
    raw = (await asyncio.wait_for(viewer.__anext__(), 5.0)).decode()
    message: dict[str, str] = {}
    data = []
    for line in raw.splitlines():
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
        elif name:
            message[name] = value.removeprefix(" ")
    message["data"] = "\n".join(data)
    return message


def fast_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings with short intervals so state changes show up quickly in tests."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "workers": 0,
        "flush_interval": 0.02,
        "command_poll": 0.02,
        "claim_interval": 0.05,
        "stream_poll": 0.05,
        "lease_seconds": 3.0,
        "release_paused_after": 0.3,
        "checkpoint_every_steps": 100,
        "shutdown_grace": 1.0,
        # Starlette's TestClient sends "Host: testserver"; the default allow-list stays strict.
        "allowed_hosts": "testserver",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def wait() -> Callable[..., Any]:
    """The ``wait_for`` polling helper, as a fixture so test modules need no imports from here."""
    return wait_for


@pytest.fixture
def holds() -> Callable[..., None]:
    """The ``holds_for`` helper: a condition that must stay true for a while."""
    return holds_for


@pytest.fixture
def tiny() -> dict[str, Any]:
    """A run config that trains in microseconds per step and never finishes on its own."""
    return dict(TINY)


@pytest.fixture(scope="session")
def test_db_url() -> Iterator[str | None]:
    """The database the app tests run on: None for a temp-file SQLite per test (the default);
    ``PANDAMODE_TEST_DB_URL`` if given; with ``PANDAMODE_TEST_DB=postgresql``, a throwaway
    PostgreSQL cluster started here for the session (tests/app/postgres_cluster.py)."""
    url = os.environ.get("PANDAMODE_TEST_DB_URL")
    if url or os.environ.get("PANDAMODE_TEST_DB") != "postgresql":
        yield url or None
        return
    with throwaway_postgres() as cluster_url:
        yield cluster_url


@pytest.fixture
def settings(tmp_path: Path, test_db_url: str | None) -> Settings:
    """Fast settings on a temp-file SQLite database, or on the session's ``test_db_url`` (a
    scratch PostgreSQL database, emptied before each test) to run the suite against it."""
    url = test_db_url
    if url:
        scratch = Database(url)
        Base.metadata.drop_all(scratch.engine)
        scratch.dispose()
    return fast_settings(tmp_path, db_url=url or None)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    database.create_all()
    yield database
    database.dispose()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def start_worker(settings: Settings, db: Database) -> Iterator[Callable[[str], StartedWorker]]:
    """Start workers training in background threads of the test process: ``start_worker(id)``
    returns (worker, thread). Any still running at the end are stopped, and must stop."""
    started: list[StartedWorker] = []

    def start(worker_id: str) -> StartedWorker:
        w = Worker(db, settings, worker_id=worker_id)
        thread = threading.Thread(target=w.run_forever, daemon=True)
        thread.start()
        started.append((w, thread))
        return w, thread

    yield start
    for w, _ in started:
        w.stopping.set()
    for _, thread in started:
        thread.join(timeout=10)
        assert not thread.is_alive(), "worker thread did not stop"


@pytest.fixture
def worker(start_worker: Callable[[str], StartedWorker]) -> Worker:
    """A worker training in a background thread of the test process."""
    return start_worker("test-worker")[0]


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def crash_settings(settings: Settings) -> Settings:
    """Short lease so a second worker takes over quickly; checkpoints only every 300 steps."""
    return settings.model_copy(
        update={"lease_seconds": 1.0, "checkpoint_every_steps": 300, "checkpoint_every_seconds": 0}
    )


@pytest.fixture
def spawn(crash_settings: Settings) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Real worker processes (``python -m app.worker``) on ``crash_settings``, for tests that
    SIGKILL one mid-run; any still alive are killed at the end."""
    env = dict(os.environ)
    env.update(crash_settings.to_env())
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    procs: list[subprocess.Popen[bytes]] = []

    def _spawn() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "app.worker"], env=env, cwd=ROOT)
        procs.append(proc)
        return proc

    yield _spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
