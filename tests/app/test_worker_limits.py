"""Issue 9: a run cannot take workers down with it. A malformed command is an error on the
command, a faster pace applies at once, a run whose workers keep dying is failed after
``max_run_crashes`` and stops jumping the queue, and a worker's capped address space turns an
oversized run into a MemoryError recorded on the run (numpy and BLAS still start under the cap).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update

from app import crud
from app.db import Database
from app.models import Event, Run
from app.settings import Settings
from app.worker.session import RunSession

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
Wait = Callable[..., Any]


def test_a_malformed_step_command_is_an_error_on_it_not_a_failed_run(
    client: TestClient, worker: object, wait: Wait, db: Database, tiny: dict[str, Any]
) -> None:
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]
    wait(lambda: client.get(f"/api/runs/{rid}").json()["step"] > 5)
    with db.write() as s:  # rows the API would refuse, written straight into the table
        for payload in ({"n": "x"}, {}, {"n": None}, {"n": 2.5}, {"n": True}):
            crud.record_command(s, rid, "step", payload)
        for raw in ("[5]", "{not json"):
            row = crud.record_command(s, rid, "step", {"n": 5})
            s.execute(update(Event).where(Event.id == row.id).values(payload=raw))
    step_now = client.get(f"/api/runs/{rid}").json()["step"]

    def applied() -> list[dict[str, Any]]:
        events = client.get(f"/api/runs/{rid}/events").json()
        steps = [e for e in events if e["type"] == "step"]
        return steps if all(e["step"] is not None for e in steps) else []

    steps = wait(applied, what="the step commands applied")
    assert len(steps) == 7 and all("step rejected" in (e["error"] or "") for e in steps)
    wait(lambda: client.get(f"/api/runs/{rid}").json()["step"] > step_now + 50)
    assert client.get(f"/api/runs/{rid}").json()["status"] == "running"


def test_a_faster_pace_applies_at_once(db: Database, settings: Settings) -> None:
    session = RunSession(db, settings, "w", 1)
    session.control.pace = 1e-6
    assert session._pace_wait() == 0.0  # the first step is due now; the next in ~11 days
    assert session._pace_wait() > 900_000
    session.control.pace = 100.0
    assert 0.0 <= session._pace_wait() <= 0.011  # one interval of the new pace at most


def _expire(db: Database, run_id: int, *, step: int | None = None) -> None:
    values: dict[str, Any] = {"lease_until": 0.0}
    if step is not None:
        values["step"] = step
    with db.write() as s:
        s.execute(update(Run).where(Run.id == run_id).values(**values))


def _claim(db: Database, worker_id: str, max_crashes: int = 3) -> int | None:
    with db.write() as s:
        run = crud.claim_run(s, worker_id, 30.0, max_crashes=max_crashes)
        return None if run is None else run.id


def _new_run(db: Database) -> int:
    with db.write() as s:
        return crud.create_run(s, config={"dataset": "spirals"}).id


def test_a_run_that_keeps_killing_workers_is_failed(db: Database) -> None:
    rid = _new_run(db)
    assert _claim(db, "w1") == rid  # a fresh claim is no crash
    for n, worker_id in enumerate(("w2", "w3"), start=1):
        _expire(db, rid)  # its worker died: the lease ran out
        assert _claim(db, worker_id) == rid
        with db.read() as s:
            assert s.get(Run, rid).crashes == n
    _expire(db, rid)
    assert _claim(db, "w4") is None
    with db.read() as s:
        run = s.get(Run, rid)
        assert run.status == "failed" and run.worker_id is None
        assert "3 workers in a row died" in run.error and "memory" in run.error
        failed = [e for e in crud.list_events(s, rid) if e.type == "failed"]
        assert len(failed) == 1 and failed[0].error == run.error


def test_progress_resets_the_count(db: Database) -> None:
    rid = _new_run(db)
    _claim(db, "w1")
    for i, worker_id in enumerate(("w2", "w3", "w4", "w5")):
        _expire(db, rid, step=100 * (i + 1))  # each worker got further before it died
        assert _claim(db, worker_id) == rid
    with db.read() as s:
        assert s.get(Run, rid).crashes == 1


def test_a_run_that_killed_its_worker_waits_behind_queued_runs(db: Database) -> None:
    crashing = _new_run(db)
    _claim(db, "w1")
    _expire(db, crashing)
    assert _claim(db, "w2") == crashing  # before any queued run: taken over first, as before
    queued = _new_run(db)
    _expire(db, crashing)
    assert _claim(db, "w3") == queued  # no progress since its last crash: the queue goes first
    assert _claim(db, "w4") == crashing


def test_an_old_database_gets_the_crash_counter_and_keeps_its_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Database(url)
    old.create_all()
    rid = _new_run(old)
    with old.engine.begin() as conn:  # as main left it: no crash columns
        conn.execute(text("ALTER TABLE runs DROP COLUMN crashes"))
        conn.execute(text("ALTER TABLE runs DROP COLUMN crash_step"))
    old.dispose()
    db = Database(url)
    db.create_all()
    with db.read() as s:
        run = s.get(Run, rid)
        assert run is not None and run.crashes == 0 and run.crash_step is None
    assert _claim(db, "w1") == rid
    db.dispose()


@pytest.fixture
def capped_worker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker process whose address space is capped at 1.5 GiB."""
    env = dict(os.environ)
    env.update(settings.to_env())
    env["PANDAMODE_WORKER_ADDRESS_SPACE"] = str(3 * 2**29)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-m", "app.worker"], env=env, cwd=ROOT)
    yield proc
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_a_capped_worker_trains_and_an_oversized_run_fails_with_memory_error(
    db: Database, capped_worker: subprocess.Popen[bytes], wait: Wait
) -> None:
    small = {"dataset": "spirals", "n_samples": 200, "hidden": [16], "max_steps": 50}
    # ~3 GiB of parameters, gradients and Adam moments: past the cap, stored past the API.
    big = {"dataset": "spirals", "n_samples": 200, "hidden": [8192, 8192, 8192], "max_steps": 5}
    with db.write() as s:
        first = crud.create_run(s, config=small).id
        second = crud.create_run(s, config=big).id
        third = crud.create_run(s, config=small).id

    def status(rid: int) -> str:
        with db.read() as s:
            return s.get(Run, rid).status

    wait(lambda: status(first) == "finished", timeout=60, what="numpy trains under the cap")
    wait(lambda: status(second) == "failed", timeout=60, what="the oversized run fails")
    with db.read() as s:
        assert "MemoryError" in (s.get(Run, second).error or "")
    wait(lambda: status(third) == "finished", timeout=60, what="the worker goes on")
    assert capped_worker.poll() is None
