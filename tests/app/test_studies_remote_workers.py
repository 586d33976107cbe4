"""A study whose trials are trained by workers started on their own, as on other machines
(issue 10): ``pandamode serve --workers 0`` drives the study, two ``pandamode worker --db URL``
processes claim its trials through the database. On PostgreSQL with
PANDAMODE_TEST_DB=postgresql this is the multi-machine setup of docs/studies.md."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import crud
from app.db import Database
from app.settings import Settings

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _get(url: str) -> Any:
    try:
        return httpx.get(url, timeout=3).json()
    except httpx.TransportError:
        return None


def test_workers_started_alone_train_a_studys_trials(
    processes: list[subprocess.Popen[bytes]],
    settings: Settings,
    db: Database,
    tiny: dict[str, Any],
    wait: Callable[..., Any],
) -> None:
    url = settings.database_url
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
    env.pop("PANDAMODE_WORKERS", None)
    env.pop("PANDAMODE_DB_URL", None)  # the workers are told the database by --db only
    env.pop("PANDAMODE_DATA_DIR", None)
    port = _free_port()
    serve = [sys.executable, "-m", "app", "serve", "--db", url, "--port", str(port)]
    processes.append(subprocess.Popen([*serve, "--workers", "0"], env=env, cwd=ROOT))
    base = f"http://127.0.0.1:{port}"
    wait(lambda: (_get(f"{base}/healthz") or {}).get("status") == "ok", timeout=60, what="up")
    body = {
        "config": {**tiny, "max_steps": 200, "eval_every": 20},
        "space": {"lr": {"low": 1e-3, "high": 1e-1, "log": True}},
        "n_trials": 4,
        "parallel": 2,
        "seed": 2,
    }
    sid = httpx.post(f"{base}/api/studies", json=body, timeout=10).json()["id"]
    wait(lambda: len(_get(f"{base}/api/studies/{sid}")["trials"]) == 2, what="trials queued")
    for _ in range(2):
        worker = [sys.executable, "-m", "app", "worker", "--db", url]
        processes.append(subprocess.Popen(worker, env=env, cwd=ROOT))
    wait(
        lambda: _get(f"{base}/api/studies/{sid}")["status"] == "finished",
        timeout=150,
        what="the workers train every trial",
    )
    trials = _get(f"{base}/api/studies/{sid}")["trials"]
    assert [t["state"] for t in trials] == ["complete"] * 4
    pids = {str(p.pid) for p in processes[1:]}
    with db.read() as s:
        started = [
            json.loads(e.payload)["worker"]
            for t in trials
            for e in crud.list_events(s, t["run_id"])
            if e.type == "started"
        ]
    assert started and all(w.split(":")[1] in pids for w in started), (
        "every trial was trained by one of the standalone workers"
    )
