"""Learning-rate schedules as multiplicative factors of the step position.

effective lr of step k (1-based) = base lr * factor(k - 1), where k - 1 is the number of steps
completed before it. The base rate is whatever the user last set (`Trainer.set_lr`); the position
never resets, so a live override changes the level and the schedule keeps its shape from where
it is.
"""

from __future__ import annotations

import math

__all__ = ["SCHEDULES", "lr_factor"]

SCHEDULES = ("constant", "step", "exponential", "cosine")


def lr_factor(
    name: str,
    t: int,
    *,
    total: int,
    step_size: int = 1000,
    gamma: float = 0.5,
    min_factor: float = 0.0,
) -> float:
    """Factor at position t (steps completed), in (0, 1] except for a cosine floor of 0.

    - constant: 1
    - step: gamma ** floor(t / step_size)        (a jump every step_size steps)
    - exponential: gamma ** (t / step_size)       (the same decay, smooth)
    - cosine: min_factor + (1 - min_factor) * (1 + cos(pi * t / total)) / 2, held at min_factor
      after `total` steps
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
    raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")
