"""The MLP: a flat, named parameter dict over one contiguous vector, and forward/backward.

Hidden block i (1-based) is affine -> BN -> activation -> dropout with bn_position="before", or
affine -> activation -> BN -> dropout with "after"; the last block is a plain affine to C logits.
Parameters are W1, b1, gamma1, beta1, ..., W{L}, b{L}: each a view into `theta`, one contiguous
vector, and each gradient a view into `grad`. That keeps the optimizer to a few vector operations
per step and makes weight decay a single slice, because the weight matrices come first.

Shapes: N batch, D input features, H hidden units, C classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine import layers as L

Array = np.ndarray

__all__ = ["MLP", "ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything that fixes the network's shape and arithmetic."""

    n_in: int
    n_out: int
    hidden: tuple[int, ...] = (128, 128)
    activation: str = "relu"
    batchnorm: bool = True
    bn_position: str = "before"
    bn_momentum: float = 0.9
    bn_eps: float = 1e-5
    dropout: float = 0.0
    label_smoothing: float = 0.0
    init: str = "he"
    dtype: str = "float32"
    sizes: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", (self.n_in, *self.hidden, self.n_out))


def _param_shapes(spec: ModelSpec) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes in storage order: all weight matrices first, then the vectors."""
    n_layers = len(spec.sizes) - 1
    shapes = [(f"W{i}", (spec.sizes[i - 1], spec.sizes[i])) for i in range(1, n_layers + 1)]
    for i in range(1, n_layers + 1):
        shapes.append((f"b{i}", (spec.sizes[i],)))
        if spec.batchnorm and i < n_layers:
            shapes += [(f"gamma{i}", (spec.sizes[i],)), (f"beta{i}", (spec.sizes[i],))]
    return shapes


class MLP:
    """The network, its parameters, BN running statistics and the buffers a step writes into.

    Buffers are keyed by (name, shape), so the few batch sizes a run sees (full batches, a last
    partial one, evaluation) each get their own set once and reuse it forever after.
    """

    def __init__(self, spec: ModelSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.dtype = np.dtype(spec.dtype)
        shapes = _param_shapes(spec)
        total = sum(int(np.prod(s)) for _, s in shapes)
        self.theta = np.zeros(total, dtype=self.dtype)
        self.grad = np.zeros(total, dtype=self.dtype)
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        offset = 0
        for name, shape in shapes:
            size = int(np.prod(shape))
            self.params[name] = self.theta[offset : offset + size].reshape(shape, order="F")
            self.grads[name] = self.grad[offset : offset + size].reshape(shape, order="F")
            offset += size
        self.n_weights = sum(int(np.prod(s)) for n, s in shapes if n.startswith("W"))
        self.running: dict[str, Array] = {}
        for i in range(1, len(spec.hidden) + 1):
            if spec.batchnorm:
                self.running[f"running_mean{i}"] = np.zeros(spec.sizes[i], dtype=self.dtype)
                self.running[f"running_var{i}"] = np.ones(spec.sizes[i], dtype=self.dtype)
        self._buffers: dict[tuple[str, tuple[int, ...]], Array] = {}
        self.reset_parameters(rng)

    @property
    def n_layers(self) -> int:
        return len(self.spec.sizes) - 1

    def reset_parameters(self, rng: np.random.Generator) -> None:
        """He (std sqrt(2 / fan_in)) or Xavier (std sqrt(2 / (fan_in + fan_out))) normal weights;
        zero biases and beta, unit gamma. Drawn in float64 so both dtypes start from the same
        numbers up to rounding."""
        for i in range(1, self.n_layers + 1):
            fan_in, fan_out = self.spec.sizes[i - 1], self.spec.sizes[i]
            denom = fan_in if self.spec.init == "he" else fan_in + fan_out
            std = np.sqrt(2.0 / denom)
            self.params[f"W{i}"][...] = rng.standard_normal((fan_in, fan_out)) * std
            self.params[f"b{i}"][...] = 0.0
            if f"gamma{i}" in self.params:
                self.params[f"gamma{i}"][...] = 1.0
                self.params[f"beta{i}"][...] = 0.0

    def _buf(self, name: str, shape: tuple[int, ...]) -> Array:
        """The model-owned buffer for (name, shape), created on first use."""
        key = (name, shape)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = np.empty(shape, dtype=self.dtype, order="F")
        return buf

    def forward(
        self,
        x: Array,
        *,
        train: bool,
        rng: np.random.Generator | None = None,
        masks: dict[int, Array] | None = None,
    ) -> tuple[Array, list[dict[str, Any]]]:
        """x (N, D) -> logits (N, C) and the per-layer caches backward needs.

        In training, BN uses batch statistics (and updates its running ones) and dropout draws
        masks from `rng`, unless `masks` fixes them per layer (gradient checks). Evaluation
        allocates fresh arrays, so the logits it returns stay valid after the next step.
        """
        caches: list[dict[str, Any]] = []
        h = x
        for i in range(1, self.n_layers):
            h, cache = self._hidden_forward(i, h, train=train, rng=rng, masks=masks)
            caches.append(cache)
        i = self.n_layers
        out = self._buf("logits", (x.shape[0], self.spec.sizes[i])) if train else None
        logits, cache = L.affine_forward(h, self.params[f"W{i}"], self.params[f"b{i}"], out=out)
        caches.append({"affine": cache})
        return logits, caches

    def _hidden_forward(
        self,
        i: int,
        h: Array,
        *,
        train: bool,
        rng: np.random.Generator | None,
        masks: dict[int, Array] | None,
    ) -> tuple[Array, dict[str, Any]]:
        spec, p = self.spec, self.params
        shape = (h.shape[0], spec.sizes[i])

        def buf(name: str) -> Array | None:
            return self._buf(f"{name}{i}", shape) if train else None

        cache: dict[str, Any] = {}
        h, cache["affine"] = L.affine_forward(h, p[f"W{i}"], p[f"b{i}"], out=buf("z"))
        order = ("bn", "act") if spec.bn_position == "before" else ("act", "bn")
        for part in order:
            if part == "bn" and spec.batchnorm:
                h, cache["bn"] = self._bn_forward(i, h, train=train, buf=buf)
            elif part == "act":
                h, cache["act"] = self._act_forward(h, buf)
        if train and spec.dropout > 0.0:
            if masks is None and rng is None:
                raise ValueError("training with dropout needs an rng (or fixed masks)")
            fixed = masks is not None
            h, cache["drop"] = L.dropout_forward(
                h,
                spec.dropout,
                train=True,
                rng=None if fixed else rng,
                mask=masks[i] if fixed else buf("mask"),
                out=buf("drop"),
            )
        return h, cache

    def _act_forward(self, h: Array, buf: Callable[[str], Array | None]) -> tuple[Array, Any]:
        if self.spec.activation == "relu":
            return L.relu_forward(h, out=buf("act"), mask=buf("relu_mask"))
        return L.tanh_forward(h, out=buf("act"))

    def _bn_forward(
        self, i: int, h: Array, *, train: bool, buf: Callable[[str], Array | None]
    ) -> tuple[Array, Any]:
        return L.batchnorm_forward(
            h,
            self.params[f"gamma{i}"],
            self.params[f"beta{i}"],
            self.running[f"running_mean{i}"],
            self.running[f"running_var{i}"],
            train=train,
            momentum=self.spec.bn_momentum,
            eps=self.spec.bn_eps,
            out=buf("bn"),
            centered=buf("centered"),
        )

    def backward(self, dlogits: Array, caches: list[dict[str, Any]]) -> None:
        """Fill `grad` (and so `grads`) from dlogits (N, C), undoing the layers in reverse."""
        dh = self._affine_backward(self.n_layers, dlogits, caches[-1]["affine"])
        for i in range(self.n_layers - 1, 0, -1):
            dh = self._hidden_backward(i, dh, caches[i - 1])

    def _affine_backward(self, i: int, dout: Array, cache: Any) -> Array | None:
        """Layer i's affine backward into its gradient views; no input gradient for layer 1."""
        g = self.grads
        need_dx = i > 1
        dx_buf = self._buf(f"dh{i}", cache[0].shape) if need_dx else None
        dx, _, _ = L.affine_backward(
            dout, cache, need_dx=need_dx, dx=dx_buf, dw=g[f"W{i}"], db=g[f"b{i}"]
        )
        return dx

    def _hidden_backward(self, i: int, dh: Array, cache: dict[str, Any]) -> Array | None:
        spec, g = self.spec, self.grads
        shape = dh.shape
        if "drop" in cache:
            dh = L.dropout_backward(dh, cache["drop"], dx=self._buf(f"ddrop{i}", shape))
        order = ("act", "bn") if spec.bn_position == "before" else ("bn", "act")
        for part in order:
            if part == "bn" and "bn" in cache:
                dh, _, _ = L.batchnorm_backward(
                    dh,
                    cache["bn"],
                    dx=self._buf(f"dbn{i}", shape),
                    dgamma=g[f"gamma{i}"],
                    dbeta=g[f"beta{i}"],
                )
            elif part == "act":
                back = L.relu_backward if spec.activation == "relu" else L.tanh_backward
                dh = back(dh, cache["act"], dx=self._buf(f"dact{i}", shape))
        return self._affine_backward(i, dh, cache["affine"])

    def loss_and_grad(
        self,
        x: Array,
        y: Array,
        *,
        rng: np.random.Generator | None = None,
        masks: dict[int, Array] | None = None,
    ) -> tuple[float, float]:
        """One training forward + backward on (x, y): fills `grad`, returns (loss, accuracy).

        The loss is the data loss: plain mean cross-entropy, without the L2 term (the optimizer's)
        and without label smoothing (the gradient is that of the smoothed objective).
        """
        with np.errstate(all="ignore"):
            logits, caches = self.forward(x, train=True, rng=rng, masks=masks)
            acc = float(np.mean(logits.argmax(axis=1) == y))
            dlogits = self._buf("dlogits", logits.shape)
            _, loss, dlogits = L.softmax_ce_terms(
                logits, y, smoothing=self.spec.label_smoothing, dlogits=dlogits
            )
            self.backward(dlogits, caches)
        return loss, acc

    def evaluate(self, x: Array, y: Array, *, batch: int = 4096) -> tuple[float, float]:
        """Mean loss and accuracy in evaluation mode (running BN stats, no dropout)."""
        total_loss, correct = 0.0, 0
        with np.errstate(all="ignore"):
            for start in range(0, x.shape[0], batch):
                xb, yb = x[start : start + batch], y[start : start + batch]
                logits, _ = self.forward(xb, train=False)
                loss, _ = L.softmax_cross_entropy(logits, yb)
                total_loss += loss * xb.shape[0]
                correct += int(np.sum(logits.argmax(axis=1) == yb))
        n = max(x.shape[0], 1)
        return total_loss / n, correct / n
