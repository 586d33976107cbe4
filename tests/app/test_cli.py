"""The console script: headless ``train --json`` and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app import crud
from app.cli import main
from app.db import Database
from app.settings import Settings

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def _write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_train_json_records_the_run_in_the_database(tmp_path: Path) -> None:
    config = {"name": "headless", "config": {"dataset": "spirals", "n_samples": 200,
              "hidden": [16], "max_steps": 60, "eval_every": 25}}  # fmt: skip
    path = _write(tmp_path / "run.json", config)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "app", "train", str(path), "--data-dir", str(tmp_path), "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=50, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["step"] == 60
    assert summary["val_acc"] is not None and summary["val_loss"] is not None
    db = Database(Settings(data_dir=tmp_path).database_url)
    with db.read() as s:
        run = crud.get_run(s, summary["run_id"])
        assert run.name == "headless" and run.status == "finished" and run.worker_id is None
        assert crud.count_metrics(s, run.id) == 60
    db.dispose()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({"lr": -1}, "invalid config: lr"),
        ({"hidden": [0]}, "invalid config: hidden"),
        ({"colour": "red"}, "invalid config: colour"),
        ({"dataset": "nowhere.csv"}, "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, message: str
) -> None:
    path = tmp_path / "cfg.json"
    if content is not None:
        _write(path, content)
    code = main(["train", str(path), "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and err.startswith("pandamode: error:")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--allowed-hosts", "bad host!!"], "allowed_hosts: Value error, PANDAMODE_ALLOWED_HOSTS"),
        (["--port", "99999"], "port: Input should be less than or equal to 65535"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code = main(["serve", "--data-dir", str(tmp_path), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err
    assert len(err.splitlines()) == 1 and "errors.pydantic.dev" not in err


def test_ctrl_c_stops_the_headless_run_cleanly(tmp_path: Path, wait: Any) -> None:
    config = {"dataset": "spirals", "n_samples": 200, "hidden": [16], "max_steps": 10_000_000}
    path = _write(tmp_path / "run.json", config)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "train", str(path), "--data-dir", str(tmp_path), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    db = Database(Settings(data_dir=tmp_path).database_url)
    db.create_all()

    def step() -> int:
        with db.read() as s:
            run = crud.get_run(s, 1) if crud.list_runs(s) else None
            return run.step if run is not None else 0

    try:
        wait(lambda: step() > 50, timeout=40, what="headless training")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "stopped"
    with db.read() as s:
        assert crud.list_events(s, 1)[-1].type == "stopped"
        assert crud.latest_checkpoint(s, 1).step == summary["step"]
    db.dispose()
