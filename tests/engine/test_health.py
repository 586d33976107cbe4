"""Per-layer health (engine/health.py): each statistic against a hand computation on a tiny
network, dead ReLUs, non-finite values, plain words, and a measured step that trains exactly
like an unmeasured one."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
from pydantic import ValidationError

from engine import RunConfig, Trainer
from engine.gradcheck import numerical_gradient
from engine.health import (
    HEALTHY_UPDATE_RATIO,
    LayerHealth,
    measure,
    problems,
    snapshot,
)
from engine.model import MLP, ModelSpec
from engine.optim import init_state, sgd
from engine.trainer import train_step

LR, WD, EPS = 0.1, 0.01, 1e-5


def _tiny(activation: str, batchnorm: bool, seed: int = 0) -> tuple[MLP, np.ndarray, np.ndarray]:
    """A 3-4-2 network in float64 (no dropout, no smoothing) and a batch of 6."""
    spec = ModelSpec(
        n_in=3, n_out=2, hidden=(4,), activation=activation, batchnorm=batchnorm,
        bn_momentum=0.9, bn_eps=EPS, dropout=0.0, label_smoothing=0.0, dtype="float64",
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    model = MLP(spec, rng)
    x = rng.standard_normal((6, 3))
    y = np.array([0, 1, 1, 0, 1, 0])
    if batchnorm:  # running statistics that differ from any batch's, so the shift is not trivial
        model.running["running_mean1"][...] = [0.3, -0.2, 0.1, 0.0]
        model.running["running_var1"][...] = [1.5, 0.5, 2.0, 1.0]
        model.params["gamma1"][...] = [1.2, 0.8, 1.0, 0.5]
        model.params["beta1"][...] = [0.1, -0.1, 0.2, 0.0]
    return model, x, y


def _hand_forward(
    w1: np.ndarray, model: MLP, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hidden input z, hidden output, logits), written out without the engine's layers."""
    p = model.params
    z = x @ w1 + p["b1"]
    h = z
    if model.spec.batchnorm:
        h = (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + EPS) * p["gamma1"] + p["beta1"]
    act = np.maximum(h, 0.0) if model.spec.activation == "relu" else np.tanh(h)
    return z, act, act @ p["W2"] + p["b2"]


def _hand_loss(w1: np.ndarray, w2: np.ndarray, model: MLP, x: np.ndarray, y: np.ndarray) -> float:
    p = dict(model.params)
    saved = p["W2"].copy()
    model.params["W2"][...] = w2
    _, _, logits = _hand_forward(w1, model, x)
    model.params["W2"][...] = saved
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def _measured_step(model: MLP, x: np.ndarray, y: np.ndarray) -> tuple[LayerHealth, ...]:
    before = snapshot(model)
    train_step(model, sgd, init_state("sgd", model.theta), x, y, lr=LR, weight_decay=WD)
    return measure(model, before, x.shape[0])


@pytest.mark.parametrize(("activation", "batchnorm"), [("relu", True), ("tanh", False)])
def test_each_statistic_against_a_hand_computation(activation: str, batchnorm: bool) -> None:
    model, x, y = _tiny(activation, batchnorm)
    w1, w2 = model.params["W1"].copy(), model.params["W2"].copy()
    running = {k: v.copy() for k, v in model.running.items()}
    z, act, logits = _hand_forward(w1, model, x)
    # Gradients of the plain data loss by centred differences of the hand-written loss, plus
    # the L2 term: what the optimizer is given.
    g1 = numerical_gradient(partial(_hand_loss, w1, w2, model, x, y), w1) + WD * w1
    g2 = numerical_gradient(partial(_hand_loss, w1, w2, model, x, y), w2) + WD * w2

    health = _measured_step(model, x, y)

    assert [h.layer for h in health] == [0, 1]
    first, out = health
    for h, w, g in ((first, w1, g1), (out, w2, g2)):
        assert h.grad_norm == pytest.approx(np.linalg.norm(g), rel=1e-6)
        assert h.weight_norm == pytest.approx(np.linalg.norm(w), rel=1e-12)
        # SGD: W_new - W_old = -lr * g
        assert h.update_ratio == pytest.approx(LR * np.linalg.norm(g) / np.linalg.norm(w), rel=1e-6)
    assert first.act_mean == pytest.approx(act.mean(), rel=1e-12)
    assert first.act_std == pytest.approx(act.std(), rel=1e-12)
    assert out.act_mean == pytest.approx(logits.mean(), rel=1e-12)
    assert out.act_std == pytest.approx(logits.std(), rel=1e-12)
    assert out.dead_frac is None and out.bn_shift is None
    if activation == "relu":
        assert first.dead_frac == pytest.approx(np.mean(np.all(act == 0, axis=0)))
    else:
        assert first.dead_frac is None
    if batchnorm:
        s_r = np.sqrt(running["running_var1"] + EPS)
        s_b = np.sqrt(z.var(axis=0) + EPS)
        mean_term = (z.mean(axis=0) - running["running_mean1"]) / s_r
        expected = np.mean(np.sqrt(mean_term**2 + (s_b / s_r - 1.0) ** 2))
        assert first.bn_shift == pytest.approx(expected, rel=1e-9)
        assert first.bn_shift > 0.1
    else:
        assert first.bn_shift is None


@pytest.mark.parametrize("batchnorm", [False, True])
def test_a_layer_forced_dead_counts_its_dead_units(batchnorm: bool) -> None:
    model, x, y = _tiny("relu", batchnorm)
    # Units 1 and 3 can never fire: a negative pre-activation for every row of any batch.
    if batchnorm:
        model.params["gamma1"][[1, 3]] = 0.0
        model.params["beta1"][[1, 3]] = -1.0
    else:
        model.params["W1"][:, [1, 3]] = 0.0
        model.params["b1"][[1, 3]] = -1.0
    model.params["W1"][:, [0, 2]] = [[1.0, -1.0]] * 3  # and units 0 and 2 fire for some rows
    model.params["b1"][[0, 2]] = 0.0
    first = _measured_step(model, x, y)[0]
    assert first.dead_frac == 0.5
    assert "layer 1: 50% dead ReLUs" not in problems([first])  # 50% is the limit, not above it
    model.params["gamma1" if batchnorm else "W1"][..., 0] = 0.0
    if not batchnorm:
        model.params["b1"][0] = -1.0
    else:
        model.params["beta1"][0] = -1.0
    first = _measured_step(model, x, y)[0]
    assert first.dead_frac == 0.75
    assert "layer 1: 75% dead ReLUs" in problems([first])


def test_non_finite_values_stay_non_finite() -> None:
    model, x, y = _tiny("relu", True)
    model.params["W1"][0, 0] = np.nan
    health = _measured_step(model, x, y)  # no exception, no warning turned error
    assert math.isnan(health[0].weight_norm)
    assert math.isnan(health[0].grad_norm)
    assert math.isnan(health[1].act_mean)
    assert problems(health)[0].startswith("layer 1: non-finite")


def test_a_zero_weight_matrix_gives_an_infinite_ratio_not_an_error() -> None:
    model, x, y = _tiny("tanh", False)
    model.params["W2"][...] = 0.0
    out = _measured_step(model, x, y)[1]
    assert out.weight_norm == 0.0
    assert out.update_ratio == math.inf


def test_plain_words_name_the_layer_and_the_cure() -> None:
    lo, hi = HEALTHY_UPDATE_RATIO
    slow = LayerHealth(0, 0.1, 1.0, lo / 33, 0.3, 0.5, 0.61, 0.01)
    fine = LayerHealth(1, 0.1, 1.0, 1e-3, 0.0, 1.0, None, None)
    words = problems([slow, fine])
    assert "layer 1: 61% dead ReLUs" in words
    assert "layer 1: updates 3e-06 of the weights: the rate may be too low" in words
    assert not any(w.startswith("layer 2") for w in words)
    fast = LayerHealth(1, 0.1, 1.0, hi * 5, 0.0, 1.0, None, None)
    assert problems([slow, fast])[-1].endswith("the rate may be too high")
    annealed = problems([slow, fine], lr_factor=0.02)
    assert (
        "layer 1: updates 3e-06 of the weights: expected, the schedule has brought the rate "
        "down to 2%" in annealed
    )
    stuck = LayerHealth(0, 1e-6, 1.0, 1e-3, 0.0, 1.0, None, None)
    assert problems([stuck, fine]) == [
        "layer 1: gradient norm 1.0e-06: the layer has stopped learning"
    ]


CONFIGS = [
    {"max_steps": 40, "hidden": [16, 8]},  # the default's kind: BN before ReLU, dropout, Adam
    {"max_steps": 40, "hidden": [16], "activation": "tanh", "batchnorm": False},
    {"max_steps": 40, "hidden": [8, 8], "bn_position": "after", "optimizer": "momentum"},
    {"max_steps": 40, "hidden": [], "dataset": "spirals", "batch_size": 30},
]


@pytest.mark.parametrize("overrides", CONFIGS)
def test_a_measured_step_trains_exactly_like_an_unmeasured_one(overrides: dict) -> None:
    cfg = RunConfig(**overrides)
    plain, measured = Trainer(cfg), Trainer(cfg)
    losses_plain, losses_measured = [], []
    while not plain.finished:
        losses_plain.append(plain.step().loss)
        rec = measured.step(health=measured.step_count % 3 == 0)
        losses_measured.append(rec.loss)
        if rec.health is not None:
            assert len(rec.health) == len(cfg.hidden) + 1
    assert losses_measured == losses_plain  # bit for bit
    assert np.array_equal(measured.model.theta, plain.model.theta)
    for key, value in plain.model.running.items():
        assert np.array_equal(measured.model.running[key], value)


def test_health_only_when_asked() -> None:
    t = Trainer(RunConfig(max_steps=5, hidden=[8]))
    assert t.step().health is None
    health = t.step(health=True).health
    assert health is not None and [h.layer for h in health] == [0, 1]
    assert all(math.isfinite(h.grad_norm) and h.grad_norm > 0 for h in health)


def test_health_every_is_validated() -> None:
    assert RunConfig().health_every > 0
    assert RunConfig(health_every=0).health_every == 0
    with pytest.raises(ValidationError, match="health_every"):
        RunConfig(health_every=-1)


def test_a_layer_wiped_to_zero_is_called_dead_not_non_finite() -> None:
    """Weights all 0 make the update ratio 0/0 (NaN): the words say what happened (a run set to
    lr 3 with weight decay showed 'non-finite gradients or weights' for such a layer)."""
    wiped = LayerHealth(0, 0.0, 0.0, math.nan, 0.0, 0.0, 1.0, 0.0)
    fine = LayerHealth(1, 0.5, 2.0, 1e-3, 0.1, 1.0, None, None)
    words = problems([wiped, fine])
    assert words[0].startswith("layer 1: every weight is 0: the layer is dead")
    assert not any("non-finite" in w for w in words)
