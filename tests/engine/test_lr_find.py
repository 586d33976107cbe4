"""The learning-rate range test: the range schedule's rates, the early stop, the smoothing and
the suggestion (engine/lr_find.py, the ``range_test`` schedule of engine/schedules.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from engine import RunConfig, Trainer
from engine.lr_find import LossWatch, smoothed, suggest_lr
from engine.schedules import lr_factor


def test_range_schedule_grows_exponentially_from_start_to_the_last_step() -> None:
    kw = {"total": 110, "start": 10, "growth": 1e6}
    f = [lr_factor("range_test", t, **kw) for t in range(0, 120)]
    assert f[:11] == [1.0] * 11  # before and at the start
    assert f[109] == pytest.approx(1e6)  # the last step trains at the top of the range
    assert f[115] == pytest.approx(1e6)  # held there
    ratios = np.diff(np.log(f[10:110]))
    assert np.allclose(ratios, math.log(1e6) / 99)


def test_trainer_rates_go_from_lr_to_lr_range_max() -> None:
    cfg = RunConfig(
        dataset="blobs", hidden=[4], n_samples=200, max_steps=50, batch_size=16,
        schedule="range_test", lr=1e-6, lr_range_max=1.0, optimizer="sgd",
    )  # fmt: skip
    trainer = Trainer(cfg)
    rates = [trainer.step().lr for _ in range(50)]
    assert rates[0] == 1e-6
    assert rates[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log(rates)), math.log(1e6) / 49)


def test_range_test_on_a_fork_starts_where_set_lr_anchors_it() -> None:
    """A fork's range starts at its fork step; set_lr(min) there pins the first rate, and the
    anchor rule keeps the growth (the API queues exactly that set_lr)."""
    cfg = RunConfig(
        dataset="blobs", hidden=[4], n_samples=200, max_steps=130, batch_size=16,
        schedule="range_test", lr=1e-5, lr_range_max=10.0, lr_range_start=30, optimizer="sgd",
    )  # fmt: skip
    trainer = Trainer(cfg)
    for _ in range(30):
        trainer.step()
    trainer.set_lr(1e-5)
    rates = [trainer.step().lr for _ in range(100)]
    assert rates[0] == 1e-5
    assert rates[-1] == pytest.approx(10.0)


def test_range_test_config_needs_a_growing_range() -> None:
    with pytest.raises(ValidationError, match="lr_range_max"):
        RunConfig(schedule="range_test", lr=1.0, lr_range_max=0.5)
    RunConfig(schedule="cosine", lr=1.0, lr_range_max=0.5)  # irrelevant elsewhere


def test_smoothing_is_the_debiased_moving_average() -> None:
    losses = [2.0, 1.0, 4.0]
    beta, avg, expected = 0.98, 0.0, []
    for n, loss in enumerate(losses, 1):
        avg = beta * avg + (1 - beta) * loss
        expected.append(avg / (1 - beta**n))
    assert np.allclose(smoothed(losses), expected)
    assert smoothed([3.0])[0] == pytest.approx(3.0)  # debiased: no pull towards 0
    assert len(smoothed([1.0, 2.0, math.nan, 1.0])) == 2  # the first non-finite loss ends it


def test_watch_stops_when_the_smoothed_loss_explodes() -> None:
    watch = LossWatch()
    assert not any(watch.update(1.0) for _ in range(20))
    steps = 0
    while not watch.update(100.0):
        steps += 1
        assert steps < 100
    assert watch.done and "above 4 x the best" in str(watch.stop_reason)
    assert watch.update(0.5)  # stays stopped


def test_watch_stops_on_a_non_finite_loss_and_replays() -> None:
    watch = LossWatch()
    assert not watch.update(1.0)
    assert watch.update(math.inf)
    assert "non-finite" in str(watch.stop_reason)
    again = LossWatch.replay([1.0, 0.9, math.nan, 0.1])
    assert again.done and again.n == 2
    assert not LossWatch.replay([1.0, 0.9, 0.8]).done


def test_suggestion_is_the_steepest_descent_against_log_lr() -> None:
    lrs = np.logspace(-6, 1, 200)
    # A loss that falls fastest (in log lr) at 1e-2, then rises.
    x = np.log10(lrs)
    losses = 2.0 - np.tanh((x + 2.0) * 1.5) + np.where(x > 0, (x * 4) ** 2, 0.0)
    suggested = suggest_lr(lrs, losses)
    assert suggested is not None
    # The moving average lags by ~1/(1 - beta) = 50 points = 1.75 decades here; the slope is
    # steepest shortly after 1e-2 in the smoothed curve.
    assert 1e-2 <= suggested <= 1e-2 * 10**1.9


def test_no_suggestion_from_too_few_or_flat_points() -> None:
    assert suggest_lr([1e-3, 1e-2], [1.0, 0.5]) is None
    assert suggest_lr(np.logspace(-5, 0, 100), np.ones(100) + np.linspace(0, 1, 100)) is None
    assert suggest_lr([1e-3] * 50, np.linspace(2, 1, 50)) is None  # rates that do not grow
    # A trained model: flat (noise of +-2%) until it explodes; the noise is no descent.
    rng = np.random.default_rng(0)
    flat = 0.25 * (1 + 0.02 * rng.standard_normal(200)) + np.where(np.arange(200) > 170, 1.0, 0)
    assert suggest_lr(np.logspace(-7, 1, 200), flat) is None
    assert suggest_lr(np.logspace(-7, 1, 200), flat * np.linspace(1.5, 1, 200)) is not None


def _range_test(cfg: dict, seed: int) -> float | None:
    trainer = Trainer(
        RunConfig(**cfg, seed=seed, lr=1e-5, lr_range_max=10.0, schedule="range_test",
                  max_steps=200)
    )  # fmt: skip
    watch, lrs, losses = LossWatch(), [], []
    while not trainer.finished:
        rec = trainer.step()
        lrs.append(rec.lr)
        losses.append(rec.loss)
        if watch.update(rec.loss):
            break
    assert watch.done, "the range up to 10 should blow this problem up"
    return suggest_lr(lrs, losses)


def _best_constant_rate(cfg: dict, seed: int, steps: int = 300) -> float:
    """The rate of a half-decade grid whose run ends with the lowest validation loss."""
    results = {}
    for lr in np.logspace(-4, 1, 11):
        trainer = Trainer(RunConfig(**cfg, seed=seed, lr=float(lr), schedule="constant",
                                    max_steps=steps))  # fmt: skip
        for _ in range(steps):
            trainer.step()
        loss = trainer.evaluate()["loss"]
        results[float(lr)] = loss if math.isfinite(loss) else math.inf
    return min(results, key=results.__getitem__)


def test_suggestion_is_within_3x_of_the_best_rate_on_digits() -> None:
    """Digits, one hidden layer of 32, Adam, no regularization: the rate a grid of constant-rate
    runs finds best (300 steps, lowest validation loss) is known by running it; the range
    test's suggestion lands within a factor of 3 of it. Measured, seeds 0-3: suggested 0.021,
    0.013, 0.014, 0.012 against a best of 0.01 each time.

    Plain SGD on the same problem is not used: its grid is flat from 0.3 to 1 (the best moves
    with the seed), and seed 2 suggested 0.24 against a "best" of 1.0.
    """
    cfg = {
        "dataset": "digits", "hidden": [32], "batchnorm": False, "dropout": 0.0,
        "label_smoothing": 0.0, "weight_decay": 0.0, "optimizer": "adam", "batch_size": 32,
    }  # fmt: skip
    for seed in range(4):
        suggested = _range_test(cfg, seed)
        best = _best_constant_rate(cfg, seed)
        assert suggested is not None
        assert best / 3 <= suggested <= best * 3, (seed, suggested, best)
