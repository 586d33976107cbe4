"""Crash recovery: SIGKILL a worker process mid-run, start another, the run finishes with every
step stored exactly once and the very losses of a run that never crashed (deterministic replay,
including a ``set_lr`` applied before the crash)."""

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

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

CONFIG: dict[str, Any] = {
    "dataset": "spirals",
    "n_samples": 400,
    "hidden": [32, 32],
    "batch_size": 32,
    "dropout": 0.1,
    "max_steps": 3000,
    "eval_every": 250,
    "lr": 0.01,
    "schedule": "cosine",
}


def _reference_losses(set_lr_at: int, lr: float) -> list[float]:
    with threadpool_limits(limits=1):
        trainer = Trainer(RunConfig(**CONFIG))
        losses = []
        while not trainer.finished:
            if trainer.step_count == set_lr_at:
                trainer.set_lr(lr)
            losses.append(trainer.step().loss)
    return losses


def test_sigkill_mid_run_loses_nothing_and_counts_nothing_twice(
    db: Database, spawn: Callable[[], subprocess.Popen[bytes]], wait: Callable[..., Any]
) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config=RunConfig(**CONFIG).model_dump(mode="json")).id

    def step() -> int:
        with db.read() as s:
            return crud.get_run(s, rid).step

    first = spawn()
    wait(lambda: step() > 200, timeout=60, what="first worker trains")
    with db.write() as s:
        cmd_id = crud.record_command(s, rid, "set_lr", {"lr": 0.003}).id
    k = wait(lambda: _applied_step(db, rid, cmd_id), what="set_lr applied")
    wait(lambda: step() > k + 450, what="a checkpoint after the set_lr")
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = step()
    assert killed_at < CONFIG["max_steps"], "killed before the end"

    second = spawn()
    wait(lambda: _status(db, rid) == "finished", timeout=90, what="second worker finishes")
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=20) == 0

    with db.read() as s:
        rows = crud.metric_rows(s, rid)
        events = crud.list_events(s, rid)
    assert [r[0] for r in rows] == list(range(1, CONFIG["max_steps"] + 1))
    reference = _reference_losses(k, 0.003)
    assert [r[3] for r in rows] == reference, "same losses as a run that never crashed"
    kinds = [e.type for e in events if e.source == "worker"]
    assert kinds == ["started", "initial_loss", "started", "finished"], "initial loss once"
    restarted = crud.event_payload([e for e in events if e.type == "started"][1])
    assert restarted["checkpoint_step"] is not None and restarted["checkpoint_step"] <= killed_at
    assert _applied_step(db, rid, cmd_id) == k


def _applied_step(db: Database, run_id: int, event_id: int) -> int | None:
    with db.read() as s:
        ev = next(e for e in crud.list_events(s, run_id) if e.id == event_id)
        return ev.step


def _status(db: Database, run_id: int) -> str:
    with db.read() as s:
        return crud.get_run(s, run_id).status
