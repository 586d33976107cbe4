"""state_dict -> bytes -> fresh Trainer continues bit for bit, with every stateful part in play."""

from __future__ import annotations

import numpy as np
import pytest

from engine import RunConfig, Trainer, state_from_bytes, state_to_bytes

TOTAL = 60


def _losses(t: Trainer, n: int) -> list[float]:
    return [t.step().loss for _ in range(n)]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("k", [1, 23, 37])  # right after the start, at an epoch edge, mid-epoch
def test_save_load_continue_is_bit_for_bit(optimizer: str, k: int) -> None:
    cfg = RunConfig(
        optimizer=optimizer,
        max_steps=TOTAL,
        dropout=0.3,
        schedule="cosine",
        lr=0.01 if optimizer != "sgd" else 0.1,
    )
    reference = Trainer(cfg)
    ref_losses = _losses(reference, k)
    reference.set_lr(reference.lr * 0.5)  # a live override before the save point counts too
    blob = state_to_bytes(reference.state_dict())
    ref_losses += _losses(reference, TOTAL - k)

    resumed = Trainer(cfg)
    resumed.load_state_dict(state_from_bytes(blob))
    assert resumed.step_count == k and resumed.lr == cfg.lr * 0.5
    tail = _losses(resumed, TOTAL - k)
    assert tail == ref_losses[k:]  # exact equality, not approx
    np.testing.assert_array_equal(resumed.model.theta, reference.model.theta)
    for name, value in reference.model.running.items():
        np.testing.assert_array_equal(resumed.model.running[name], value)
    assert resumed.evaluate() == reference.evaluate()
    assert resumed.finished and reference.finished


def test_state_dict_holds_everything_and_is_a_copy() -> None:
    t = Trainer(RunConfig(max_steps=10))
    _losses(t, 3)
    state = t.state_dict()
    assert set(state) >= {"params", "running", "optim", "base_lr", "step_count", "data", "rng"}
    assert set(state["optim"]["slots"]) == {"m", "v"} and state["optim"]["t"] == 3
    assert state["data"]["cursor"] == 3 and len(state["data"]["perm"]) == t.data.x_train.shape[0]
    w1 = state["params"]["W1"].copy()
    _losses(t, 1)
    np.testing.assert_array_equal(state["params"]["W1"], w1)


def test_fork_with_another_optimizer_keeps_weights_and_resets_moments() -> None:
    t = Trainer(RunConfig(max_steps=20))
    _losses(t, 5)
    fork = Trainer(RunConfig(max_steps=20, optimizer="momentum"))
    fork.load_state_dict(t.state_dict())
    np.testing.assert_array_equal(fork.model.theta, t.model.theta)
    assert fork.opt_state["t"] == 0 and not fork.opt_state["v"].any()
    assert fork.step().step == 6


def test_incompatible_state_is_rejected() -> None:
    state = Trainer(RunConfig(max_steps=2, hidden=[32])).state_dict()
    with pytest.raises(ValueError, match="shape"):
        Trainer(RunConfig(max_steps=2, hidden=[16])).load_state_dict(state)
    with pytest.raises(ValueError, match="training rows"):
        Trainer(RunConfig(max_steps=2, hidden=[32], val_fraction=0.3)).load_state_dict(state)


def test_round_trip_without_batchnorm_or_moments() -> None:
    """Empty parts (no running statistics, SGD's empty moment set) survive serialization."""
    cfg = RunConfig(hidden=[], optimizer="sgd", lr=0.1, max_steps=30)
    reference = Trainer(cfg)
    _losses(reference, 10)
    resumed = Trainer(cfg)
    resumed.load_state_dict(state_from_bytes(state_to_bytes(reference.state_dict())))
    assert _losses(resumed, 20) == _losses(reference, 20)
