"""Learning-rate schedules as multiplicative factors of the step position, and the anchor rule.

A schedule is a factor f(t) of the position t (steps completed), with f(0) = 1 and f never
increasing, except ``range_test``, which grows (the learning-rate range test, engine/lr_find.py).
The rate itself is pinned by an *anchor* (t0, X): "the step after t0 trains at exactly X". From
there the schedule scales the rate relative to the anchor:

    lr(t) = X * (f(t) / f(t0))            for t >= t0
    lr(t) = X                             when f(t0) == 0 (nothing left to scale)

A new run is anchored at (0, cfg.lr), so its rate is cfg.lr * f(t), the textbook schedule. A live
``Trainer.set_lr(X)`` at position t0 moves the anchor to (t0, X): the next step trains at exactly
X (f(t0) / f(t0) is exactly 1), and the schedule keeps its shape from there on. That is what makes
the learning-rate field honest: the number a user types is the number the next step uses.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config import RunConfig

__all__ = ["SCHEDULES", "LrAnchor", "Schedule", "lr_factor"]

SCHEDULES = ("constant", "step", "exponential", "cosine", "range_test")


def lr_factor(
    name: str,
    t: int,
    *,
    total: int,
    step_size: int = 1000,
    gamma: float = 0.5,
    min_factor: float = 0.0,
    start: int = 0,
    growth: float = 1.0,
) -> float:
    """Factor at position t (steps completed), in (0, 1] except for a cosine floor of 0.

    - constant: 1
    - step: gamma ** floor(t / step_size)        (a jump every step_size steps)
    - exponential: gamma ** (t / step_size)       (the same decay, smooth)
    - cosine: min_factor + (1 - min_factor) * (1 + cos(pi * t / total)) / 2, held at min_factor
      after `total` steps
    - range_test: growth ** (k / span), k = t - start clipped to [0, span] and
      span = total - start - 1: 1 at ``start``, ``growth`` at the last step (position total - 1),
      exponential in between
    """
    if name == "constant":
        return 1.0
    if name == "step":
        return gamma ** (t // step_size)
    if name == "exponential":
        return gamma ** (t / step_size)
    if name == "cosine":
        progress = min(t, total) / max(total, 1)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "range_test":
        span = max(total - start - 1, 1)
        return growth ** (min(max(t - start, 0), span) / span)
    raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")


@dataclass(frozen=True, slots=True)
class LrAnchor:
    """The step after position ``step`` trains at exactly ``lr``; the schedule scales from there."""

    step: int
    lr: float


@dataclass(frozen=True, slots=True)
class Schedule:
    """One run's schedule: a pure function of the position, given the run's length ``total``.

    Kept apart from the Trainer so the web app can say how a rate is made ("0.0046 = 0.01 x
    cosine 0.46") from a run's config and step alone, with the very same arithmetic.
    """

    name: str
    total: int
    step_size: int = 1000
    gamma: float = 0.5
    min_factor: float = 0.0
    start: int = 0
    growth: float = 1.0

    @classmethod
    def of(cls, cfg: RunConfig, total: int) -> Schedule:
        """The schedule a config asks for, on a run of ``total`` steps."""
        growth = cfg.lr_range_max / cfg.lr if cfg.schedule == "range_test" else 1.0
        return cls(
            cfg.schedule,
            total,
            cfg.lr_step_size,
            cfg.lr_gamma,
            cfg.lr_min_factor,
            cfg.lr_range_start,
            growth,
        )

    def factor(self, t: int) -> float:
        """f(t): the factor of the step after position t (1 at t = 0)."""
        return lr_factor(
            self.name,
            t,
            total=self.total,
            step_size=self.step_size,
            gamma=self.gamma,
            min_factor=self.min_factor,
            start=self.start,
            growth=self.growth,
        )

    def rate(self, anchor: LrAnchor, t: int) -> float:
        """The rate of the step after position t >= anchor.step (see the module docstring)."""
        f0 = self.factor(anchor.step)
        if f0 == 0.0:
            return anchor.lr
        return anchor.lr * (self.factor(t) / f0)

    def base(self, anchor: LrAnchor) -> float | None:
        """The rate at factor 1 (lr = base x f(t)); None when the anchor sits where f is 0 (or
        so small that the base would not be a normal finite number)."""
        f0 = self.factor(anchor.step)
        if f0 < sys.float_info.min:
            return None
        base = anchor.lr / f0
        return base if math.isfinite(base) else None
