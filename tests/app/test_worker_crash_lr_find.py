"""A range test survives a SIGKILLed worker as every run does (tests/app/test_worker_crash.py):
the next worker replays from the checkpoint, rebuilds the early-stop watch from the stored rows,
and ends the test at the very step, with the very losses, of a test that never crashed."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from threadpoolctl import threadpool_limits

from app import crud
from app.db import Database
from engine import RunConfig, Trainer
from engine.lr_find import LossWatch

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

CONFIG: dict[str, Any] = {
    "dataset": "spirals",
    "n_samples": 400,
    "hidden": [32, 32],
    "batch_size": 32,
    "dropout": 0.1,
    "max_steps": 3000,
    "eval_every": 3000,
    "optimizer": "sgd",
    "lr": 1e-6,
    "schedule": "range_test",
    "lr_range_max": 100.0,
}


def _reference() -> tuple[list[float], str]:
    """The losses of the test run without a crash, up to its early stop, and the reason."""
    with threadpool_limits(limits=1):
        trainer, watch, losses = Trainer(RunConfig(**CONFIG)), LossWatch(), []
        while not trainer.finished:
            losses.append(trainer.step().loss)
            if watch.update(losses[-1]):
                break
    return losses, str(watch.stop_reason)


def test_sigkill_mid_range_test_stops_where_an_uninterrupted_one_does(
    db: Database, spawn: Callable[[], subprocess.Popen[bytes]], wait: Callable[..., Any]
) -> None:
    reference, reason = _reference()
    assert 700 < len(reference) < CONFIG["max_steps"], "the test stops early, after the kill"
    with db.write() as s:
        rid = crud.create_run(s, config=RunConfig(**CONFIG).model_dump(mode="json")).id

    def run() -> Any:
        with db.read() as s:
            return crud.get_run(s, rid)

    first = spawn()
    wait(lambda: run().step > 700, timeout=60, what="first worker passes a checkpoint")
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = run().step
    assert killed_at < len(reference), "killed before the early stop"

    second = spawn()
    wait(lambda: run().status == "finished", timeout=90, what="second worker ends the test")
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=20) == 0

    with db.read() as s:
        rows = crud.metric_rows(s, rid)
        events = crud.list_events(s, rid)
    assert [r[0] for r in rows] == list(range(1, len(reference) + 1)), "stopped at the same step"
    assert [r[3] for r in rows] == reference, "same losses as a test that never crashed"
    kinds = [e.type for e in events if e.source == "worker"]
    assert kinds == ["started", "initial_loss", "started", "finished"], "finished, not diverged"
    assert crud.event_payload(events[-1])["range_test"] == reason
    restarted = [e for e in events if e.type == "started"][1]
    assert crud.event_payload(restarted)["checkpoint_step"] <= killed_at
