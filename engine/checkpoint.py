"""What a Trainer's state_dict holds, and how it is put back.

Kept apart from trainer.py so the list of "everything" is in one short place: parameters, BN
running statistics, optimizer moments and step counter, the learning-rate anchor, schedule
position (the step count), data order (this epoch's permutation and the batch cursor) and the RNG
state.

The learning rate is stored as the anchor ``lr_anchor = {"step": t0, "lr": X}`` (see
engine/schedules.py). States written before anchors existed hold only ``base_lr`` (b, scaled by
the schedule from the start), which is the anchor (0, b): they load and mean what they meant.
``base_lr`` is still written (the rate at factor 1, or the anchor's rate where there is none), so
an older reader of a new state gets the same rates wherever the schedule's factor was not 0.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.schedules import LrAnchor

if TYPE_CHECKING:
    from engine.trainer import Trainer

log = logging.getLogger(__name__)

__all__ = ["load_trainer_state", "lr_anchor_of", "trainer_state"]

STATE_VERSION = 1


def trainer_state(t: Trainer) -> dict[str, Any]:
    """A nested dict of array copies and JSON-able values (see engine.serialize)."""
    opt = {k: v.copy() for k, v in t.opt_state.items() if k not in ("t", "scratch")}
    return {
        "version": STATE_VERSION,
        "config": t.cfg.model_dump(mode="json"),
        "params": {k: v.copy() for k, v in t.model.params.items()},
        "running": {k: v.copy() for k, v in t.model.running.items()},
        "optim": {"name": t.cfg.optimizer, "t": int(t.opt_state["t"]), "slots": opt},
        "base_lr": t.lr_base if t.lr_base is not None else t.lr_anchor.lr,
        "lr_anchor": {"step": t.lr_anchor.step, "lr": t.lr_anchor.lr},
        "step_count": t.step_count,
        "data": {
            "epoch_index": t._epoch_index,
            "cursor": t._cursor,
            "perm": t._perm.copy(),
            "n_train": int(t.data.x_train.shape[0]),
        },
        "rng": t.rng.bit_generator.state,
    }


def lr_anchor_of(state: dict[str, Any]) -> LrAnchor:
    """The learning-rate anchor a state holds; (0, base_lr) for a state older than anchors."""
    anchor = state.get("lr_anchor")
    if isinstance(anchor, dict):
        return LrAnchor(int(anchor["step"]), float(anchor["lr"]))
    return LrAnchor(0, float(state["base_lr"]))


def _copy_into(dest: dict[str, np.ndarray], src: dict[str, Any], what: str) -> None:
    """Copy arrays into the existing ones (the model's params are views into one vector)."""
    if set(dest) != set(src):
        raise ValueError(f"state {what} has keys {sorted(src)}, this model has {sorted(dest)}")
    for key, array in dest.items():
        value = np.asarray(src[key])
        if value.shape != array.shape:
            raise ValueError(f"state {what}[{key}] has shape {value.shape}, expected {array.shape}")
        array[...] = value


def load_trainer_state(t: Trainer, state: dict[str, Any]) -> None:
    """Restore state into t. Raises ValueError when the shapes or the dataset size differ.

    A state saved under another optimizer (a fork that switches optimizer) restores everything
    but the optimizer's moments, which start from zero.
    """
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported state version {state.get('version')!r}")
    data = state["data"]
    if int(data["n_train"]) != t.data.x_train.shape[0]:
        raise ValueError(
            f"state was saved on {data['n_train']} training rows, this run has "
            f"{t.data.x_train.shape[0]}"
        )
    _copy_into(t.model.params, state["params"], "params")
    _copy_into(t.model.running, state.get("running") or {}, "running")
    optim = state["optim"]
    if optim["name"] == t.cfg.optimizer:
        slots = {k: v for k, v in t.opt_state.items() if k not in ("t", "scratch")}
        _copy_into(slots, optim.get("slots") or {}, "optim")
        t.opt_state["t"] = int(optim["t"])
    else:
        log.info("optimizer changed from %s to %s: fresh moments", optim["name"], t.cfg.optimizer)
    anchor = lr_anchor_of(state)
    if not (math.isfinite(anchor.lr) and anchor.lr > 0.0 and anchor.step >= 0):
        raise ValueError(f"state holds an invalid learning rate anchor {anchor}")
    t.lr_anchor = anchor
    t.step_count = int(state["step_count"])
    t._epoch_index = int(data["epoch_index"])
    t._cursor = int(data["cursor"])
    t._perm = np.asarray(data["perm"], dtype=np.int64).copy()
    t.rng.bit_generator.state = state["rng"]
