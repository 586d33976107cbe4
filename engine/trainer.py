"""Trainer: one `step()` per mini-batch; the caller (worker, CLI, test) owns the loop.

All randomness of a run (weight init, epoch shuffles, dropout masks) comes from one
np.random.Generator seeded with cfg.seed, and its state is part of `state_dict()`, so a run saved
at step k and loaded into a fresh Trainer continues with exactly the same losses.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from engine.checkpoint import load_trainer_state, trainer_state
from engine.config import RunConfig
from engine.data import Dataset, load_dataset
from engine.health import LayerHealth, measure, snapshot
from engine.model import MLP, ModelSpec
from engine.optim import OPTIMIZERS, Update, init_state
from engine.schedules import LrAnchor, Schedule

log = logging.getLogger(__name__)

Array = np.ndarray

__all__ = ["StepRecord", "Trainer", "steps_per_epoch", "train_step"]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """What one step reports. epoch is fractional: steps completed / steps per epoch.

    ``health`` holds every layer's statistics (engine/health.py) when the step was asked to
    measure them (``step(health=True)``), None otherwise.
    """

    step: int
    epoch: float
    lr: float
    loss: float
    acc: float
    health: tuple[LayerHealth, ...] | None = None


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch. A trailing remainder of one sample joins the previous batch (so a BN
    layer never sees a batch of 1); a remainder of two or more is a batch of its own."""
    full, rem = divmod(n, batch_size)
    return full + (1 if rem >= 2 or full == 0 else 0)


def train_step(
    model: MLP,
    update: Update,
    opt_state: dict[str, Any],
    x: Array,
    y: Array,
    *,
    lr: float,
    weight_decay: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[float, float]:
    """Forward, backward, L2 on the weight matrices (model.theta[:n_weights]), update.

    Returns (loss, accuracy) of the batch before the update. Overflow in a diverging run yields
    nan/inf values rather than warnings or exceptions.
    """
    loss, acc = model.loss_and_grad(x, y, rng=rng)
    with np.errstate(all="ignore"):
        if weight_decay:
            nw = model.n_weights
            scratch = opt_state["scratch"][:nw]
            np.multiply(model.theta[:nw], weight_decay, out=scratch)
            model.grad[:nw] += scratch
        update(model.theta, model.grad, opt_state, lr=lr)
    return loss, acc


def _hyper(cfg: RunConfig) -> dict[str, float]:
    return {
        "sgd": {},
        "momentum": {"mu": cfg.momentum},
        "rmsprop": {"rho": cfg.rms_decay, "eps": cfg.eps},
        "adam": {"beta1": cfg.beta1, "beta2": cfg.beta2, "eps": cfg.eps},
    }[cfg.optimizer]


def model_spec(cfg: RunConfig, n_in: int, n_out: int) -> ModelSpec:
    """The network shape a config asks for, on data with n_in features and n_out classes."""
    return ModelSpec(
        n_in=n_in,
        n_out=n_out,
        hidden=tuple(cfg.hidden),
        activation=cfg.activation,
        batchnorm=cfg.batchnorm,
        bn_position=cfg.bn_position,
        bn_momentum=cfg.bn_momentum,
        bn_eps=cfg.bn_eps,
        dropout=cfg.dropout,
        label_smoothing=cfg.label_smoothing,
        init=cfg.init,
        dtype=cfg.dtype,
    )


def _checked_lr(lr: float) -> float:
    lr = float(lr)
    if not (math.isfinite(lr) and lr > 0.0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    return lr


class Trainer:
    """A run in progress: data, model, optimizer state, schedule position, RNG, data cursor."""

    def __init__(self, cfg: RunConfig, *, data: Dataset | None = None) -> None:
        """Load and check the data (ValueError on bad data), then build and initialize the model."""
        self.cfg = cfg
        self.data = data if data is not None else load_dataset(cfg)
        if self.data.x_train.shape[0] < cfg.batch_size:
            raise ValueError(
                f"{self.data.x_train.shape[0]} training rows is fewer than "
                f"batch_size={cfg.batch_size}"
            )
        self.rng = np.random.default_rng(cfg.seed)
        self.model = MLP(model_spec(cfg, self.data.n_features, self.data.n_classes), self.rng)
        self._update = partial(OPTIMIZERS[cfg.optimizer], **_hyper(cfg))
        self.opt_state = init_state(cfg.optimizer, self.model.theta)
        self.step_count = 0
        n = self.data.x_train.shape[0]
        self.steps_per_epoch = steps_per_epoch(n, cfg.batch_size)
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.schedule = Schedule.of(cfg, self.total_steps)
        self.lr_anchor = LrAnchor(0, float(cfg.lr))
        self._epoch_index = 0
        self._cursor = 0
        self._perm = np.zeros(0, dtype=np.int64)
        log.info(
            "run: %s, sizes %s, %d steps (%d per epoch), %s",
            self.data.name,
            self.model.spec.sizes,
            self.total_steps,
            self.steps_per_epoch,
            cfg.optimizer,
        )

    @property
    def classes(self) -> tuple[Any, ...]:
        """Original label of each class index: classes[k] was mapped to k."""
        return self.data.classes

    @property
    def finished(self) -> bool:
        return self.step_count >= self.total_steps

    @property
    def lr(self) -> float:
        """The rate the next step trains at (the same as ``current_lr()``)."""
        return self.current_lr()

    @property
    def lr_base(self) -> float | None:
        """The rate at schedule factor 1 (lr = lr_base x lr_factor); None when the rate is not of
        that form (set where the schedule's factor was 0, see engine/schedules.py)."""
        return self.schedule.base(self.lr_anchor)

    @property
    def lr_factor(self) -> float:
        """The schedule's factor at the next step."""
        return self.schedule.factor(self.step_count)

    def set_lr(self, lr: float) -> None:
        """The next step trains at exactly ``lr``; the schedule then continues relative to it.

        Setting the rate the next step would use anyway changes nothing (the anchor stays), so
        applying an unchanged value is a true no-op.
        """
        lr = _checked_lr(lr)
        if lr != self.current_lr():
            self.lr_anchor = LrAnchor(self.step_count, lr)

    def set_lr_base(self, base: float) -> None:
        """The rule before anchors: ``base`` x the schedule's factor, from the start of the run.

        Kept for what older versions recorded (a checkpoint's ``base_lr``, a ``set_lr`` applied
        by an older worker), which must go on meaning what it meant.
        """
        self.lr_anchor = LrAnchor(0, _checked_lr(base))

    def current_lr(self) -> float:
        """The rate the next step will use (see engine/schedules.py for the anchor rule)."""
        return self.schedule.rate(self.lr_anchor, self.step_count)

    def _next_indices(self) -> Array:
        """Row indices of the next mini-batch; reshuffles (run RNG) when an epoch starts."""
        n, bs = self.data.x_train.shape[0], self.cfg.batch_size
        if self._cursor == 0:
            self._perm = self.rng.permutation(n)
        start = self._cursor * bs
        last = self._cursor == self.steps_per_epoch - 1
        idx = self._perm[start:] if last else self._perm[start : start + bs]
        self._cursor += 1
        if self._cursor == self.steps_per_epoch:
            self._cursor = 0
            self._epoch_index += 1
        return idx

    def _next_batch(self) -> tuple[Array, Array]:
        """The next mini-batch, gathered into a buffer the model owns (no per-step allocation)."""
        idx = self._next_indices()
        x = self.model._buf("batch_x", (len(idx), self.data.n_features))
        np.take(self.data.x_train, idx, axis=0, out=x)
        return x, self.data.y_train[idx]

    def step(self, *, health: bool = False) -> StepRecord:
        """Train on one mini-batch; returns the batch's loss and accuracy before the update.

        With ``health``, the record also carries each layer's statistics (engine/health.py),
        read from what the step computed anyway plus a copy of the weight matrices: the step
        trains exactly as it would without it.
        """
        if self.finished:
            raise RuntimeError(f"run finished after {self.total_steps} steps")
        lr = self.current_lr()
        x, y = self._next_batch()
        before = snapshot(self.model) if health else None
        loss, acc = train_step(
            self.model,
            self._update,
            self.opt_state,
            x,
            y,
            lr=lr,
            weight_decay=self.cfg.weight_decay,
            rng=self.rng,
        )
        self.step_count += 1
        return StepRecord(
            step=self.step_count,
            epoch=self.step_count / self.steps_per_epoch,
            lr=lr,
            loss=loss,
            acc=acc,
            health=measure(self.model, before, x.shape[0]) if before is not None else None,
        )

    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy on the validation split, in evaluation mode."""
        loss, acc = self.model.evaluate(self.data.x_val, self.data.y_val)
        return {"loss": loss, "acc": acc}

    def train_eval_rows(self) -> int:
        """How many training rows ``evaluate_train`` measures: as many as the validation split
        has (fewer if the training split, or its ``train_subset``, is smaller)."""
        return min(self.data.x_train.shape[0], self.data.x_val.shape[0])

    def evaluate_train(self) -> dict[str, float]:
        """Loss and accuracy of a fixed subset of the training split, in evaluation mode.

        The per-step training loss is measured in training mode (dropout on, BN batch
        statistics), which puts it above the validation loss of a regularized model: the gap
        then reads backwards. Measured like ``evaluate()`` instead, the train/val gap is the
        overfitting gap. The rows are the first ``train_eval_rows()`` of the training split,
        which data.prepare has already shuffled with ``data_seed``: the same rows at every
        evaluation, after a restart and in a fork (with ``train_subset``, that subset). It
        draws nothing from the run's RNG, so it does not change the steps that follow.
        """
        n = self.train_eval_rows()
        loss, acc = self.model.evaluate(self.data.x_train[:n], self.data.y_train[:n])
        return {"loss": loss, "acc": acc}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit; arrays are copies."""
        return trainer_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state_dict() (possibly from another Trainer of the same shape)."""
        load_trainer_state(self, state)
