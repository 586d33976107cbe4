"""Optimizer update rules against hand-written formulas, and weight decay's reach."""

from __future__ import annotations

import numpy as np
import pytest

from engine.model import MLP, ModelSpec
from engine.optim import OPTIMIZERS, adam, init_state, momentum, rmsprop, sgd
from engine.trainer import train_step


@pytest.fixture
def wg() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal(6), rng.standard_normal(6)


def test_sgd(wg: tuple[np.ndarray, np.ndarray]) -> None:
    w, g = wg
    w0, g0 = w.copy(), g.copy()
    state = init_state("sgd", w)
    sgd(w, g, state, lr=0.1)
    np.testing.assert_allclose(w, w0 - 0.1 * g0)
    np.testing.assert_array_equal(g, g0)  # the gradient is not touched
    assert state["t"] == 1


def test_momentum_buffer_form(wg: tuple[np.ndarray, np.ndarray]) -> None:
    w, g = wg
    w0 = w.copy()
    state = init_state("momentum", w)
    momentum(w, g, state, lr=0.1, mu=0.9)
    momentum(w, g, state, lr=0.2, mu=0.9)  # the new lr scales the whole velocity
    v1, v2 = g, 0.9 * g + g
    np.testing.assert_allclose(w, w0 - 0.1 * v1 - 0.2 * v2)
    np.testing.assert_allclose(state["v"], v2)


def test_rmsprop_eps_outside_sqrt(wg: tuple[np.ndarray, np.ndarray]) -> None:
    w, g = wg
    w0 = w.copy()
    state = init_state("rmsprop", w)
    rmsprop(w, g, state, lr=0.01, rho=0.9, eps=0.5)
    s = 0.1 * g**2
    np.testing.assert_allclose(w, w0 - 0.01 * g / (np.sqrt(s) + 0.5))


def test_adam_bias_correction(wg: tuple[np.ndarray, np.ndarray]) -> None:
    w, g = wg
    w0 = w.copy()
    state = init_state("adam", w)
    adam(w, g, state, lr=0.01, beta1=0.9, beta2=0.999, eps=0.0)
    # after bias correction the first step is lr * sign(g), whatever the gradient's scale
    np.testing.assert_allclose(w, w0 - 0.01 * np.sign(g))
    adam(w, g, state, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    m, v = 0.19 * g, 0.001999 * g**2
    mhat, vhat = m / (1 - 0.9**2), v / (1 - 0.999**2)
    np.testing.assert_allclose(w, w0 - 0.01 * np.sign(g) - 0.01 * mhat / (np.sqrt(vhat) + 1e-8))
    assert state["t"] == 2


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_descends_a_quadratic(name: str) -> None:
    w = np.array([3.0, -2.0])
    state = init_state(name, w)
    for _ in range(300):
        OPTIMIZERS[name](w, 2 * w, state, lr=0.05)  # f = |w|^2
    assert np.linalg.norm(w) < 0.5


def test_weight_decay_reaches_weight_matrices_only() -> None:
    """L2 on W only: biases and BN gamma/beta get no decay (documented in docs/engine.md)."""
    spec = ModelSpec(n_in=4, n_out=3, hidden=(5,), dtype="float64")
    x = np.random.default_rng(0).standard_normal((8, 4))
    y = np.arange(8) % 3
    thetas = []
    for wd in (0.0, 0.1):
        model = MLP(spec, np.random.default_rng(1))
        model.theta[model.n_weights :] += 0.5  # non-zero b, gamma, beta: decay would show
        before = model.theta.copy()
        train_step(
            model, OPTIMIZERS["sgd"], init_state("sgd", model.theta), x, y, lr=0.1, weight_decay=wd
        )
        thetas.append(model.theta.copy())
    nw = model.n_weights
    np.testing.assert_allclose(thetas[1][:nw] - thetas[0][:nw], -0.1 * 0.1 * before[:nw])
    np.testing.assert_array_equal(thetas[1][nw:], thetas[0][nw:])
