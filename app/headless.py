"""``pandamode train CONFIG.json``: one run trained in this process, recorded in the database.

It is the worker's own ``RunSession`` with the run created and claimed up front, so the run shows
up in any dashboard pointing at the same database, live, and even obeys its commands.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from app import crud
from app.admission import Unrunnable, check_runnable
from app.cli import BadInput
from app.db import Database
from app.limits import run_memory_limit
from app.settings import Settings
from app.worker.loop import new_worker_id
from app.worker.session import RunSession
from engine import RunConfig, StepRecord, Trainer
from engine.data import BUILTIN


def read_config(path: Path) -> tuple[str | None, dict[str, Any]]:
    """Read and validate a config file: a RunConfig object, or ``{"name": ..., "config": ...}``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BadInput(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read it ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{path}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a JSON object, got {type(data).__name__}")
    name = None
    if isinstance(data.get("config"), dict):
        name, data = data.get("name"), data["config"]
    try:
        cfg = RunConfig(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise BadInput(f"{path}: invalid config: {problems}") from exc
    config = cfg.model_dump(mode="json")
    if cfg.dataset not in BUILTIN:
        try:
            data_path = Path(cfg.dataset).expanduser().resolve()
        except (OSError, RuntimeError) as exc:  # "~nosuchuser/x.csv", a name too long
            raise BadInput(f"{path}: dataset {cfg.dataset!r} is not a usable path: {exc}") from exc
        if not data_path.is_file():
            raise BadInput(f"{path}: dataset file {cfg.dataset!r} does not exist")
        config["dataset"] = str(data_path)
    return (str(name) if name is not None else None), config


def train(settings: Settings, config_path: Path, *, as_json: bool = False) -> int:
    """Create the run, train it here with a progress bar; exit 0 if it finished or was stopped."""
    name, config = read_config(config_path)
    try:  # what the API checks at creation (app/admission.py): the data fits, memory suffices
        check_runnable(RunConfig(**config), run_memory_limit(settings))
    except Unrunnable as exc:
        raise BadInput(f"{config_path}: cannot run: {exc.field}: {exc}") from exc
    db = Database(settings.database_url, wal=settings.sqlite_wal)
    db.create_all()
    worker_id = new_worker_id("cli")
    with db.write() as s:
        run_id = crud.create_run(
            s,
            config=config,
            name=name,
            status="running",
            worker_id=worker_id,
            lease_until=crud.now() + settings.lease_seconds,
        ).id
    if _train_here(db, settings, worker_id, run_id) == "shutdown":
        _mark_interrupted(db, run_id)
    summary = _summary(db, run_id)
    db.dispose()
    print(json.dumps(summary) if as_json else _describe(summary))
    return 0 if summary["status"] in ("finished", "stopped") else 1


def _train_here(db: Database, settings: Settings, worker_id: str, run_id: int) -> str:
    """The worker's session in this process, with a progress bar; Ctrl-C stops it cleanly."""
    interrupted = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        interrupted.set()

    previous = signal.signal(signal.SIGINT, _on_signal)
    progress = _Progress(run_id)
    session = RunSession(
        db,
        settings,
        worker_id,
        run_id,
        should_stop=interrupted.is_set,
        on_step=lambda rec: progress.step(rec, session.trainer),
        allow_release=False,
    )
    try:
        with threadpool_limits(limits=settings.blas_threads):
            return session.run()
    finally:
        progress.close()
        signal.signal(signal.SIGINT, previous)


class _Progress:
    """A tqdm bar on stderr, opened at the first step, when the run's length is known."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.bar: tqdm | None = None

    def step(self, rec: StepRecord, trainer: Trainer | None) -> None:
        if self.bar is None:
            total = trainer.total_steps if trainer is not None else None
            self.bar = tqdm(
                total=total, initial=rec.step - 1, unit="step", desc=f"run {self.run_id}",
                file=sys.stderr, dynamic_ncols=True,
            )  # fmt: skip
        self.bar.update(1)
        if rec.step % 20 == 0:
            self.bar.set_postfix(loss=f"{rec.loss:.4f}", lr=f"{rec.lr:.3g}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _mark_interrupted(db: Database, run_id: int) -> None:
    """Ctrl-C: the session checkpointed and released the run; record it as stopped."""
    with db.write() as s:
        run = crud.get_run(s, run_id)
        if run is not None and run.worker_id is None and run.status in ("running", "paused"):
            crud.update_run(s, run_id, status="stopped")
            crud.record_worker_event(s, run_id, "stopped", run.step, {"reason": "interrupted"})


def _summary(db: Database, run_id: int) -> dict[str, Any]:
    with db.read() as s:
        run = crud.get_run(s, run_id)
        assert run is not None
        data = crud.serialize_run(run)
        last = crud.last_metrics(s, run_id)
    return {
        "run_id": run_id,
        "name": data["name"],
        "status": data["status"],
        "step": data["step"],
        "total_steps": data["total_steps"],
        "lr": data["lr"],
        "train_loss": last.get("train_loss"),
        "train_acc": last.get("train_acc"),
        "val_loss": last.get("val_loss"),
        "val_acc": last.get("val_acc"),
        "best_val_loss": data["best_val_loss"],
        "best_val_acc": data["best_val_acc"],
        "error": data["error"],
    }


def _describe(summary: dict[str, Any]) -> str:
    text = f"run {summary['run_id']} {summary['status']} at step {summary['step']}"
    if summary["val_acc"] is not None:
        text += f": val_loss {summary['val_loss']}, val_acc {summary['val_acc']}"
    if summary["error"]:
        text += f" ({summary['error']})"
    return text
