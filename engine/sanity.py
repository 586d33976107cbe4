"""Checks a careful person makes before trusting a run (issue 8): the initial loss against ln C.

A freshly initialized classifier knows nothing, so its softmax should be close to uniform and its
mean cross-entropy close to ln C (C = number of classes). A loss far above it means the logits
start large (weights scaled up, a huge output bias, unstandardized inputs): the first steps are
then spent undoing the initialization. The check runs the model in evaluation mode (no dropout,
running BN statistics) on the training split and reports the plain cross-entropy (no L2 term, no
label smoothing), so regularization cannot move it.

Tolerance (docs/engine.md): flagged when |loss - ln C| > max(2 nats, 0.5 x ln C). A He-initialized
output layer gives logits of variance about 2, which adds about 1 nat whatever C is: measured with
the default config, seeds 0-14, relu and tanh, the excess over ln C lies in [-0.35, 1.04] on
digits, [-0.16, 1.53] on spirals, [-0.32, 1.38] on moons and [-0.35, 1.19] on blobs. Weights
scaled x3 already give 43 on digits (ln 10 = 2.30), x100 over a million.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["INITIAL_LOSS_TOLERANCE", "InitialLoss", "initial_loss", "initial_loss_check"]

INITIAL_LOSS_TOLERANCE = 2.0
"""Nats: a fresh network is flagged beyond |loss - ln C| > max(INITIAL_LOSS_TOLERANCE, 0.5 ln C)."""

MAX_ROWS = 4096
"""The check reads at most this many training rows (the first ones: the split is already
shuffled, stratified), so it costs one evaluation-sized forward pass whatever the dataset."""


@dataclass(frozen=True, slots=True)
class InitialLoss:
    """The measured loss, the expected ln C and whether they agree within the tolerance."""

    loss: float
    expected: float
    ok: bool
    n_classes: int

    def payload(self) -> dict[str, float | bool | int | None]:
        """The event payload (``initial_loss``); a non-finite loss is stored as None."""
        loss = self.loss if math.isfinite(self.loss) else None
        return {"loss": loss, "expected": self.expected, "ok": self.ok, "classes": self.n_classes}


def initial_loss_check(
    loss: float, n_classes: int, *, tolerance: float = INITIAL_LOSS_TOLERANCE
) -> InitialLoss:
    """Compare a measured initial loss with ln C; a non-finite loss is never ok."""
    expected = math.log(n_classes)
    ok = math.isfinite(loss) and abs(loss - expected) <= max(tolerance, 0.5 * expected)
    return InitialLoss(loss=float(loss), expected=expected, ok=ok, n_classes=n_classes)


def initial_loss(trainer: object, *, tolerance: float = INITIAL_LOSS_TOLERANCE) -> InitialLoss:
    """The initial-loss check of a Trainer (before its first step): evaluation-mode loss on at
    most MAX_ROWS training rows. It draws no random numbers, so the run it checks is unchanged."""
    data = trainer.data  # type: ignore[attr-defined]
    x, y = data.x_train[:MAX_ROWS], data.y_train[:MAX_ROWS]
    loss, _ = trainer.model.evaluate(np.asarray(x), np.asarray(y))  # type: ignore[attr-defined]
    return initial_loss_check(loss, data.n_classes, tolerance=tolerance)


def describe_initial_loss(payload: dict[str, object]) -> str:
    """The plain-words note of an ``initial_loss`` event payload (as ``payload()`` makes it)."""
    expected, classes = payload.get("expected"), payload.get("classes")
    loss = payload.get("loss")
    shown = f"{loss:.3g}" if isinstance(loss, int | float) else "not finite"
    where = f"expected ln {classes} = {expected:.2f}" if isinstance(expected, float) else ""
    if payload.get("ok"):
        return f"initial loss {shown}, {where}: as expected for a fresh network"
    return f"initial loss {shown}, {where}: check the initialization"
