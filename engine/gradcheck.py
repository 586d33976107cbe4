"""Centred finite differences, the reference every analytic gradient is checked against.

Used by the tests (and handy in a REPL when adding a layer). Work in float64: with h = 1e-6 the
centred difference is accurate to about h^2 + eps / h ~ 1e-10 relative, far below the 1e-6 the
tests ask for, while float32 cannot resolve it at all.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Array = np.ndarray

__all__ = ["numerical_gradient", "rel_error"]


def numerical_gradient(f: Callable[[], float], x: Array, *, h: float = 1e-6) -> Array:
    """d f() / d x by centred differences, perturbing x in place (and restoring it).

    f reads x through a closure, so x may be a view into a larger buffer (a model's theta).
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat_x, x):
        raise ValueError("x must be reshapeable without a copy")
    for i in range(flat_x.size):
        old = flat_x[i]
        flat_x[i] = old + h
        plus = f()
        flat_x[i] = old - h
        minus = f()
        flat_x[i] = old
        flat_g[i] = (plus - minus) / (2.0 * h)
    return grad


def rel_error(a: Array, b: Array) -> float:
    """||a - b|| / (||a|| + ||b||): scale-free, and not fooled by entries that should be 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else 0.0
