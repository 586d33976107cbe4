"""The MLP as a whole: gradient checks through the buffered fast path, layout, init, modes."""

from __future__ import annotations

import tracemalloc
from functools import partial

import numpy as np
import pytest

from engine.gradcheck import numerical_gradient, rel_error
from engine.layers import softmax_cross_entropy
from engine.model import MLP, ModelSpec
from engine.optim import adam, init_state
from engine.trainer import train_step

TOL = 1e-6


def _data(n: int = 12, d: int = 5, c: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, c, size=n)


def _check_whole_network(
    model: MLP, x: np.ndarray, y: np.ndarray, masks: dict[int, np.ndarray] | None = None
) -> float:
    model.loss_and_grad(x, y, masks=masks)
    analytic = model.grad.copy()

    def f() -> float:
        logits, _ = model.forward(x, train=True, masks=masks)
        return softmax_cross_entropy(logits, y, smoothing=model.spec.label_smoothing)[0]

    return rel_error(analytic, numerical_gradient(f, model.theta))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("hidden", [(), (7,), (6, 5)])
def test_whole_network_gradient_no_bn_no_dropout(activation: str, hidden: tuple[int, ...]) -> None:
    spec = ModelSpec(
        n_in=5, n_out=3, hidden=hidden, activation=activation, batchnorm=False, dtype="float64"
    )
    model = MLP(spec, np.random.default_rng(1))
    model.theta[model.n_weights :] = np.random.default_rng(2).standard_normal(
        model.theta.size - model.n_weights
    )  # non-zero biases, so their gradients are exercised too
    x, y = _data()
    assert _check_whole_network(model, x, y) < TOL


@pytest.mark.parametrize("bn_position", ["before", "after"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_whole_network_gradient_with_bn_and_fixed_dropout(
    bn_position: str, activation: str
) -> None:
    """The fast path with everything on: BN either side of the activation, fixed dropout masks,
    label smoothing."""
    spec = ModelSpec(
        n_in=5,
        n_out=3,
        hidden=(6, 4),
        activation=activation,
        batchnorm=True,
        bn_position=bn_position,
        dropout=0.3,
        label_smoothing=0.1,
        dtype="float64",
    )
    model = MLP(spec, np.random.default_rng(3))
    model.theta[model.n_weights :] += (
        np.random.default_rng(4).standard_normal(model.theta.size - model.n_weights) * 0.3
    )
    x, y = _data(n=10, seed=5)
    mrng = np.random.default_rng(6)
    masks = {i: (mrng.random((10, h)) >= 0.3) / 0.7 for i, h in enumerate(spec.hidden, start=1)}
    assert _check_whole_network(model, x, y, masks) < TOL


def test_parameter_layout_is_flat_named_and_weights_first() -> None:
    model = MLP(ModelSpec(n_in=4, n_out=3, hidden=(5, 6)), np.random.default_rng(0))
    names = list(model.params)
    assert names == ["W1", "W2", "W3", "b1", "gamma1", "beta1", "b2", "gamma2", "beta2", "b3"]
    assert model.params["W2"].shape == (5, 6) and model.params["gamma2"].shape == (6,)
    assert model.n_weights == 4 * 5 + 5 * 6 + 6 * 3
    for name, p in model.params.items():
        assert np.shares_memory(p, model.theta) and p.dtype == np.float32
        assert np.shares_memory(model.grads[name], model.grad)
    assert set(model.running) == {"running_mean1", "running_var1", "running_mean2", "running_var2"}


def test_plain_softmax_regression_has_one_layer() -> None:
    model = MLP(ModelSpec(n_in=4, n_out=3, hidden=()), np.random.default_rng(0))
    assert list(model.params) == ["W1", "b1"] and not model.running


@pytest.mark.parametrize(("init", "std"), [("he", np.sqrt(2 / 400)), ("xavier", np.sqrt(2 / 700))])
def test_init_scales(init: str, std: float) -> None:
    spec = ModelSpec(n_in=400, n_out=10, hidden=(300,), init=init, dtype="float64")
    model = MLP(spec, np.random.default_rng(0))
    w = model.params["W1"]
    assert abs(w.mean()) < 0.05 * std and w.std() == pytest.approx(std, rel=0.01)
    assert np.all(model.params["b1"] == 0) and np.all(model.params["gamma1"] == 1)


def test_same_rng_same_init_across_dtypes() -> None:
    a = MLP(ModelSpec(n_in=4, n_out=3, dtype="float64"), np.random.default_rng(9))
    b = MLP(ModelSpec(n_in=4, n_out=3, dtype="float32"), np.random.default_rng(9))
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-6)


def test_train_and_eval_modes_differ_as_they_should() -> None:
    spec = ModelSpec(n_in=5, n_out=3, hidden=(8,), dropout=0.5, dtype="float64")
    model = MLP(spec, np.random.default_rng(0))
    x, _ = _data(n=16)
    before = {k: v.copy() for k, v in model.running.items()}
    eval1, _ = model.forward(x, train=False)
    eval2, _ = model.forward(x, train=False)
    np.testing.assert_array_equal(eval1, eval2)  # evaluation is deterministic...
    for k, v in model.running.items():
        np.testing.assert_array_equal(v, before[k])  # ...and leaves running stats alone
    rng = np.random.default_rng(1)
    train1 = model.forward(x, train=True, rng=rng)[0].copy()
    train2 = model.forward(x, train=True, rng=rng)[0].copy()
    assert not np.allclose(train1, train2)  # fresh dropout masks
    assert not np.allclose(model.running["running_mean1"], before["running_mean1"])
    assert not np.allclose(train1, eval1)


def test_eval_batches_agree_with_one_pass() -> None:
    model = MLP(ModelSpec(n_in=5, n_out=3, hidden=(8,), dtype="float64"), np.random.default_rng(0))
    x, y = _data(n=50)
    whole = model.evaluate(x, y, batch=50)
    chunked = model.evaluate(x, y, batch=7)
    assert whole[0] == pytest.approx(chunked[0], rel=1e-12) and whole[1] == chunked[1]


def test_warm_training_step_allocates_no_activation_sized_arrays() -> None:
    """The hot path writes into buffers the model owns: once warm, a step's peak allocation
    stays below the size of a single (N, H) activation."""
    model = MLP(
        ModelSpec(n_in=784, n_out=10, hidden=(256, 256), dropout=0.2), np.random.default_rng(0)
    )
    state = init_state("adam", model.theta)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((128, 784), dtype=np.float32)
    y = rng.integers(0, 10, size=128)
    step = partial(train_step, model, adam, state, x, y, lr=1e-3, weight_decay=1e-4, rng=rng)
    step()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak - base < 128 * 256 * 4


def test_dropout_in_training_needs_an_rng() -> None:
    model = MLP(ModelSpec(n_in=5, n_out=3, hidden=(8,), dropout=0.5), np.random.default_rng(0))
    x, y = _data()
    with pytest.raises(ValueError, match="needs an rng"):
        model.loss_and_grad(x.astype(np.float32), y)
