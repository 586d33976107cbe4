"""Per-layer health of one training step: what a careful person looks at inside the model.

``Trainer.step(health=True)`` calls ``snapshot`` before the update (it copies the weight matrices
and the BN running statistics, the only values the update or the forward overwrite) and
``measure`` after it. Everything else is read from what the training forward and backward already
left in the model: the activation buffers (``MLP._buffers``), the gradients (``MLP.grads``). No
random number is drawn and nothing the step uses is written, so a measured step trains exactly
like an unmeasured one. Non-finite values come out as they are (nan, inf), never as exceptions.

Layer k (0-based) is the affine of block k + 1: 0 is the first hidden layer, ``n_layers - 1`` the
output layer. Definitions (docs/engine.md, "Per-layer health"):

- ``grad_norm``: Frobenius norm of dL/dW, L2 term included (what the optimizer was given).
- ``weight_norm``: Frobenius norm of W before the update.
- ``update_ratio``: ||W_new - W_old|| / ||W_old||, the size of one step relative to the weights.
- ``act_mean``, ``act_std``: over every unit and sample of the layer's output in training mode,
  after its activation (before dropout); the logits for the output layer.
- ``dead_frac``: share of a ReLU layer's units that are zero for every sample of the batch.
- ``bn_shift``: mean over units of sqrt(((mu_B - mu_R) / s_R)^2 + (s_B / s_R - 1)^2), with mu_B,
  s_B the batch's mean and std that training normalized with, mu_R, s_R the running ones that
  evaluation would use (before this step's update), s = sqrt(var + eps): 0 when evaluation
  normalizes the batch exactly as training did, 0.1 when it is off by a tenth of a std.

The healthy bands below are the thresholds the panel shades and words (app/web/health_panel.py)
and that alerts may use; they live here, in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine import layers as L
from engine.model import MLP

Array = np.ndarray

__all__ = [
    "BN_SHIFT_HIGH",
    "DEAD_FRAC_HIGH",
    "HEALTHY_ACT_STD",
    "HEALTHY_GRAD_NORM",
    "HEALTHY_UPDATE_RATIO",
    "LayerHealth",
    "Snapshot",
    "measure",
    "problems",
    "snapshot",
]

HEALTHY_UPDATE_RATIO = (1e-4, 1e-1)
"""||dW|| / ||W|| per step. CS231n's rule of thumb is about 1e-3 (for SGD); Adam on these small
networks runs higher: the tuned default digits run sits at 1e-2 to 4e-2 for most of its life
(spirals the same) and learns well. Measured failures fall outside: lr 1e-6 gives 3e-6 (barely
moves: the rate is too low), lr 1 gives 0.13 to 1.7 (each step rewrites the layer: too high).
A decaying schedule legitimately ends below the band (cosine reaches 0 at the last step)."""
HEALTHY_ACT_STD = (0.1, 10.0)
"""Std of a layer's outputs: far below 0.1 the signal is vanishing (saturated or dead units),
far above 10 it is exploding."""
DEAD_FRAC_HIGH = 0.5
"""A ReLU layer with more than half its units dead for a whole batch has lost most of its width."""
BN_SHIFT_HIGH = 0.5
"""Evaluation normalizing half a std away from training: validation figures stop describing
the model that trains (running statistics lag a drifting layer)."""
HEALTHY_GRAD_NORM = (1e-4, 1e2)
"""||dL/dW|| of a layer: 0.1 to 2 on the default digits and spirals runs; below 1e-4 the layer
has stopped learning (lr 1 killed every ReLU: 1e-6), above 100 gradients are exploding."""
TANH_SATURATED = 0.9
"""A tanh layer whose outputs have std above this sits mostly at +-1, where it learns nothing."""


@dataclass(frozen=True, slots=True)
class LayerHealth:
    """One layer's statistics at one step (see the module docstring for the definitions)."""

    layer: int
    grad_norm: float
    weight_norm: float
    update_ratio: float
    act_mean: float | None
    act_std: float | None
    dead_frac: float | None
    bn_shift: float | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the update (or the forward) overwrites and ``measure`` needs: the weight matrices
    (one copy of the front of ``theta``) and the BN running statistics before the step."""

    weights: Array
    running: dict[str, Array]


def snapshot(model: MLP) -> Snapshot:
    """Copy the weight matrices and BN running statistics; call right before the step."""
    return Snapshot(
        weights=model.theta[: model.n_weights].copy(),
        running={k: v.copy() for k, v in model.running.items()},
    )


def _norm(a: Array) -> float:
    """Frobenius norm from one BLAS dot product of the flat array with itself.

    A float32 sum of squares (what ``np.dot`` does for float32) holds about 6 digits, more than
    a health figure shows; it is redone in float64 only when it overflowed (or met a nan), so a
    large but finite layer still reads as finite and a non-finite one stays non-finite.
    """
    flat = a.ravel(order="K")
    sq = float(np.dot(flat, flat))
    if not math.isfinite(sq) and flat.dtype != np.float64:
        flat = flat.astype(np.float64)
        sq = float(np.dot(flat, flat))
    return math.sqrt(sq)


def _buffer(model: MLP, name: str, shape: tuple[int, int]) -> Array | None:
    return model._buffers.get((name, shape))


def _act_stats(a: Array | None) -> tuple[float | None, float | None]:
    """Mean and (population) std over every element, in two passes (no cancellation)."""
    if a is None or a.size == 0:
        return None, None
    flat = a.ravel(order="K")
    mean = float(np.add.reduce(flat, dtype=np.float64)) / flat.size
    dev = flat - flat.dtype.type(mean)
    return mean, math.sqrt(float(np.dot(dev, dev)) / flat.size)


def _dead_frac(mask: Array | None) -> float | None:
    """Units whose ReLU mask is 0 for every row (a NaN input counts as dead: its mask is 0)."""
    if mask is None or mask.shape[1] == 0:
        return None
    alive = L.colsum(mask)  # the mask is 0/1: a unit's column sums to 0 only when all are 0
    return float(np.count_nonzero(alive == 0)) / mask.shape[1]


def _bn_shift(model: MLP, i: int, shape: tuple[int, int], before: Snapshot) -> float | None:
    """BN layer i's batch statistics against its running ones before the step (see the module
    docstring), from the buffers of the training forward: its input (``z`` before the
    activation, ``act`` after it) and its ``centered`` = input - batch mean."""
    key_m, key_v = f"running_mean{i}", f"running_var{i}"
    x = _buffer(model, f"z{i}" if model.spec.bn_position == "before" else f"act{i}", shape)
    centered = _buffer(model, f"centered{i}", shape)
    if x is None or centered is None or key_m not in before.running:
        return None
    n, eps = shape[0], model.spec.bn_eps
    mu_b = L.colsum(x).astype(np.float64) / n
    sq = np.multiply(centered, centered)
    s_b = np.sqrt(L.colsum(sq).astype(np.float64) / n + eps)
    mu_r = before.running[key_m].astype(np.float64)
    s_r = np.sqrt(before.running[key_v].astype(np.float64) + eps)
    shift = np.hypot((mu_b - mu_r) / s_r, s_b / s_r - 1.0)
    return float(shift.mean())


def measure(model: MLP, before: Snapshot, batch_rows: int) -> tuple[LayerHealth, ...]:
    """Every layer's health after a training step on a batch of ``batch_rows`` rows, from the
    buffers that step filled and the ``snapshot`` taken before it."""
    spec = model.spec
    out: list[LayerHealth] = []
    relu = spec.activation == "relu"
    offset = 0
    with np.errstate(all="ignore"):
        delta = model.theta[: model.n_weights] - before.weights  # every W_new - W_old at once
        for i in range(1, model.n_layers + 1):
            size = spec.sizes[i - 1] * spec.sizes[i]
            weight_norm = _norm(before.weights[offset : offset + size])
            step_norm = _norm(delta[offset : offset + size])
            offset += size
            shape = (batch_rows, spec.sizes[i])
            if i < model.n_layers:
                act = _buffer(model, f"act{i}", shape)
                dead = _dead_frac(_buffer(model, f"relu_mask{i}", shape)) if relu else None
                shift = _bn_shift(model, i, shape, before) if spec.batchnorm else None
            else:
                act, dead, shift = _buffer(model, "logits", shape), None, None
            mean, std = _act_stats(act)
            out.append(
                LayerHealth(
                    layer=i - 1,
                    grad_norm=_norm(model.grads[f"W{i}"]),
                    weight_norm=weight_norm,
                    update_ratio=step_norm / weight_norm if weight_norm else _div0(step_norm),
                    act_mean=mean,
                    act_std=std,
                    dead_frac=dead,
                    bn_shift=shift,
                )
            )
    return tuple(out)


def _div0(numerator: float) -> float:
    """x / 0 as IEEE would have it, without the ZeroDivisionError Python raises."""
    if numerator == 0 or math.isnan(numerator):
        return math.nan
    return math.inf


def _outside(value: float | None, band: tuple[float, float]) -> bool:
    return value is not None and math.isfinite(value) and not band[0] <= value <= band[1]


def problems(
    health: tuple[LayerHealth, ...] | list[LayerHealth],
    *,
    activation: str = "relu",
    lr_factor: float | None = None,
) -> list[str]:
    """What is off, in plain words, one line per finding ("layer 2: 61% dead ReLUs").

    Layers are numbered from 1 here, as people count them (layer 1 = the first hidden layer).
    ``lr_factor`` (the schedule's factor now) turns "the rate may be too low" into "expected"
    once the schedule has brought the rate below a tenth of its base.
    """
    out: list[str] = []
    last = max((h.layer for h in health), default=-1)
    for h in health:
        name = f"layer {h.layer + 1}" + (" (output)" if h.layer == last and last > 0 else "")
        if not (math.isfinite(h.grad_norm) and math.isfinite(h.weight_norm)):
            out.append(f"{name}: non-finite gradients or weights: the run is diverging")
            continue
        if h.weight_norm == 0:  # the update ratio is then 0/0: say what happened instead
            out.append(f"{name}: every weight is 0: the layer is dead (a rate or a weight decay "
                       "too strong wiped it out); go back to a checkpoint before it")  # fmt: skip
            continue
        if not math.isfinite(h.update_ratio):
            out.append(f"{name}: non-finite update: the run is diverging")
            continue
        if h.dead_frac is not None and h.dead_frac > DEAD_FRAC_HIGH:
            out.append(f"{name}: {h.dead_frac:.0%} dead ReLUs")
        lo, hi = HEALTHY_UPDATE_RATIO
        if _outside(h.update_ratio, HEALTHY_UPDATE_RATIO):
            if h.update_ratio < lo:
                why = "the rate may be too low"
                if lr_factor is not None and lr_factor < 0.1:
                    why = f"expected, the schedule has brought the rate down to {lr_factor:.0%}"
                out.append(f"{name}: updates {h.update_ratio:.0e} of the weights: {why}")
            elif h.update_ratio > hi:
                out.append(
                    f"{name}: updates {h.update_ratio:.0e} of the weights: the rate may be too high"
                )
        if h.grad_norm > HEALTHY_GRAD_NORM[1]:
            out.append(f"{name}: gradient norm {h.grad_norm:.3g}: exploding gradients")
        elif h.grad_norm < HEALTHY_GRAD_NORM[0]:
            out.append(f"{name}: gradient norm {h.grad_norm:.1e}: the layer has stopped learning")
        hidden = h.layer != last
        if hidden and h.act_std is not None and math.isfinite(h.act_std):
            if h.act_std < HEALTHY_ACT_STD[0]:
                out.append(f"{name}: activations std {h.act_std:.2g}: the signal is vanishing")
            elif h.act_std > HEALTHY_ACT_STD[1]:
                out.append(f"{name}: activations std {h.act_std:.3g}: the signal is exploding")
            elif activation == "tanh" and h.act_std > TANH_SATURATED:
                out.append(f"{name}: tanh units saturated (std {h.act_std:.2f})")
        if h.bn_shift is not None and math.isfinite(h.bn_shift) and h.bn_shift > BN_SHIFT_HIGH:
            out.append(
                f"{name}: batch-norm running statistics {h.bn_shift:.2f} std from the batch's: "
                "evaluation normalizes differently from training"
            )
    return out
