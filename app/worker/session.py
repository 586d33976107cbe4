"""Training one claimed run: load and replay, then the step loop with commands and flushes.

The loop decides *what* happens (step, evaluate, apply commands, pause, end); every write goes
through ``RunWriter.transaction`` (app/worker/writer.py), which commits it together with the steps
it follows.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy.orm import Session

from app import crud
from app.crud.events import LR_RULE
from app.db import Database, is_transient
from app.models import TERMINAL_STATUSES
from app.series import json_float
from app.settings import Settings
from app.worker.alerts import RunWatch
from app.worker.checks import record_initial_loss
from app.worker.control import Control, apply_command, requested_lr
from app.worker.health import health_due
from app.worker.keepalive import LeaseKeeper
from app.worker.loading import load_trainer
from app.worker.lr_find import finish_payload, range_watch
from app.worker.writer import LeaseLost, RunWriter
from engine import StepRecord, Trainer
from engine.lr_find import LossWatch

log = logging.getLogger(__name__)


class RunSession:
    """Trains one run for one worker until it finishes, stops, fails, diverges or is released."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        worker_id: str,
        run_id: int,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_step: Callable[[StepRecord], None] | None = None,
        allow_release: bool = True,
    ) -> None:
        self.db, self.settings, self.worker_id, self.run_id = db, settings, worker_id, run_id
        self.should_stop, self.on_step, self.allow_release = should_stop, on_step, allow_release
        self.trainer: Trainer | None = None
        self.control = Control()
        self.writer = RunWriter(db, settings, worker_id, run_id)
        self.status = ""
        self._lr_replay: dict[int, list[float]] = {}
        self._last_poll = self._last_queue_check = 0.0
        self._next_step_at = 0.0  # monotonic time the next step is due at under a pace
        self._paused_since: float | None = None
        self.range_test: LossWatch | None = None  # a range test's early stop (app/worker/lr_find)
        self.watch: RunWatch | None = None  # alerts and autopilot (app/worker/alerts.py)

    def run(self) -> str:
        """Train until an outcome; returns it (finished, stopped, diverged, failed, released...).

        Exceptions are recorded on the run (status failed, error text, a ``failed`` event) and
        logged with their traceback; only a lost lease is left alone, as the run is not ours.
        """
        try:
            self._start()
            # A step, evaluation or checkpoint longer than the lease must not lose the run.
            every = self.settings.lease_seconds / 6
            with LeaseKeeper(self.writer.heartbeat, self.writer.heartbeat_due, every).running():
                return self._loop()
        except LeaseLost:
            log.warning("worker %s lost the lease on run %s", self.worker_id, self.run_id)
            return "lease-lost"
        except Exception as exc:
            if is_transient(exc):
                return self._hand_back(exc)
            log.exception("run %s failed", self.run_id)
            self._fail(exc)
            return "failed"

    # -- start -------------------------------------------------------------------------------

    def _start(self) -> None:
        writer = self.writer
        loaded = load_trainer(
            self.db,
            self.run_id,
            heartbeat=writer.heartbeat,
            heartbeat_every=self.settings.lease_seconds / 3,
        )
        self.trainer = loaded.trainer
        self.range_test = range_watch(self.db, self.run_id, self.trainer)
        self.watch = RunWatch.start(self.db, self.run_id, self.trainer, writer)
        self.control.autopilot = self.watch.policies if self.watch is not None else set()
        writer.best_loss, writer.best_acc = loaded.best_val_loss, loaded.best_val_acc
        self._lr_replay = loaded.lr_replay
        self.control.pace = loaded.pace
        if loaded.checkpoint_step is not None:
            writer.checkpoint_step = loaded.checkpoint_step
        self.control.paused = loaded.status == "paused"
        self.control.budget = loaded.steps_left
        self.status = "paused" if self.control.paused else "running"
        self._paused_since = time.monotonic() if self.control.idle else None
        # A run without a checkpoint gets one now (step 0 for a new run): even a run that
        # diverges within its first steps can then be forked from its start with another rate.
        with self._transaction(checkpoint=loaded.checkpoint_step is None) as s:
            crud.update_run(s, self.run_id, status=self.status, error=None)
            crud.record_worker_event(
                s,
                self.run_id,
                "started",
                self.trainer.step_count,
                {
                    "checkpoint_step": loaded.checkpoint_step,
                    "replayed": loaded.replayed,
                    "steps_left": loaded.steps_left,
                    "worker": self.worker_id,
                },
            )
            if loaded.mismatch is not None:  # this worker computes unlike the run's last one
                mismatch = loaded.mismatch
                crud.record_worker_event(
                    s,
                    self.run_id,
                    "replay_mismatch",
                    int(mismatch["step"] or 0),
                    {**mismatch, "worker": self.worker_id},
                    error=f"replayed loss {mismatch['replayed']!r} differs from the stored "
                    f"{mismatch['stored']!r} at step {mismatch['step']}: this worker computes "
                    "differently (another BLAS or thread count?)",
                )
            fresh = loaded.checkpoint_step is None  # once, at step 0 (app/worker/checks.py)
            record_initial_loss(s, self.run_id, self.trainer, fresh=fresh)

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> str:
        trainer = self._trainer
        while True:
            if self.should_stop():
                # Paused in the middle of ``step N``, the claim is kept until the lease runs out,
                # since a released paused run only comes back on a new command; the next worker
                # then takes the run over and trains the steps still owed (crud.steps_left).
                stepping = self.control.paused and not self.control.idle
                self._end(None, checkpoint=True, release=not stepping)
                return "shutdown"
            if trainer.finished or (self.range_test is not None and self.range_test.done):
                return self._finish()
            if self.writer.flush_due() or self._poll_due():
                self._sync_or_poll()
            if self.control.stop:
                return "stopped"
            if not self.control.should_step:
                if self._idle_paused():
                    return "released"
                continue
            wait = self._pace_wait()
            if wait > 0:
                time.sleep(min(wait, self.settings.command_poll))
                continue
            if self._train_one():
                return "diverged"

    def _train_one(self) -> bool:
        """One step (plus evaluation when due); True if the loss was not finite."""
        trainer = self._trainer
        for change in self._lr_replay.pop(trainer.step_count, []):
            change.apply(trainer)
        rec = trainer.step(health=health_due(trainer))  # rec.health: rows the writer stores
        row = self.writer.add(rec)
        if self.on_step is not None:
            self.on_step(rec)
        if self.range_test is not None and self.range_test.update(rec.loss):
            return False  # the range test's normal end (the loop finishes it), not a divergence
        if not math.isfinite(rec.loss):
            self._diverge(rec)
            return True
        evaluation = None
        if rec.step % trainer.cfg.eval_every == 0 or trainer.finished:
            # The same figures as trainer.evaluate(), plus the pictures (app/worker/pictures.py).
            evaluation = self.writer.pictures.evaluate(trainer)
            self.writer.add_evaluation(row, evaluation)
        if self.watch is not None and self.watch.observe(rec, evaluation, self.control.autopilot):
            self._sync()  # alerts and autopilot commands recorded and applied at this very step
            if self.control.stop:
                return False
        if self.control.count_step():
            self._settle_after_budget()
        every = self.settings.checkpoint_every_steps
        if every and rec.step % every == 0:
            self._sync(checkpoint=True)
        return False

    def _pace_wait(self) -> float:
        """Seconds until the next step is due under the run's pace (0 without one); when due,
        books the step after it. Falling behind never earns a burst: the schedule restarts from
        now, at most one interval back."""
        pace = self.control.pace
        if pace is None:
            return 0.0
        interval, now = 1.0 / pace, time.monotonic()
        if now < self._next_step_at:  # booked under a slower pace: the faster one starts now
            self._next_step_at = min(self._next_step_at, now + interval)
            return self._next_step_at - now
        self._next_step_at = max(self._next_step_at, now - interval) + interval
        return 0.0

    def _poll_due(self) -> bool:
        return time.monotonic() - self._last_poll >= self.settings.command_poll

    def _sync_or_poll(self) -> None:
        """With rows to write, one transaction flushes them and applies pending commands;
        without (paused), a read finds out first whether there is anything to write at all."""
        if self.writer.buffer:
            self._sync()
            return
        self._last_poll = time.monotonic()
        with self.db.read() as s:
            if not crud.pending_commands(s, self.run_id):
                return
        self._sync()

    def _sync(self, *, checkpoint: bool = False) -> None:
        """Flush rows and apply pending commands in id order, at the current step, atomically."""
        self._last_poll = time.monotonic()
        trainer = self._trainer
        with self._transaction(checkpoint=checkpoint or self.writer.checkpoint_due()) as s:
            if self.watch is not None:
                self.watch.write(s, self.writer)  # before the read: its commands apply now
            commands = crud.pending_commands(s, self.run_id)
            for ev in commands:
                if self.control.stop:
                    crud.mark_applied(s, ev.id, trainer.step_count, "run already stopped")
                    continue
                payload = crud.event_payload(ev)
                if ev.type == "set_lr":
                    error, recorded = self._apply_set_lr(s, payload)
                else:
                    error, recorded = apply_command(self.control, trainer, ev.type, payload), None
                crud.mark_applied(s, ev.id, trainer.step_count, error, recorded)
                log.info(
                    "run %s: %s %s at step %s", self.run_id, ev.type, payload, trainer.step_count
                )
            if commands:
                self._settle_status(s)

    def _apply_set_lr(
        self, s: Session, payload: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any] | None]:
        """Apply a set_lr after checkpointing the state before it, at this very step, so going
        back to that checkpoint undoes the change; returns (error, the payload to record).

        The payload records the checkpoint (``checkpoint_id``, None when the rate was already
        the one asked for, which changes nothing) and the rule applied (``lr_rule: "exact"``),
        which crash replay follows (app/worker/loading.py).
        """
        trainer = self._trainer
        try:
            lr = requested_lr(payload)
        except (KeyError, TypeError, ValueError) as exc:
            return f"set_lr rejected: {exc}", None
        checkpoint_id = None
        if lr != trainer.current_lr():
            checkpoint_id = self.writer.write_checkpoint(s, trainer)
        error = apply_command(self.control, trainer, "set_lr", payload)
        if error is not None:
            return error, None
        return None, {**payload, LR_RULE: "exact", "checkpoint_id": checkpoint_id}

    def _settle_status(self, s: Session) -> None:
        """Bring the stored status in line with the control state after commands."""
        control = self.control
        new = "stopped" if control.stop else "paused" if control.paused else "running"
        if control.stop or control.checkpoint:
            self.writer.checkpoint_requested = True
            control.checkpoint = False
        if new != self.status:
            self.status = new
            crud.update_run(s, self.run_id, status=new)
            if new == "stopped":
                self.writer.release_requested = True
                crud.close_pending_commands(s, self.run_id, self._trainer.step_count, new)
        if control.idle:
            self._paused_since = self._paused_since or time.monotonic()
        else:
            self._paused_since = None

    def _settle_after_budget(self) -> None:
        """A ``step N`` budget ran out: checkpoint and be paused (an event if we were running)."""
        with self._transaction(checkpoint=True) as s:
            if self.status != "paused":
                self.status = "paused"
                crud.update_run(s, self.run_id, status="paused")
                crud.record_worker_event(
                    s, self.run_id, "paused", self._trainer.step_count, {"reason": "step"}
                )
        self._paused_since = time.monotonic()

    def _idle_paused(self) -> bool:
        """Paused: keep the lease, poll, and maybe hand the run back; True once released."""
        now = time.monotonic()
        if self.writer.buffer or self.writer.heartbeat_due():
            self._sync()
        since = self._paused_since
        if (
            self.allow_release
            and since is not None
            and now - since >= self.settings.release_paused_after
            and now - self._last_queue_check >= 1.0
        ):
            self._last_queue_check = now
            with self.db.read() as s:
                queued = crud.has_queued_runs(s)
            if queued:
                log.info("run %s paused and runs are queued: releasing it", self.run_id)
                self._end(None, checkpoint=True)
                return True
        time.sleep(self.settings.command_poll)
        return False

    # -- endings -----------------------------------------------------------------------------

    def _finish(self) -> str:
        payload = {"best_val_loss": self.writer.best_loss, "best_val_acc": self.writer.best_acc}
        payload.update(finish_payload(self.range_test))
        self._end("finished", checkpoint=True, event=("finished", payload))
        return "finished"

    def _diverge(self, rec: StepRecord) -> None:
        """A non-finite loss: record the row and stop; the last good checkpoint stays the latest."""
        error = f"non-finite loss ({rec.loss}) at step {rec.step}"
        log.warning("run %s diverged: %s", self.run_id, error)
        self._end("diverged", error=error, event=("diverged", {"loss": json_float(rec.loss)}))

    def _end(
        self,
        status: str | None,
        *,
        checkpoint: bool = False,
        error: str | None = None,
        event: tuple[str, dict[str, Any]] | None = None,
        release: bool = True,
    ) -> None:
        """Commit the last rows, optionally a checkpoint and a final status, and release; a
        final status closes the commands still pending (no worker will apply them)."""
        with self._transaction(checkpoint=checkpoint, release=release) as s:
            if status is not None:
                self.status = status
                crud.update_run(s, self.run_id, status=status, error=error)
                if status in TERMINAL_STATUSES:
                    crud.close_pending_commands(s, self.run_id, self._trainer.step_count, status)
            if event is not None:
                crud.record_worker_event(
                    s, self.run_id, event[0], self._trainer.step_count, event[1], error=error
                )

    def _hand_back(self, exc: BaseException) -> str:
        """A transient database error (locked, deadlock, lost connection) is not the run's
        fault: hand the run back uncommitted work and all, as a crash would, so it resumes from
        its committed step (the next claim replays from the last checkpoint, every step once).
        If even the release fails, the lease runs out and the run comes back the same way."""
        log.warning("run %s: transient database error, handing it back: %s", self.run_id, exc)
        try:
            self.writer.release()
        except Exception:
            log.warning("could not release run %s; its lease will run out", self.run_id)
        return "retry"

    def _fail(self, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        step = self.trainer.step_count if self.trainer is not None else 0
        try:
            self.writer.record_failure(error, step)
        except Exception:
            log.exception("could not record the failure of run %s", self.run_id)

    # -- writes ------------------------------------------------------------------------------

    @property
    def _trainer(self) -> Trainer:
        assert self.trainer is not None, "trainer used before load"
        return self.trainer

    def _transaction(
        self, *, checkpoint: bool = False, release: bool = False
    ) -> AbstractContextManager[Session]:
        return self.writer.transaction(self._trainer, checkpoint=checkpoint, release=release)
