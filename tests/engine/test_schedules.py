"""LR schedule factors and the live-override rule: lr = base * factor(steps completed)."""

from __future__ import annotations

import itertools
import math

import pytest

from engine import RunConfig, Trainer
from engine.schedules import lr_factor


def test_constant() -> None:
    assert [lr_factor("constant", t, total=10) for t in (0, 5, 100)] == [1.0, 1.0, 1.0]


def test_step_decay_jumps_every_step_size() -> None:
    f = [lr_factor("step", t, total=100, step_size=10, gamma=0.5) for t in (0, 9, 10, 19, 20)]
    assert f == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_exponential_is_the_smooth_step_decay() -> None:
    assert lr_factor("exponential", 5, total=100, step_size=10, gamma=0.25) == pytest.approx(0.5)
    assert lr_factor("exponential", 20, total=100, step_size=10, gamma=0.5) == pytest.approx(0.25)


def test_cosine_goes_from_one_to_floor_and_stays() -> None:
    kw = {"total": 100, "min_factor": 0.1}
    assert lr_factor("cosine", 0, **kw) == 1.0
    assert lr_factor("cosine", 50, **kw) == pytest.approx(0.55)
    assert lr_factor("cosine", 100, **kw) == pytest.approx(0.1)
    assert lr_factor("cosine", 150, **kw) == pytest.approx(0.1)
    assert lr_factor("cosine", 25, total=100) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)


def test_unknown_schedule() -> None:
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor("warmup", 0, total=1)


def test_trainer_applies_schedule_and_live_override_keeps_position() -> None:
    cfg = RunConfig(lr=0.1, schedule="step", lr_step_size=4, lr_gamma=0.5, max_steps=12)
    t = Trainer(cfg)
    lrs = [t.step().lr for _ in range(6)]
    assert lrs == pytest.approx([0.1] * 4 + [0.05] * 2)
    t.set_lr(1.0)  # the user's new base rate; the schedule stays at its position (step 6)
    assert t.lr == 1.0
    assert t.current_lr() == pytest.approx(0.5)
    lrs = [t.step().lr for _ in range(6)]
    assert lrs == pytest.approx([0.5, 0.5, 0.25, 0.25, 0.25, 0.25])


def test_cosine_trainer_reaches_floor_at_the_end() -> None:
    t = Trainer(RunConfig(schedule="cosine", lr=0.2, lr_min_factor=0.05, max_steps=10))
    records = [t.step() for _ in range(10)]
    assert records[0].lr == pytest.approx(0.2)
    assert all(a.lr > b.lr for a, b in itertools.pairwise(records))
    assert t.current_lr() == pytest.approx(0.2 * 0.05)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_set_lr_rejects_nonsense(bad: float) -> None:
    t = Trainer(RunConfig(max_steps=2))
    with pytest.raises(ValueError, match="lr must be"):
        t.set_lr(bad)
    assert t.lr == RunConfig().lr
