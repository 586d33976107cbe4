"""The Trainer contract of docs/architecture.md: steps, lr rule, finishing, divergence."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from engine import RunConfig, StepRecord, Trainer
from engine.trainer import steps_per_epoch


def test_contract_basics() -> None:
    t = Trainer(RunConfig(max_steps=5))
    assert t.step_count == 0 and not t.finished and t.total_steps == 5
    rec = t.step()
    assert isinstance(rec, StepRecord)
    assert rec.step == 1 and t.step_count == 1
    assert isinstance(rec.loss, float) and isinstance(rec.acc, float)
    assert rec.lr == pytest.approx(t.cfg.lr)  # cosine factor is 1 at step 1
    while not t.finished:
        t.step()
    assert t.step_count == 5
    with pytest.raises(RuntimeError):
        t.step()
    ev = t.evaluate()
    assert set(ev) == {"loss", "acc"} and 0.0 <= ev["acc"] <= 1.0


def test_total_steps_from_epochs() -> None:
    t = Trainer(RunConfig(epochs=2, batch_size=64))
    n = t.data.x_train.shape[0]
    assert t.total_steps == 2 * steps_per_epoch(n, 64)


def test_same_seed_same_run_and_different_seed_differs() -> None:
    def losses(seed: int) -> list[float]:
        t = Trainer(RunConfig(max_steps=30, seed=seed, dropout=0.2))
        return [t.step().loss for _ in range(30)]

    assert losses(3) == losses(3)
    assert losses(3) != losses(4)


def test_divergence_reports_nonfinite_without_raising() -> None:
    t = Trainer(RunConfig(optimizer="sgd", lr=100.0, batchnorm=False, max_steps=60))
    with np.errstate(all="raise"):  # the engine must not leak floating-point errors
        losses = [t.step().loss for _ in range(60)]
    assert not all(math.isfinite(v) for v in losses)
    assert not math.isfinite(t.evaluate()["loss"])


def _epoch(t: Trainer) -> list[np.ndarray]:
    return [t._next_indices() for _ in range(t.steps_per_epoch)]


@pytest.mark.parametrize(
    ("batch_size", "sizes_tail"), [(64, [64, 29]), (41, [41, 2]), (479, [479])]
)
def test_each_epoch_sees_every_sample_once_and_no_batch_of_one(
    batch_size: int, sizes_tail: list[int]
) -> None:
    t = Trainer(RunConfig(batch_size=batch_size))  # 1437 training rows = 22 * 64 + 29 = 35 * 41 + 2
    n = t.data.x_train.shape[0]
    first, second = _epoch(t), _epoch(t)
    for epoch in (first, second):
        np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(n))
        assert min(len(b) for b in epoch) >= 2
    assert [len(b) for b in first[-len(sizes_tail) :]] == sizes_tail
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))  # reshuffled


def test_remainder_of_one_joins_the_last_batch() -> None:
    assert steps_per_epoch(129, 64) == 2  # 64 + 65, never 64 + 64 + 1
    assert steps_per_epoch(130, 64) == 3  # 64 + 64 + 2
    assert steps_per_epoch(128, 64) == 2
    t = Trainer(RunConfig(batch_size=84, max_steps=40))  # 1437 = 17 * 84 + 9 -> 18 batches
    t2 = Trainer(RunConfig(batch_size=1436 // 2, max_steps=40))  # 1437 = 2 * 718 + 1
    assert t.steps_per_epoch == 18
    assert [len(b) for b in _epoch(t2)] == [718, 719]


def test_shuffle_order_comes_from_the_seed() -> None:
    a, b = Trainer(RunConfig(seed=1)), Trainer(RunConfig(seed=1))
    np.testing.assert_array_equal(np.concatenate(_epoch(a)), np.concatenate(_epoch(b)))
    c = Trainer(RunConfig(seed=2))
    assert not np.array_equal(np.concatenate(_epoch(a)), np.concatenate(_epoch(c)))


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"hidden": []}, ["W1", "b1"]),
        ({"hidden": [16, 8, 4]}, ["W1", "W2", "W3", "W4"]),
        ({"hidden": [16], "batchnorm": False}, ["W1", "W2", "b1", "b2"]),
    ],
)
def test_architecture_knobs(overrides: dict, names: list[str]) -> None:
    t = Trainer(RunConfig(max_steps=3, **overrides))
    assert all(name in t.model.params for name in names)
    if overrides.get("batchnorm") is False:
        assert not any(k.startswith("gamma") for k in t.model.params)
    shapes = [t.model.params[f"W{i}"].shape for i in range(1, len(t.cfg.hidden) + 2)]
    widths = [64, *t.cfg.hidden, 10]
    assert shapes == list(itertools.pairwise(widths))
    t.step()


@pytest.mark.parametrize(
    "overrides",
    [
        {"activation": "tanh"},
        {"bn_position": "after"},
        {"init": "xavier"},
        {"dtype": "float64"},
        {"batchnorm": False, "batch_size": 1, "optimizer": "sgd", "lr": 0.01, "max_steps": 1500},
        {"optimizer": "rmsprop", "lr": 1e-3},
        {"optimizer": "momentum", "lr": 0.05},
        {"schedule": "exponential", "lr_step_size": 50},
    ],
)
def test_variants_learn(overrides: dict) -> None:
    t = Trainer(RunConfig(**{"max_steps": 150, "dropout": 0.0, **overrides}))
    before = t.evaluate()["loss"]
    while not t.finished:
        t.step()
    after = t.evaluate()
    assert after["loss"] < before * 0.5 and after["acc"] > 0.85, after
    assert t.model.theta.dtype == np.dtype(t.cfg.dtype)
