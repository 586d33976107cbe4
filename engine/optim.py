"""Optimizers as `update(w, dw, state, *, lr, **hyper)`: w and state are updated in place.

The learning rate is an argument, not state, so a live change is one assignment in the caller.
Each rule follows torch.optim's formulas exactly (the parity tests hold us to it):

- sgd:      w -= lr * dw
- momentum: v = mu * v + dw;  w -= lr * v
            (torch's buffer form, not CS231n's v = mu*v - lr*dw: a changed lr applies to the whole
            velocity at once)
- rmsprop:  s = rho * s + (1 - rho) * dw^2;  w -= lr * dw / (sqrt(s) + eps)   (eps outside sqrt)
- adam:     m, v as usual; w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
            (moments stored without their (1 - beta) factors, see `adam`)

`w` is usually the model's flat parameter vector, so one call updates every parameter with a
handful of vector operations. `state["scratch"]` is a buffer of w's shape for temporaries, kept
out of checkpoints by the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

Array = np.ndarray
State = dict[str, Any]
Update = Callable[..., None]

__all__ = ["OPTIMIZERS", "adam", "init_state", "momentum", "rmsprop", "sgd"]


def init_state(name: str, w: Array) -> State:
    """Zeroed moments for optimizer `name` over parameters shaped like w; t counts updates."""
    slots = {"sgd": (), "momentum": ("v",), "rmsprop": ("s",), "adam": ("m", "v")}[name]
    state: State = {key: np.zeros_like(w) for key in slots}
    state["t"] = 0
    state["scratch"] = np.empty_like(w)
    return state


def sgd(w: Array, dw: Array, state: State, *, lr: float) -> None:
    """Plain gradient descent. The scratch buffer keeps lr * dw from allocating."""
    tmp = np.multiply(dw, lr, out=state["scratch"])
    w -= tmp
    state["t"] += 1


def momentum(w: Array, dw: Array, state: State, *, lr: float, mu: float = 0.9) -> None:
    """Heavy-ball momentum in torch.optim.SGD(momentum=mu, dampening=0) form."""
    v = state["v"]
    v *= mu
    v += dw
    w -= np.multiply(v, lr, out=state["scratch"])
    state["t"] += 1


def rmsprop(
    w: Array, dw: Array, state: State, *, lr: float, rho: float = 0.99, eps: float = 1e-8
) -> None:
    """RMSProp as torch.optim.RMSprop(alpha=rho): eps is added after the square root."""
    s, tmp = state["s"], state["scratch"]
    s *= rho
    np.multiply(dw, dw, out=tmp)
    tmp *= 1.0 - rho
    s += tmp
    np.sqrt(s, out=tmp)
    tmp += eps
    np.divide(dw, tmp, out=tmp)
    tmp *= lr
    w -= tmp
    state["t"] += 1


def adam(
    w: Array,
    dw: Array,
    state: State,
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> None:
    """Adam with bias correction: torch.optim.Adam's update, in 10 vector passes instead of 13.

    The moments are kept without their (1 - beta) factors, m' = m / (1 - beta1) and
    v' = v / (1 - beta2), so each is one scale and one add per step (m' = beta1 * m' + dw); the
    factors are folded into two scalars, which is the same arithmetic up to rounding:
    lr / bc1 * m / (sqrt(v / bc2) + eps) = step * m' / (sqrt(v') + eps / k), k = sqrt((1-b2)/bc2).
    """
    m, v, tmp = state["m"], state["v"], state["scratch"]
    state["t"] += 1
    t = state["t"]
    k = math.sqrt((1.0 - beta2) / (1.0 - beta2**t))
    step = lr * (1.0 - beta1) / ((1.0 - beta1**t) * k)
    m *= beta1
    m += dw
    v *= beta2
    np.multiply(dw, dw, out=tmp)
    v += tmp
    np.sqrt(v, out=tmp)
    tmp += eps / k
    np.divide(m, tmp, out=tmp)
    tmp *= step
    w -= tmp


OPTIMIZERS: dict[str, Update] = {"sgd": sgd, "momentum": momentum, "rmsprop": rmsprop, "adam": adam}
