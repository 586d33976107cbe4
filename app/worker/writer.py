"""The write side of a run session: buffered rows, best metrics, the lease guard, checkpoints.

Every database write of a session goes through ``RunWriter.transaction``, which writes the
buffered metric rows and ends with the lease check (rolling everything back with ``LeaseLost`` if
another worker has taken the run), so a status change, an applied command or a checkpoint is
always committed together with the steps it follows. That is what makes a crash lose nothing: the
run's committed step, its rows, its checkpoints and its applied commands never disagree.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from app import crud
from app.crud import health as crud_health
from app.db import Database
from app.settings import Settings
from app.worker.pictures import PictureTaker
from engine import StepRecord, Trainer, state_to_bytes


class LeaseLost(RuntimeError):
    """Another worker holds the run now; this one must stop touching it."""


class RunWriter:
    """Buffers one run's metric rows and commits them with whatever else must go with them."""

    def __init__(self, db: Database, settings: Settings, worker_id: str, run_id: int) -> None:
        self.db, self.settings, self.worker_id, self.run_id = db, settings, worker_id, run_id
        self.buffer: list[dict[str, Any]] = []
        self.health: list[dict[str, Any]] = []  # layer_health rows of the buffered steps
        self.pictures = PictureTaker()  # written with the rows of their evaluation
        self.keep_checkpoints: set[int] = set()  # ids never thinned out (early stopping's best)
        self.best_loss: float | None = None
        self.best_acc: float | None = None
        self.checkpoint_step = -1
        self.checkpoint_requested = False
        self.release_requested = False
        now = time.monotonic()
        self.checkpoint_time = self.last_flush = self.last_heartbeat = now

    def add(self, rec: StepRecord) -> dict[str, Any]:
        """Buffer the row of a step; returned so an evaluation can fill its val columns."""
        row: dict[str, Any] = {
            "step": rec.step,
            "time": time.time(),
            "lr": rec.lr,
            "train_loss": rec.loss,
            "train_acc": rec.acc,
            "val_loss": None,
            "val_acc": None,
            "train_eval_loss": None,
            "train_eval_acc": None,
        }
        self.buffer.append(row)
        if rec.health is not None:  # per-layer health, committed with the step's row
            self.health.extend(crud_health.to_rows(rec.step, rec.health))
        return row

    def add_evaluation(self, row: dict[str, Any], result: dict[str, float]) -> None:
        """Put an evaluation on its step's row and keep the best finite values. The training
        split's eval-mode figures (``train_eval_loss``/``_acc``) go on the row when measured."""
        loss, acc = result["loss"], result["acc"]
        row["val_loss"], row["val_acc"] = loss, acc
        row["train_eval_loss"] = result.get("train_eval_loss")
        row["train_eval_acc"] = result.get("train_eval_acc")
        if math.isfinite(loss) and (self.best_loss is None or loss < self.best_loss):
            self.best_loss = loss
        if math.isfinite(acc) and (self.best_acc is None or acc > self.best_acc):
            self.best_acc = acc

    def flush_due(self) -> bool:
        """Rows are buffered, and there are enough of them or the flush interval has passed."""
        if not self.buffer:
            return False
        elapsed = time.monotonic() - self.last_flush
        return (
            len(self.buffer) >= self.settings.flush_rows or elapsed >= self.settings.flush_interval
        )

    def heartbeat_due(self) -> bool:
        """A third of the lease has passed since the last write."""
        return time.monotonic() - self.last_heartbeat >= self.settings.lease_seconds / 3

    def checkpoint_due(self) -> bool:
        """The time trigger (the step trigger fires at exact multiples, in the session)."""
        every = self.settings.checkpoint_every_seconds
        return bool(every) and time.monotonic() - self.checkpoint_time >= every

    def heartbeat(self) -> None:
        """Renew the lease only (while loading or replaying, before there are rows to write)."""
        with self.db.write() as s:
            if not crud.renew_lease(s, self.run_id, self.worker_id, self.settings.lease_seconds):
                raise LeaseLost
        self.last_heartbeat = time.monotonic()

    @contextmanager
    def transaction(
        self, trainer: Trainer, *, checkpoint: bool = False, release: bool = False
    ) -> Iterator[Session]:
        """Buffered rows, the caller's writes, then one guarded UPDATE of the run, a checkpoint.

        The closing UPDATE renews the lease (or, with ``release`` or ``release_requested``, hands
        the run back) only ``WHERE worker_id`` is still ours; if another worker took the run it
        matches nothing, ``LeaseLost`` is raised and the whole transaction rolls back. A
        checkpoint is written when asked for here or when ``checkpoint_requested`` was set, also
        from inside the ``with`` body (a ``pause`` or ``checkpoint`` command being applied).
        """
        rows = list(self.buffer)
        health = list(self.health)
        with self.db.write() as s:
            crud.append_metrics(s, self.run_id, rows)
            crud_health.append_health(s, self.run_id, health)
            self.pictures.write(s, self.run_id)
            yield s
            values = {
                "lr": trainer.current_lr(),
                "total_steps": trainer.total_steps,
                "best_val_loss": self.best_loss,
                "best_val_acc": self.best_acc,
            }
            if release or self.release_requested:
                ours = crud.release_run(s, self.run_id, self.worker_id, **values)
            else:
                lease = self.settings.lease_seconds
                ours = crud.renew_lease(s, self.run_id, self.worker_id, lease, **values)
            if not ours:
                raise LeaseLost
            wanted = checkpoint or self.checkpoint_requested
            if wanted and trainer.step_count != self.checkpoint_step:
                self.write_checkpoint(s, trainer)
        self.checkpoint_requested = self.release_requested = False
        del self.buffer[: len(rows)]
        del self.health[: len(health)]
        self.last_flush = self.last_heartbeat = time.monotonic()

    def write_checkpoint(self, s: Session, trainer: Trainer) -> int:
        """Store the trainer's state now, in the caller's transaction, and thin out older ones;
        returns the checkpoint's id. A later request at the same step is then skipped, so the
        state written before a learning-rate change stays the only one at its step."""
        state = state_to_bytes(trainer.state_dict())
        ckpt = crud.save_checkpoint(s, self.run_id, trainer.step_count, state)
        crud.prune_checkpoints(
            s,
            self.run_id,
            keep_recent=self.settings.checkpoint_keep_recent,
            keep_every=self.settings.checkpoint_keep_every_steps,
            keep=self.keep_checkpoints,
        )
        self.checkpoint_step, self.checkpoint_time = trainer.step_count, time.monotonic()
        return ckpt.id

    def release(self) -> None:
        """Hand the run back as it stands committed (status unchanged, nothing else written),
        for the next claim to resume; a no-op if another worker holds it already."""
        with self.db.write() as s:
            crud.release_run(s, self.run_id, self.worker_id)

    def record_failure(self, error: str, step: int) -> None:
        """Status failed with the error text, a ``failed`` event, the rows so far; release. The
        commands still pending are closed: no worker will apply them."""
        with self.db.write() as s:
            if not crud.release_run(s, self.run_id, self.worker_id, status="failed", error=error):
                raise LeaseLost
            crud.append_metrics(s, self.run_id, self.buffer)
            crud_health.append_health(s, self.run_id, self.health)
            crud.record_worker_event(s, self.run_id, "failed", step, error=error)
            crud.close_pending_commands(s, self.run_id, step, "failed")
