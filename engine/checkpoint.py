"""What a Trainer's state_dict holds, and how it is put back.

Kept apart from trainer.py so the list of "everything" is in one short place: parameters, BN
running statistics, optimizer moments and step counter, base lr, schedule position (the step
count), data order (this epoch's permutation and the batch cursor) and the RNG state.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from engine.trainer import Trainer

log = logging.getLogger(__name__)

__all__ = ["load_trainer_state", "trainer_state"]

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
        "base_lr": t.lr,
        "step_count": t.step_count,
        "data": {
            "epoch_index": t._epoch_index,
            "cursor": t._cursor,
            "perm": t._perm.copy(),
            "n_train": int(t.data.x_train.shape[0]),
        },
        "rng": t.rng.bit_generator.state,
    }


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
    t.set_lr(float(state["base_lr"]))
    t.step_count = int(state["step_count"])
    t._epoch_index = int(data["epoch_index"])
    t._cursor = int(data["cursor"])
    t._perm = np.asarray(data["perm"], dtype=np.int64).copy()
    t.rng.bit_generator.state = state["rng"]
