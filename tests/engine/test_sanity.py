"""The initial-loss check (engine/sanity.py): a fresh network is within tolerance of ln C on the
built-in datasets; a deliberately broken initialization is flagged."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import RunConfig, Trainer
from engine.sanity import describe_initial_loss, initial_loss, initial_loss_check


@pytest.mark.parametrize("dataset", ["digits", "spirals", "moons", "blobs"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fresh_network_is_within_tolerance_of_ln_c(dataset: str, seed: int) -> None:
    trainer = Trainer(RunConfig(dataset=dataset, seed=seed))
    result = initial_loss(trainer)
    assert result.expected == pytest.approx(math.log(trainer.data.n_classes))
    assert result.ok, result


def test_weights_scaled_x100_are_flagged() -> None:
    trainer = Trainer(RunConfig(dataset="digits"))
    trainer.model.theta[: trainer.model.n_weights] *= 100
    result = initial_loss(trainer)
    assert not result.ok
    assert result.loss > 10 * result.expected


def test_huge_output_bias_is_flagged() -> None:
    trainer = Trainer(RunConfig(dataset="spirals"))
    last = trainer.model.n_layers
    bias = trainer.model.params[f"b{last}"]
    bias[...] = 0.0
    bias[0] = 50.0  # every sample predicted class 0 with certainty
    result = initial_loss(trainer)
    assert not result.ok


def test_the_check_leaves_the_run_unchanged() -> None:
    a, b = (
        Trainer(RunConfig(dataset="moons", max_steps=5)),
        Trainer(RunConfig(dataset="moons", max_steps=5)),
    )
    initial_loss(a)
    assert [a.step().loss for _ in range(5)] == [b.step().loss for _ in range(5)]


def test_tolerance_rule_and_payload() -> None:
    c10 = math.log(10)
    assert initial_loss_check(c10 + 1.9, 10).ok
    assert not initial_loss_check(c10 + 2.1, 10).ok
    assert not initial_loss_check(float("nan"), 10).ok
    big = math.log(1000)  # 0.5 ln C = 3.45 nats above the 2-nat floor
    assert initial_loss_check(big + 3.0, 1000).ok
    payload = initial_loss_check(float("inf"), 3).payload()
    assert payload["loss"] is None and payload["ok"] is False
    assert np.isclose(payload["expected"], math.log(3))


def test_train_subset_has_exactly_that_many_rows_and_keeps_validation_whole() -> None:
    full = Trainer(RunConfig(dataset="digits"))
    sub = Trainer(RunConfig(dataset="digits", train_subset=20, batch_size=20))
    assert sub.data.x_train.shape == (20, full.data.n_features)
    assert sub.data.y_train.shape == (20,)
    np.testing.assert_array_equal(sub.data.x_train, full.data.x_train[:20])
    np.testing.assert_array_equal(sub.data.x_val, full.data.x_val)
    assert sub.steps_per_epoch == 1


def test_train_subset_larger_than_the_split_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="train_subset=5000 is more than"):
        Trainer(RunConfig(dataset="moons", n_samples=100, train_subset=5000))
    with pytest.raises(ValueError, match="train_subset"):
        RunConfig(train_subset=1)


def test_the_note_says_it_in_plain_words() -> None:
    flagged = initial_loss_check(41.23, 10).payload()
    assert describe_initial_loss(flagged) == (
        "initial loss 41.2, expected ln 10 = 2.30: check the initialization"
    )
    fine = initial_loss_check(2.5, 10).payload()
    assert describe_initial_loss(fine) == (
        "initial loss 2.5, expected ln 10 = 2.30: as expected for a fresh network"
    )
    broken = initial_loss_check(float("nan"), 3).payload()
    assert describe_initial_loss(broken).startswith("initial loss not finite, expected ln 3")
