"""A study survives a SIGKILLed server (issue 10): ``pandamode serve`` is killed while its
driver creates and tells trials; a new server on the same database resumes the study, and in
the end every trial exists once, trained once, and Optuna was told each outcome once."""

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
import optuna
import pytest
from optuna.trial import TrialState

from app import crud
from app.crud import studies as crud_studies
from app.db import Database
from app.settings import Settings
from app.studies.sampling import open_storage

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
N_TRIALS = 6
STEPS = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serve(settings: Settings) -> Iterator[Callable[[], tuple[subprocess.Popen[bytes], str]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> tuple[subprocess.Popen[bytes], str]:
        port = _free_port()
        env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
        env.update(PANDAMODE_LEASE_SECONDS="1", PANDAMODE_CHECKPOINT_EVERY_STEPS="100")
        env.pop("PANDAMODE_WORKERS", None)
        cmd = [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", "2"]
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
        procs.append(proc)
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
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


def test_a_killed_server_resumes_the_study_with_no_trial_duplicated_or_lost(
    serve: Callable[[], tuple[subprocess.Popen[bytes], str]],
    settings: Settings,
    db: Database,
    tiny: dict[str, Any],
    wait: Callable[..., Any],
) -> None:
    proc, base = serve()
    wait(lambda: (_get(f"{base}/healthz") or {}).get("workers") == 2, timeout=60, what="up")
    body = {
        "config": {**tiny, "max_steps": STEPS, "eval_every": 20},
        "space": {"lr": {"low": 1e-3, "high": 1e-1, "log": True}},
        "n_trials": N_TRIALS,
        "parallel": 2,
        "pace": 300,
        "seed": 1,
    }
    created = httpx.post(f"{base}/api/studies", json=body, timeout=10)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]

    def trials() -> list[dict[str, Any]]:
        return (_get(f"{base}/api/studies/{sid}") or {}).get("trials") or []

    wait(
        lambda: any(t["state"] == "complete" for t in trials()) and len(trials()) >= 3,
        timeout=90,
        what="a trial told and more created",
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    proc, base = serve()
    wait(
        lambda: (_get(f"{base}/api/studies/{sid}") or {}).get("status") == "finished",
        timeout=150,
        what="the resumed study finishes",
    )
    study = _get(f"{base}/api/studies/{sid}")
    got = study["trials"]
    assert [t["number"] for t in got] == list(range(N_TRIALS)), "each trial once"
    assert all(t["status"] == "finished" and t["state"] == "complete" for t in got)
    with db.read() as s:
        assert len(crud.list_runs(s)) == N_TRIALS, "no run created twice"
        for t in got:
            steps = [r[0] for r in crud.metric_rows(s, t["run_id"])]
            assert steps == list(range(1, STEPS + 1)), "every step once"
        stored = crud_studies.get_study(s, sid)
        assert stored is not None
        name = stored.optuna_name
    ostudy = optuna.load_study(study_name=name, storage=open_storage(settings.database_url))
    told = ostudy.get_trials(deepcopy=False)
    assert [t.number for t in told] == list(range(N_TRIALS)), "Optuna holds each trial once"
    assert all(t.state == TrialState.COMPLETE for t in told)
    assert [t.value for t in told] == [t["value"] for t in got]
