"""``pandamode serve`` as a user starts it: the lifespan starts the worker processes, the
supervisor restarts one that dies, and Ctrl-C stops everything with the run handed back."""

from __future__ import annotations

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

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (of any of its threads: the supervisor respawns from its own)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return sorted(found)


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    env = {
        **os.environ,
        **settings.to_env(),
        "PYTHONPATH": str(ROOT),
        "PANDAMODE_LEASE_SECONDS": "1",
    }
    env.pop("PANDAMODE_WORKERS", None)
    cmd = [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    yield proc, f"http://127.0.0.1:{port}"
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _health(base: str) -> dict[str, Any] | None:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).json()
    except httpx.TransportError:
        return None


def test_serve_supervises_workers_and_stops_cleanly(
    served: tuple[subprocess.Popen[bytes], str],
    db: Database,
    wait: Callable[..., Any],
    tiny: dict[str, Any],
) -> None:
    proc, base = served
    wait(lambda: (_health(base) or {}).get("workers") == 1, timeout=40, what="server + worker up")
    rid = httpx.post(f"{base}/api/runs", json={"config": tiny}).json()["id"]
    step = lambda: httpx.get(f"{base}/api/runs/{rid}").json()["step"]  # noqa: E731
    wait(lambda: step() > 50, timeout=30, what="the worker trains")

    (worker_pid,) = _children(proc.pid)
    os.kill(worker_pid, signal.SIGKILL)
    wait(lambda: _children(proc.pid) not in ([], [worker_pid]), timeout=20, what="restarted")
    before = step()
    wait(lambda: step() > before + 50, timeout=30, what="training resumes after the restart")

    new_pid = _children(proc.pid)[0]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert not _alive(new_pid), "the worker stopped with the server"
    with db.read() as s:
        run = crud.get_run(s, rid)
        assert run.worker_id is None and run.status == "running", "handed back, not lost"
        steps = [r[0] for r in crud.metric_rows(s, rid)]
    assert steps == list(range(1, run.step + 1))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_orphaned_worker_stops(settings: Settings, wait: Callable[..., Any]) -> None:
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
    worker = f'"{sys.executable}" -m app worker --parent-pid $$ >/dev/null 2>&1'
    script = f"{worker} & echo $!; sleep 0.5"  # the shell exits, orphaning the worker
    shell = subprocess.run(
        ["sh", "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    worker_pid = int(shell.stdout.split()[0])
    wait(lambda: not _alive(worker_pid), timeout=40, what="the orphan exits")
