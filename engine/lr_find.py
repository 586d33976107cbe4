"""The learning-rate range test: smoothed loss, when to stop, and the suggested rate.

The range test (Smith 2015, fastai's ``lr_find``, PyTorch Lightning's ``Tuner.lr_find``) trains a
few hundred steps while the rate grows exponentially (the ``range_test`` schedule,
engine/schedules.py) and watches the loss:

- the loss is smoothed as fastai does, an exponential moving average with debiasing
  (``avg = beta * avg + (1 - beta) * loss; smoothed = avg / (1 - beta ** n)``, beta 0.98);
- the test stops once the loss explodes: a non-finite loss, or a smoothed loss above
  ``STOP_FACTOR`` (4) times the best smoothed loss so far. That is the test's normal end, not a
  divergence of anything the user trained;
- the suggested rate is where the smoothed loss falls fastest against the rate on a log axis:
  the most negative d(smoothed loss) / d(log lr) (over a window of points, see ``suggest_lr``),
  leaving out the first ``SKIP_START`` and last
  ``SKIP_END`` points (the average is still settling at the start, and the end is the explosion),
  as fastai and Lightning do; no suggestion when the smoothed loss never fell by ``MIN_DROP``.

Pure functions of the (lr, loss) sequence, so a worker that restarts rebuilds the same state from
the stored rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["BETA", "STOP_FACTOR", "LossWatch", "smoothed", "suggest_lr"]

BETA = 0.98
STOP_FACTOR = 4.0
SKIP_START = 10
SKIP_END = 5
WINDOW = 0.05
MIN_DROP = 0.2
"""No suggestion unless the smoothed loss falls to at most (1 - MIN_DROP) of its value where the
suggestion's range begins: on a trained model the curve is flat until it explodes, and the
"steepest descent" of a flat curve is noise (it pointed at 2e-6 on a finished digits run)."""
"""Half-width of the slope's window, as a fraction of the points (see ``suggest_lr``)."""


class LossWatch:
    """Feeds on each step's loss; says when the range test should stop."""

    def __init__(self, beta: float = BETA, stop_factor: float = STOP_FACTOR) -> None:
        self.beta, self.stop_factor = beta, stop_factor
        self.avg = 0.0
        self.n = 0
        self.best = math.inf
        self.stop_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    def update(self, loss: float) -> bool:
        """Take one step's loss; True once the test should stop (and from then on)."""
        if self.done:
            return True
        if not math.isfinite(loss):
            self.stop_reason = f"non-finite loss ({loss})"
            return True
        self.n += 1
        self.avg = self.beta * self.avg + (1.0 - self.beta) * loss
        value = self.avg / (1.0 - self.beta**self.n)
        if value > self.stop_factor * self.best:
            self.stop_reason = (
                f"smoothed loss {value:.4g} above {self.stop_factor:g} x the best {self.best:.4g}"
            )
            return True
        self.best = min(self.best, value)
        return False

    @classmethod
    def replay(cls, losses: Iterable[float]) -> LossWatch:
        """The watch after these losses (a restarted worker rebuilds it from stored rows)."""
        watch = cls()
        for loss in losses:
            if watch.update(loss):
                break
        return watch


def smoothed(losses: Iterable[float], beta: float = BETA) -> np.ndarray:
    """The debiased moving average of the losses, up to (not including) the first non-finite
    one, which ends the test."""
    out: list[float] = []
    avg = 0.0
    for n, loss in enumerate(losses, start=1):
        if not math.isfinite(loss):
            break
        avg = beta * avg + (1.0 - beta) * loss
        out.append(avg / (1.0 - beta**n))
    return np.asarray(out, dtype=np.float64)


def suggest_lr(
    lrs: Iterable[float],
    losses: Iterable[float],
    *,
    skip_start: int = SKIP_START,
    skip_end: int = SKIP_END,
) -> float | None:
    """The rate at the steepest descent of the smoothed loss against log(lr), or None when the
    test has too few points (or rates that do not grow) to say, or when the loss never fell by
    ``MIN_DROP`` (a flat curve has no descent to point at).

    The slope at point i is a central difference over ``WINDOW`` of the points on each side
    (``(s[i+k] - s[i-k]) / (log lr[i+k] - log lr[i-k])``). A one-point difference (numpy's
    ``gradient``) is dominated by batch noise where the average is still short: on digits it
    picked the first point after ``skip_start`` for one seed in five.
    """
    smooth = smoothed(losses)
    rates = np.asarray(list(lrs), dtype=np.float64)[: len(smooth)]
    smooth = smooth[: len(rates)]
    k = max(1, round(len(smooth) * WINDOW))
    idx = np.arange(max(skip_start, k), len(smooth) - max(skip_end, k))
    if len(idx) < 1 or not np.all(rates > 0) or not np.all(np.diff(rates) > 0):
        return None
    first, lowest = smooth[idx[0]], float(np.min(smooth[idx[0] :]))
    if not lowest <= (1.0 - MIN_DROP) * first:
        return None
    log_lr = np.log(rates)
    slope = (smooth[idx + k] - smooth[idx - k]) / (log_lr[idx + k] - log_lr[idx - k])
    best = int(np.argmin(slope))
    if not slope[best] < 0:
        return None
    return float(rates[idx[best]])
