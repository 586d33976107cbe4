"""The learning rate a fork goes on at, read from the checkpoint it starts from.

A fork continues from a checkpoint at step k. Its rate is one honest number, as everywhere
(engine/schedules.py): the child's next step trains at the rate the parent's next step would have
used at k, unless a new ``lr`` is given, and the child's schedule goes on relative to it. When
the child's schedule differs from the parent's (other schedule parameters, or a new length: "train
N more steps" stretches a cosine), the checkpoint's anchor alone would land the child on another
rate, so the parent's rate is queued as a ``set_lr`` at the fork step (it shows on the chart).
Where the parent's schedule has run out (the factor is 0 at k: the end of a cosine with floor 0),
the child goes on at the rate the parent's step k trained at instead: a rate of 0 trains nothing.
"""

from __future__ import annotations

import math

from sqlalchemy.orm import Session

from app.crud.checkpoints import latest_checkpoint
from app.crud.events import record_command
from app.crud.runs import run_config
from app.models import Run
from engine import RunConfig, state_from_bytes
from engine.checkpoint import lr_anchor_of
from engine.schedules import Schedule
from engine.trainer import steps_per_epoch


def _total_steps(cfg: RunConfig, n_train: int) -> int:
    """The run's length, as the Trainer computes it (max_steps, else epochs x batches)."""
    return cfg.max_steps or cfg.epochs * steps_per_epoch(n_train, cfg.batch_size)


def settle_fork_rate(session: Session, parent: Run, child: Run, *, new_lr: float | None) -> None:
    """Set the child's ``lr`` and ``total_steps`` and, when its schedule differs from the
    parent's and no ``new_lr`` was given, queue the parent's rate as a ``set_lr`` on the child.
    ``new_lr`` (already queued by ``fork_run``) is the rate of the child's next step."""
    if child.parent_step is None:
        return
    # The parent's checkpoint the child starts from (its copy holds the same bytes).
    ckpt = latest_checkpoint(session, parent.id, at_or_before=child.parent_step)
    if ckpt is None:
        return
    state = state_from_bytes(ckpt.state)
    anchor = lr_anchor_of(state)
    n_train = int(state["data"]["n_train"])
    k = child.parent_step
    parent_cfg, child_cfg = RunConfig(**run_config(parent)), RunConfig(**run_config(child))
    theirs = Schedule.of(parent_cfg, _total_steps(parent_cfg, n_train))
    ours = Schedule.of(child_cfg, _total_steps(child_cfg, n_train))
    child.total_steps = ours.total
    if new_lr is not None:
        child.lr = new_lr
        return
    rate = ours.rate(anchor, k)
    parent_rate = theirs.rate(anchor, k)
    if ours == theirs or rate == parent_rate:
        child.lr = rate
        return
    if not parent_rate > 0.0:  # the parent's schedule ran out: go on at its last step's rate
        parent_rate = theirs.rate(anchor, max(k - 1, anchor.step))
    if parent_rate > 0.0 and math.isfinite(parent_rate):
        record_command(session, child.id, "set_lr", {"lr": parent_rate})
        rate = parent_rate
    child.lr = rate
