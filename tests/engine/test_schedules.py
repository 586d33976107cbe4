"""LR schedule factors and the anchor rule: set_lr X makes the next step train at exactly X, and
the schedule goes on relative to it (engine/schedules.py)."""

from __future__ import annotations

import itertools
import math

import pytest

from engine import RunConfig, Trainer
from engine.schedules import LrAnchor, Schedule, lr_factor


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


def test_a_new_run_is_anchored_at_its_config_rate() -> None:
    """Anchor (0, cfg.lr): the textbook schedule, cfg.lr x f(t), bit for bit."""
    cfg = RunConfig(lr=0.1, schedule="step", lr_step_size=4, lr_gamma=0.5, max_steps=12)
    t = Trainer(cfg)
    assert t.lr_anchor == LrAnchor(0, 0.1)
    lrs = [t.step().lr for _ in range(6)]
    assert lrs == [0.1 * lr_factor("step", k, total=12, step_size=4) for k in range(6)]
    assert lrs == pytest.approx([0.1] * 4 + [0.05] * 2)


SCHEDULED = [
    {"schedule": "cosine", "lr_min_factor": 0.1},
    {"schedule": "step", "lr_step_size": 4, "lr_gamma": 0.5},
    {"schedule": "exponential", "lr_step_size": 5, "lr_gamma": 0.3},
]


@pytest.mark.parametrize("knobs", SCHEDULED, ids=lambda k: k["schedule"])
def test_set_lr_is_the_next_steps_rate_and_the_schedule_goes_on_relative(
    knobs: dict[str, object],
) -> None:
    t = Trainer(RunConfig(lr=0.1, max_steps=20, **knobs))
    for _ in range(7):
        t.step()
    f7 = t.lr_factor
    assert f7 < 1.0, "the schedule has decayed: the old rule would have scaled X down"
    t.set_lr(0.003)
    assert t.lr == 0.003 and t.lr_anchor == LrAnchor(7, 0.003)
    records = [t.step() for _ in range(13)]
    assert records[0].lr == 0.003, "exactly X, not X times the factor"
    for rec in records:
        f = t.schedule.factor(rec.step - 1)
        assert rec.lr == 0.003 * (f / f7)
    assert t.lr_base == pytest.approx(0.003 / f7)
    assert t.lr_base * t.lr_factor == pytest.approx(t.lr, rel=1e-12)


def test_step_schedule_jumps_relative_to_the_set_rate() -> None:
    cfg = RunConfig(lr=0.1, schedule="step", lr_step_size=4, lr_gamma=0.5, max_steps=12)
    t = Trainer(cfg)
    for _ in range(6):
        t.step()
    t.set_lr(1.0)  # at position 6 (factor 0.5): steps 7 and 8 at 1.0, then the next jump
    lrs = [t.step().lr for _ in range(6)]
    assert lrs == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    assert t.lr_base == pytest.approx(2.0) and t.lr_factor == pytest.approx(0.125)


def test_where_the_factor_is_zero_the_set_rate_holds() -> None:
    """An exponential that underflowed to 0 (as the end of a cosine with floor 0): the schedule
    has nothing left to scale, so a rate set there holds as it is, and has no base."""
    t = Trainer(RunConfig(lr=0.1, schedule="exponential", lr_step_size=1, lr_gamma=1e-200))
    for _ in range(3):
        t.step()
    assert t.lr_factor == 0.0 and t.lr == 0.0
    t.set_lr(0.02)
    assert [t.step().lr for _ in range(4)] == [0.02] * 4
    assert t.lr_base is None and t.lr == 0.02
    cosine_end = Schedule("cosine", total=10)
    assert cosine_end.factor(10) == 0.0
    assert cosine_end.rate(LrAnchor(10, 0.5), 12) == 0.5
    assert cosine_end.base(LrAnchor(10, 0.5)) is None
    assert cosine_end.base(LrAnchor(5, 0.5)) == pytest.approx(1.0)


def test_setting_the_rate_the_next_step_uses_changes_nothing() -> None:
    """Apply on an unchanged field: the anchor stays, every later rate is bit for bit the same."""
    cfg = RunConfig(lr=0.05, schedule="cosine", max_steps=30, hidden=[8])
    a, b = Trainer(cfg), Trainer(cfg)
    for _ in range(11):
        a.step()
        b.step()
    b.set_lr(b.lr)
    assert b.lr_anchor == a.lr_anchor == LrAnchor(0, 0.05)
    assert [b.step().lr for _ in range(19)] == [a.step().lr for _ in range(19)]


def test_the_older_base_rule_is_anchored_at_the_start() -> None:
    t = Trainer(RunConfig(lr=0.1, schedule="cosine", max_steps=10))
    for _ in range(5):
        t.step()
    t.set_lr_base(0.2)
    assert t.lr_anchor == LrAnchor(0, 0.2)
    assert t.lr == 0.2 * lr_factor("cosine", 5, total=10)


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
