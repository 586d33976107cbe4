"""The worker's side of alerts and autopilot: feed the Watch, write what it finds.

``RunWatch.start`` builds the run's ``Watch`` (app/worker/watch.py) and brings it to the committed
step by feeding it the stored rows again, silently: every evaluation row of the lineage, the
autopilot switches at the steps they applied, the last training losses, the last health samples;
the step each detector last fired at comes from the stored alerts. A worker that crashed and
restarted therefore neither fires again what was fired nor forgets a policy or its patience.

The session calls ``stepped`` after each step and ``evaluated`` after each evaluation; when
either found something (``due``), the session syncs at once, and ``write`` records the alerts
and queues the autopilot's commands at the top of that transaction, which also holds the rows of
the step they were noticed at and applies the queued commands, at that very step. No watch on a
range test (its loss explodes on purpose) or an overfit check (``train_subset``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from app import crud
from app.crud import alerts as crud_alerts
from app.db import Database
from app.models import Event
from app.series import COLUMNS, LR, STEP, TRAIN_LOSS, VAL_LOSS
from app.worker.watch import (
    DECAYED_FACTOR,
    GRAD_HISTORY,
    SPIKE_SHORT,
    SPIKE_WINDOW,
    Finding,
    Order,
    Outcome,
    Watch,
    fmt,
)
from engine import StepRecord, Trainer
from engine.schedules import Schedule

if TYPE_CHECKING:
    from app.worker.writer import RunWriter

_TRAIN_EVAL = COLUMNS.index("train_eval_loss") if "train_eval_loss" in COLUMNS else None


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


def watched(trainer: Trainer) -> bool:
    """A range test or an overfit check is not watched (see the module docstring)."""
    return trainer.cfg.schedule != "range_test" and trainer.cfg.train_subset is None


def decay_of(trainer: Trainer) -> Schedule:
    """The run's schedule, to tell where it has decayed the rate on purpose."""
    return Schedule.of(trainer.cfg, trainer.total_steps)


class RunWatch:
    """One run's Watch plus what it found and has not written yet."""

    def __init__(self, run_id: int, trainer: Trainer, watch: Watch) -> None:
        self.run_id, self.trainer, self.watch = run_id, trainer, watch
        self.findings: list[Finding] = []
        self.orders: list[Order] = []
        self.checkpoint = False
        self.keep_checkpoint: int | None = None  # early stopping's best checkpoint (its id)

    # -- building ----------------------------------------------------------------------------

    @classmethod
    def start(
        cls, db: Database, run_id: int, trainer: Trainer, writer: RunWriter
    ) -> RunWatch | None:
        """The run's watch at the trainer's (committed) step; None for runs not watched. The
        writer is told which checkpoint early stopping keeps."""
        if not watched(trainer):
            return None
        schedule = decay_of(trainer)
        watch = Watch(lambda step: schedule.factor(step) < DECAYED_FACTOR)
        committed = trainer.step_count
        with db.read() as s:
            switches = crud_alerts.autopilot_switches(s, run_id)
            evals = crud_alerts.evaluation_rows(s, run_id, upto=committed)
            first = max(committed - SPIKE_WINDOW - SPIKE_SHORT, 0)
            recent = crud.metric_rows(s, run_id, after=first, before=committed + 1)
            health = crud_alerts.health_samples(s, run_id, upto=committed, samples=GRAD_HISTORY)
            fires = crud_alerts.alert_fires(crud_alerts.alert_events(s, run_id))
        pending = list(switches)
        for row in evals:  # a switch applied at step j acts on the evaluations after step j
            step = int(row[STEP])
            while pending and pending[0][0] < step:
                _, policy, on = pending.pop(0)
                watch.switch(policy, on)
            train_eval = row[_TRAIN_EVAL] if _TRAIN_EVAL is not None else None
            lr = _float(row[LR])
            watch.evaluated(step, _float(row[VAL_LOSS]), _opt(train_eval), lr)
        for _, policy, on in pending:
            watch.switch(policy, on)
        first_row = int(recent[0][STEP]) if recent else committed + 1
        samples = {step: [_stats(h) for h in layers] for step, layers in health}
        for step, stats in sorted(samples.items()):  # older samples: the medians, the edges
            if step < first_row:
                watch.divergence.grads.observe(stats)
                watch.updates.update(step, stats, watch.decayed(step))
        for row in recent:  # the last steps, as they were fed (what they found was written)
            step = int(row[STEP])
            watch.step(step, _float(row[TRAIN_LOSS]), samples.get(step))
        for detector, edge in watch.edges.items():
            if detector in fires:
                edge.last_fire = max(edge.last_fire or fires[detector], fires[detector])
        self = cls(run_id, trainer, watch)
        stopping = watch.policies.get("early_stopping")
        if stopping is not None and stopping.best_step is not None:
            with db.read() as s:
                self.keep_checkpoint = crud_alerts.checkpoint_id_at(s, run_id, stopping.best_step)
        writer.keep_checkpoints = {self.keep_checkpoint} if self.keep_checkpoint else set()
        return self

    # -- feeding -----------------------------------------------------------------------------

    def sync_policies(self, on: set[str]) -> None:
        """Switch the watch's policies to the control's (applied autopilot commands)."""
        for policy in set(self.watch.policies) | on:
            self.watch.switch(policy, policy in on)

    @property
    def policies(self) -> set[str]:
        """The policies on (what a restarted worker's control starts from)."""
        return set(self.watch.policies)

    def observe(
        self, rec: StepRecord, evaluation: dict[str, float] | None, policies: set[str]
    ) -> bool:
        """Feed a step (and its evaluation, if one ran) with the policies now on; True when
        there is something to write at this step (the session then syncs at once)."""
        self.sync_policies(policies)
        self.stepped(rec)
        if evaluation is not None:
            self.evaluated(rec.step, evaluation)
        return self.due

    def stepped(self, rec: StepRecord) -> None:
        self._take(self.watch.step(rec.step, rec.loss, getattr(rec, "health", None)))

    def evaluated(self, step: int, result: dict[str, float]) -> None:
        train_eval = result.get("train_eval_loss")
        lr = self.trainer.current_lr()
        self._take(self.watch.evaluated(step, result["loss"], _opt(train_eval), lr))

    def _take(self, out: Outcome) -> None:
        self.findings.extend(out.findings)
        self.orders.extend(out.orders)
        self.checkpoint = self.checkpoint or out.checkpoint

    @property
    def due(self) -> bool:
        """Something to write at this step."""
        return bool(self.findings or self.orders or self.checkpoint)

    # -- writing -----------------------------------------------------------------------------

    def write(self, s: Session, writer: RunWriter) -> None:
        """Record the alerts and queue the orders (in the caller's transaction, before it reads
        the pending commands, so they apply at this step); with early stopping on, a new best
        validation loss gets a checkpoint of this step, which thinning keeps (the best one)."""
        lr = self.trainer.current_lr()
        for finding in self.findings:
            action = resolve(s, self.run_id, finding, lr)
            payload = {
                "kind": finding.kind,
                "detector": finding.detector,
                "message": finding.message,
                "action": action,
            }
            crud.record_worker_event(s, self.run_id, crud_alerts.ALERT, finding.step, payload)
        for order in self.orders:
            queue_order(s, self.run_id, order)
        if self.checkpoint:
            self.keep_checkpoint = writer.write_checkpoint(s, self.trainer)
        writer.keep_checkpoints = {self.keep_checkpoint} if self.keep_checkpoint else set()
        self.findings, self.orders, self.checkpoint = [], [], False


def _opt(x: Any) -> float | None:
    return None if x is None else float(x)


def _stats(h: Any) -> _Stats:
    return _Stats(h.layer, _float(h.grad_norm), _float(h.update_ratio))


class _Stats:
    """A stored health row as the detectors read it."""

    __slots__ = ("grad_norm", "layer", "update_ratio")

    def __init__(self, layer: int, grad_norm: float, update_ratio: float) -> None:
        self.layer, self.grad_norm, self.update_ratio = layer, grad_norm, update_ratio


def rate(lr: float) -> float:
    """A suggested rate, three significant digits (it is read and typed by people)."""
    return float(f"{lr:.3g}")


def _factor_words(factor: float) -> str:
    return f"multiply lr by {fmt(factor)}" if factor >= 1 else f"divide lr by {fmt(1 / factor)}"


def resolve(s: Session, run_id: int, finding: Finding, lr: float) -> dict[str, Any]:
    """The alert's one-click action: a rate change, or going back to a checkpoint at or before
    the suggested step (``fork``; a set_lr when no such checkpoint exists)."""
    remedy = finding.remedy
    if remedy.type in ("pause", "stop"):
        return {"type": remedy.type, "label": remedy.type}
    factor = remedy.factor or 1.0
    new = rate(lr * factor)
    if remedy.type == "fork" and remedy.step is not None:
        at = crud.checkpoint_step_at_or_before(s, run_id, remedy.step)
        if at is not None:
            label = f"go back to step {at} with lr {fmt(new)}"
            return {"type": "fork", "step": at, "lr": new, "label": label}
    return {"type": "set_lr", "lr": new, "label": f"{_factor_words(factor)} (to {fmt(new)})"}


def queue_order(s: Session, run_id: int, order: Order) -> Event:
    """An autopilot order as an ordinary pending command (source ``autopilot``), which the
    session's command path applies in this same transaction."""
    payload: dict[str, Any] = {"policy": order.policy, "reason": order.reason}
    if order.lr is not None:
        payload["lr"] = order.lr  # exactly factor x rate, as Keras does
    if order.best_step is not None:
        payload["best_step"] = order.best_step
    ev = crud.record_command(s, run_id, order.type, payload)
    ev.source = "autopilot"
    s.flush()
    return ev


def policies_on(switches: list[tuple[int, str, bool]]) -> set[str]:
    """The policies on after these switches (for a test or a page)."""
    on: set[str] = set()
    for _, policy, flag in switches:
        (on.add if flag else on.discard)(policy)
    return on
