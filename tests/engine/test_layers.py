"""Every layer's backward against centred differences (float64, relative error < 1e-6), plus the
promises of the layer API: inputs never mutated, buffers give the same numbers, BN and dropout
behave differently in training and evaluation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from engine import layers as L
from engine.gradcheck import numerical_gradient, rel_error

TOL = 1e-6


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Inputs at least 0.05 from the ReLU kink, so finite differences never straddle it."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.05 * np.sign(x) + x, x)


def test_affine_gradients(rng: np.random.Generator) -> None:
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    r = rng.standard_normal((5, 3))
    out, cache = L.affine_forward(x, w, b)
    np.testing.assert_allclose(out, x @ w + b)
    dx, dw, db = L.affine_backward(r, cache)

    def f() -> float:
        return float(np.sum(L.affine_forward(x, w, b)[0] * r))

    for analytic, param in ((dx, x), (dw, w), (db, b)):
        assert rel_error(analytic, numerical_gradient(f, param)) < TOL


def test_affine_skips_dx_when_not_needed(rng: np.random.Generator) -> None:
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), np.zeros(3)
    _, cache = L.affine_forward(x, w, b)
    dx, dw, _ = L.affine_backward(np.ones((5, 3)), cache, need_dx=False)
    assert dx is None and dw.shape == w.shape


@pytest.mark.parametrize(
    ("forward", "backward"),
    [(L.relu_forward, L.relu_backward), (L.tanh_forward, L.tanh_backward)],
)
def test_activation_gradients(
    forward: Callable[..., tuple[np.ndarray, tuple]],
    backward: Callable[..., np.ndarray],
    rng: np.random.Generator,
) -> None:
    x = _away_from_zero(rng, (6, 5))
    r = rng.standard_normal((6, 5))
    _, cache = forward(x)
    dx = backward(r, cache)

    def f() -> float:
        return float(np.sum(forward(x)[0] * r))

    assert rel_error(dx, numerical_gradient(f, x)) < TOL


def test_relu_matches_maximum_and_keeps_nan(rng: np.random.Generator) -> None:
    x = rng.standard_normal((6, 5)).astype(np.float32)
    x[0, 0], x[1, 1] = np.nan, 0.0
    out, (mask,) = L.relu_forward(x, out=np.empty_like(x), mask=np.empty_like(x))
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    assert np.isnan(out[0, 0]) and out.dtype == np.float32
    np.testing.assert_array_equal(mask, (x > 0).astype(np.float32))


def _bn(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, train: bool = True, **kw: np.ndarray
) -> tuple[np.ndarray, tuple | None]:
    rm, rv = np.zeros(x.shape[1]), np.ones(x.shape[1])
    return L.batchnorm_forward(x, gamma, beta, rm, rv, train=train, momentum=0.9, eps=1e-5, **kw)


def test_batchnorm_gradients(rng: np.random.Generator) -> None:
    x = rng.standard_normal((8, 4)) * 3 + 1
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    r = rng.standard_normal((8, 4))
    _, cache = _bn(x, gamma, beta)
    dx, dgamma, dbeta = L.batchnorm_backward(r, cache)

    def f() -> float:
        return float(np.sum(_bn(x, gamma, beta)[0] * r))

    for analytic, param in ((dx, x), (dgamma, gamma), (dbeta, beta)):
        assert rel_error(analytic, numerical_gradient(f, param)) < TOL


def test_batchnorm_train_normalizes_and_updates_running_stats(rng: np.random.Generator) -> None:
    x = rng.standard_normal((16, 3)) * 2 + 5
    rm, rv = np.zeros(3), np.ones(3)
    out, _ = L.batchnorm_forward(
        x, np.ones(3), np.zeros(3), rm, rv, train=True, momentum=0.9, eps=1e-5
    )
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(rm, 0.1 * x.mean(axis=0))
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x.var(axis=0, ddof=1))  # unbiased, like torch


def test_batchnorm_eval_uses_running_stats_and_leaves_them(rng: np.random.Generator) -> None:
    x = rng.standard_normal((4, 3))
    rm, rv = np.array([1.0, 2.0, 3.0]), np.array([4.0, 1.0, 0.25])
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.0, -1.0])
    out, cache = L.batchnorm_forward(x, gamma, beta, rm, rv, train=False, momentum=0.9, eps=0.0)
    np.testing.assert_allclose(out, (x - rm) / np.sqrt(rv) * gamma + beta)
    np.testing.assert_array_equal(rm, [1.0, 2.0, 3.0])
    assert cache is None
    train_out, _ = L.batchnorm_forward(x, gamma, beta, rm, rv, train=True, momentum=0.9, eps=0.0)
    assert not np.allclose(train_out, out)


def test_dropout_gradient_with_fixed_mask(rng: np.random.Generator) -> None:
    x = rng.standard_normal((6, 5))
    mask = (rng.random((6, 5)) >= 0.3) / 0.7
    r = rng.standard_normal((6, 5))
    _, cache = L.dropout_forward(x, 0.3, train=True, mask=mask)
    dx = L.dropout_backward(r, cache)

    def f() -> float:
        return float(np.sum(L.dropout_forward(x, 0.3, train=True, mask=mask)[0] * r))

    assert rel_error(dx, numerical_gradient(f, x)) < TOL


def test_dropout_train_vs_eval(rng: np.random.Generator) -> None:
    x = np.ones((200, 100))
    out, _ = L.dropout_forward(x, 0.25, train=True, rng=rng)
    kept = out != 0
    assert 0.7 < kept.mean() < 0.8  # about 1 - p survive
    np.testing.assert_allclose(out[kept], 1 / 0.75)  # inverted: survivors scaled up
    assert abs(out.mean() - 1.0) < 0.02  # expectation preserved
    eval_out, _ = L.dropout_forward(x, 0.25, train=False, rng=rng)
    np.testing.assert_array_equal(eval_out, x)


def test_softmax_cross_entropy_value_and_gradient(rng: np.random.Generator) -> None:
    logits = rng.standard_normal((7, 4))
    y = rng.integers(0, 4, size=7)
    loss, dlogits = L.softmax_cross_entropy(logits, y)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(7), y])), rel=1e-12)

    def f() -> float:
        return L.softmax_cross_entropy(logits, y)[0]

    assert rel_error(dlogits, numerical_gradient(f, logits)) < TOL


def test_label_smoothing_value_and_gradient(rng: np.random.Generator) -> None:
    logits = rng.standard_normal((6, 5))
    y = rng.integers(0, 5, size=6)
    loss, dlogits = L.softmax_cross_entropy(logits, y, smoothing=0.2)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    target = 0.8 * np.eye(5)[y] + 0.2 / 5
    assert loss == pytest.approx(-np.mean(np.sum(target * log_p, axis=1)), rel=1e-12)
    _, nll, _ = L.softmax_ce_terms(logits, y, smoothing=0.2)
    assert nll == pytest.approx(L.softmax_cross_entropy(logits, y)[0], rel=1e-12)

    def f() -> float:
        return L.softmax_cross_entropy(logits, y, smoothing=0.2)[0]

    assert rel_error(dlogits, numerical_gradient(f, logits)) < TOL


def test_softmax_is_stable_and_nonfinite_does_not_raise() -> None:
    loss, _ = L.softmax_cross_entropy(np.array([[1000.0, 0.0], [0.0, -1000.0]]), np.array([0, 0]))
    assert np.isfinite(loss) and loss == pytest.approx(0.0, abs=1e-12)
    with np.errstate(all="raise"):
        bad, _ = L.softmax_cross_entropy(np.array([[np.inf, 0.0]]), np.array([1]))
    assert not np.isfinite(bad)


def test_buffers_give_same_numbers_and_inputs_are_not_mutated(rng: np.random.Generator) -> None:
    x = rng.standard_normal((8, 4))
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    dout = rng.standard_normal((8, 4))
    snapshot = (x.copy(), gamma.copy(), beta.copy(), dout.copy())
    ref_out, ref_cache = _bn(x, gamma, beta)
    ref_grads = L.batchnorm_backward(dout, ref_cache)
    bufs = [np.full((8, 4), np.nan) for _ in range(3)] + [np.full(4, np.nan) for _ in range(2)]
    out, cache = _bn(x, gamma, beta, out=bufs[0], centered=bufs[1])
    grads = L.batchnorm_backward(dout, cache, dx=bufs[2], dgamma=bufs[3], dbeta=bufs[4])
    assert out is bufs[0] and grads[0] is bufs[2]
    np.testing.assert_array_equal(out, ref_out)
    for got, want in zip(grads, ref_grads, strict=True):
        np.testing.assert_array_equal(got, want)
    for before, after in zip(snapshot, (x, gamma, beta, dout), strict=True):
        np.testing.assert_array_equal(before, after)
    _, relu_cache = L.relu_forward(x, out=np.empty_like(x))
    np.testing.assert_array_equal(
        L.relu_backward(dout, relu_cache, dx=np.empty_like(x)), dout * (x > 0)
    )
    np.testing.assert_array_equal(snapshot[3], dout)
