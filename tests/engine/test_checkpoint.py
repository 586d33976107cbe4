"""state_dict -> bytes -> fresh Trainer continues bit for bit, with every stateful part in play."""

from __future__ import annotations

import numpy as np
import pytest

from engine import RunConfig, Trainer, state_from_bytes, state_to_bytes
from engine.checkpoint import lr_anchor_of
from engine.schedules import LrAnchor, lr_factor

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
    new_lr = reference.lr * 0.5
    reference.set_lr(new_lr)  # a live override before the save point counts too
    blob = state_to_bytes(reference.state_dict())
    ref_losses += _losses(reference, TOTAL - k)

    resumed = Trainer(cfg)
    resumed.load_state_dict(state_from_bytes(blob))
    assert resumed.step_count == k and resumed.lr == new_lr
    assert resumed.lr_anchor == reference.lr_anchor
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
    assert set(state) >= {"params", "running", "optim", "lr_anchor", "step_count", "data", "rng"}
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


def test_resume_after_a_set_lr_keeps_its_anchor_bit_for_bit() -> None:
    """The anchor (t0, X) is state: saved after steps past t0, the continuation is the same."""
    cfg = RunConfig(max_steps=TOTAL, schedule="cosine", hidden=[32], lr=0.02)
    reference = Trainer(cfg)
    _losses(reference, 17)
    reference.set_lr(0.004)
    _losses(reference, 9)
    blob = state_to_bytes(reference.state_dict())
    resumed = Trainer(cfg)
    resumed.load_state_dict(state_from_bytes(blob))
    assert resumed.lr_anchor == LrAnchor(17, 0.004) and resumed.lr == reference.lr
    assert [r.lr for r in (resumed.step(), resumed.step())] == [
        r.lr for r in (reference.step(), reference.step())
    ]
    assert _losses(resumed, TOTAL - 28) == _losses(reference, TOTAL - 28)


def test_a_state_older_than_anchors_means_base_times_schedule() -> None:
    """Checkpoints written before anchors hold ``base_lr`` only: base b x f(t), as it was."""
    cfg = RunConfig(max_steps=TOTAL, schedule="cosine", hidden=[32], lr=0.02)
    reference = Trainer(cfg)
    _losses(reference, 12)
    reference.set_lr_base(0.01)  # what an older worker's set_lr did
    state = reference.state_dict()
    del state["lr_anchor"]
    state["base_lr"] = 0.01
    old = Trainer(cfg)
    old.load_state_dict(state_from_bytes(state_to_bytes(state)))
    assert old.lr_anchor == LrAnchor(0, 0.01)
    assert old.lr == 0.01 * lr_factor("cosine", 12, total=TOTAL)
    assert _losses(old, TOTAL - 12) == _losses(reference, TOTAL - 12)


def test_base_lr_is_still_written_for_older_readers() -> None:
    t = Trainer(RunConfig(max_steps=TOTAL, schedule="cosine", hidden=[8], lr=0.02))
    _losses(t, 30)
    t.set_lr(0.001)
    state = t.state_dict()
    assert state["lr_anchor"] == {"step": 30, "lr": 0.001}
    assert state["base_lr"] * lr_factor("cosine", 30, total=TOTAL) == pytest.approx(0.001)
    assert lr_anchor_of({"base_lr": 0.3}) == LrAnchor(0, 0.3)
