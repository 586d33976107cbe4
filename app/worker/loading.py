"""Rebuilding a run's Trainer exactly where its committed history ends.

Load the latest checkpoint at or before the committed step, re-apply the ``set_lr`` commands
recorded from that checkpoint's step on at their recorded steps, and replay the steps between the
checkpoint and the committed step. The engine is deterministic (with BLAS threads pinned), so the
replayed steps are the ones already stored, and the next step is the first new one: no step is lost
and none is counted twice. A ``set_lr`` is re-applied under the rule it was applied with: an exact
rate (``lr_rule: "exact"`` in its payload) or, recorded by an older worker, a base rate.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from app import crud
from app.crud.events import LR_RULE
from app.db import Database
from app.models import Event
from app.series import COLUMNS
from app.worker.keepalive import LeaseKeeper
from engine import RunConfig, Trainer, state_from_bytes

log = logging.getLogger(__name__)

HEARTBEAT_EVERY_STEPS = 200
LOSS = COLUMNS.index("train_loss")


@dataclass(frozen=True, slots=True)
class LrChange:
    """A recorded ``set_lr``: ``exact`` (the next step trains at ``lr``) or an older base rate."""

    lr: float
    exact: bool

    @classmethod
    def of(cls, ev: Event) -> LrChange:
        payload = crud.event_payload(ev)
        return cls(float(payload["lr"]), payload.get(LR_RULE) == "exact")

    def apply(self, trainer: Trainer) -> None:
        if self.exact:
            trainer.set_lr(self.lr)
        else:
            trainer.set_lr_base(self.lr)


@dataclass
class LoadedRun:
    """A trainer positioned at the run's committed step, plus what the session needs to go on."""

    trainer: Trainer
    status: str
    checkpoint_step: int | None
    replayed: int
    best_val_loss: float | None
    best_val_acc: float | None
    lr_replay: dict[int, list[LrChange]] = field(default_factory=dict)
    pace: float | None = None
    steps_left: int | None = None
    mismatch: dict[str, float | int | None] | None = None
    """The first replayed step whose loss differs from the stored one (see ``_replay``)."""


def load_trainer(
    db: Database, run_id: int, *, heartbeat: Callable[[], None], heartbeat_every: float = 5.0
) -> LoadedRun:
    """Build the run's Trainer and bring it to the committed step (see the module docstring).

    Building the Trainer reads the dataset, which for a large CSV can outlast the lease, so the
    lease is renewed from a helper thread meanwhile (``heartbeat_every`` seconds).
    """
    with db.read() as s:
        run = crud.get_run(s, run_id)
        if run is None:
            raise LookupError(f"run {run_id} does not exist")
        config, committed, status = crud.run_config(run), run.step, run.status
        best_loss, best_acc = run.best_val_loss, run.best_val_acc
        pace = crud.current_pace(s, run_id)
        steps_left = crud.steps_left(s, run_id, committed)
    with LeaseKeeper(heartbeat, lambda: True, heartbeat_every).running():
        trainer = Trainer(RunConfig(**config))
    heartbeat()
    with db.read() as s:
        ckpt = crud.latest_checkpoint(s, run_id, at_or_before=committed)
        ckpt_step = ckpt.step if ckpt is not None else None
        state = ckpt.state if ckpt is not None else None
        lrs = [
            (ev.step, LrChange.of(ev))
            for ev in crud.applied_set_lr_since(s, run_id, ckpt_step or 0)
        ]
    if state is not None:
        trainer.load_state_dict(state_from_bytes(state))
    lr_replay: dict[int, list[LrChange]] = {}
    for step, change in lrs:
        if step is not None:
            lr_replay.setdefault(step, []).append(change)
    with db.read() as s:
        stored = {
            row[0]: row[LOSS]
            for row in crud.metric_rows(s, run_id, after=ckpt_step or 0, before=committed + 1)
        }
    replayed, mismatch = _replay(trainer, committed, lr_replay, heartbeat, stored)
    if replayed:
        log.info("run %s: replayed %d steps after checkpoint %s", run_id, replayed, ckpt_step)
    if mismatch is not None:
        log.error("run %s: replay differs from the stored rows: %s", run_id, mismatch)
    return LoadedRun(
        trainer,
        status,
        ckpt_step,
        replayed,
        best_loss,
        best_acc,
        lr_replay,
        pace,
        steps_left,
        mismatch,
    )


def _replay(
    trainer: Trainer,
    committed: int,
    lr_replay: dict[int, list[LrChange]],
    heartbeat: Callable[[], None],
    stored: dict[int, float | None],
) -> tuple[int, dict[str, float | int | None] | None]:
    """Step from the checkpoint to the committed step; the rows exist already, so none are kept.

    Each replayed loss is compared with the stored one: the engine is deterministic for a fixed
    BLAS and thread count, so a difference means this worker computes differently from the one
    that trained the run (another BLAS, another thread count) and its new steps would silently
    continue another trajectory. The first difference is returned, to be recorded on the run.
    """
    replayed, mismatch = 0, None
    while True:
        for change in lr_replay.pop(trainer.step_count, []):
            change.apply(trainer)
        if trainer.step_count >= committed or trainer.finished:
            return replayed, mismatch
        rec = trainer.step()
        replayed += 1
        want = stored.get(rec.step)
        if mismatch is None and want is not None and math.isfinite(rec.loss) and rec.loss != want:
            mismatch = {"step": rec.step, "stored": want, "replayed": rec.loss}
        if replayed % HEARTBEAT_EVERY_STEPS == 0:
            heartbeat()
