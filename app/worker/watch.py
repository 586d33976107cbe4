"""What a careful person watching a run would notice, as pure state machines fed its numbers.

No I/O here: ``Watch`` is fed each step's record (and its per-layer health, when measured) and
each evaluation, and returns ``Finding``s (alerts with a suggested remedy) and ``Order``s
(autopilot commands to queue). app/worker/alerts.py connects it to the session and the database,
and rebuilds it after a restart by feeding it the stored rows again (everything here is a
deterministic function of what was fed, so the rebuilt state is the one a worker that never
crashed has).

Detectors (thresholds below, documented in docs/alerts.md):

- ``divergence``: the mean training loss of the last ``SPIKE_SHORT`` steps is above
  ``SPIKE_FACTOR`` x the mean of the ``SPIKE_WINDOW`` steps before them (and ``SPIKE_MIN_RISE``
  nats above it), or a layer's gradient
  norm is ``GRAD_EXPLODE_FACTOR`` x its recent median (one alert for either). Remedy: divide the
  rate by 3.
- ``plateau``: the smoothed validation loss has not improved by ``PLATEAU_MIN_DELTA`` for
  ``PLATEAU_PATIENCE`` evaluations. When the layers' update ratios are below their healthy band
  at that moment it is reported as ``lr_too_low`` instead (remedy: multiply the rate by 3),
  otherwise as a true plateau (remedy: divide the rate by 10). Quiet while the run overfits.
  Each plateau alert doubles the patience for the next (``PLATEAU_BACKOFF``).
- ``overfitting``: the smoothed train/val gap (validation loss minus the evaluation-mode
  training loss) has grown at each of the last ``OVERFIT_PATIENCE`` evaluations and is above
  ``OVERFIT_MIN_GAP``. Remedy: go back to the best validation step with a third of the rate.
- ``update_ratio``: a layer's ||dW|| / ||W|| is ``UPDATE_RATIO_FAR`` x above its healthy band
  (remedy: divide by 3), or the median over layers that far below it (remedy: multiply by 3).

Each detector fires once when its condition becomes true and re-arms only when it clears
(``Edge``), and the per-step ones also wait ``*_COOLDOWN`` steps between two alerts: a noisy
condition never floods the page. No plateau or too-low alert where the schedule has decayed the
rate below ``DECAYED_FACTOR`` of its start (tiny updates are what it asks for there), and no
watch at all on a range test or an overfit check (app/worker/alerts.py).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

try:  # the healthy band lives with the health statistics (engine/health.py)
    from engine.health import HEALTHY_UPDATE_RATIO
except ImportError:  # pragma: no cover - an engine without per-layer health
    HEALTHY_UPDATE_RATIO = (1e-4, 1e-2)

# -- thresholds ----------------------------------------------------------------------------------

SPIKE_FACTOR = 2.0
"""Divergence coming: recent training loss above this many times its recent mean (issue 8)."""
SPIKE_SHORT = 5
"""Steps averaged for "recent" loss: single mini-batches of a healthy run reach 3.2x the mean of
the 50 before them (spirals), means of 5 stay below 1.7x (bench: docs/alerts.md)."""
SPIKE_MIN_RISE = 0.1
"""Nats the recent mean must also rise by: near zero loss (an overfit model at 0.07) a doubling
is mini-batch noise, not a divergence (a rate too high adds nats, not hundredths)."""
SPIKE_WINDOW = 50
"""Steps in the mean the recent loss is compared with (and needed before it is compared)."""
SPIKE_COOLDOWN = 100
"""Steps between two divergence alerts, even when the loss flickers across the threshold."""
GRAD_EXPLODE_FACTOR = 20.0
"""A layer's gradient norm this many times its median over the last health samples (healthy
default runs reach 2.5x on digits, 7.5x on spirals)."""
GRAD_HISTORY = 10
"""Health samples per layer in that median (at least half of them needed)."""
PLATEAU_PATIENCE = 10
"""Evaluations without improvement of the smoothed validation loss (Keras's patience)."""
PLATEAU_MIN_DELTA = 1e-4
"""An improvement smaller than this is none (Keras ReduceLROnPlateau's min_delta)."""
PLATEAU_BACKOFF = 2
"""After a plateau alert and the next improvement, the patience for the next one grows this
many times (10, 20, 40... evaluations): a run that keeps crawling down, as a noisy spirals run
does for 20k steps, got 13 plateau alerts with a fixed patience; a stalled one still gets its
first alert after PLATEAU_PATIENCE."""
SMOOTHING = 0.6
"""Weight of the debiased moving average of validation losses (TensorBoard's default, the one
the charts draw)."""
OVERFIT_PATIENCE = 10
"""Evaluations in a row at which the smoothed train/val gap grew."""
OVERFIT_MIN_GAP = 0.05
"""Nats of smoothed gap below which a growing gap is noise, not overfitting."""
UPDATE_RATIO_FAR = 10.0
"""How far outside HEALTHY_UPDATE_RATIO is "far": below 1e-5 or above 1 with the band 1e-4..1e-1
(a step that changes a layer by more than its own size is broken whatever the rate)."""
UPDATE_RATIO_COOLDOWN = 500
"""Steps between two update-ratio alerts."""
DECAYED_FACTOR = 0.1
"""Schedule factor below which the rate is deliberately small: no plateau or too-low alerts."""

# -- autopilot (Keras defaults) ------------------------------------------------------------------

POLICIES = ("reduce_lr_on_plateau", "pause_on_spike", "early_stopping")
REDUCE_FACTOR = 0.1
"""ReduceLROnPlateau: new rate = rate x this (Keras default factor)."""
REDUCE_PATIENCE = 10
"""ReduceLROnPlateau: evaluations without improvement before reducing (Keras default)."""
REDUCE_MIN_DELTA = 1e-4
"""ReduceLROnPlateau: smallest improvement that counts (Keras default, mode min)."""
REDUCE_COOLDOWN = 0
"""ReduceLROnPlateau: evaluations to wait after a reduction (Keras default)."""
EARLY_STOP_PATIENCE = 10
"""EarlyStopping: evaluations without improvement of the validation loss before stopping."""
EARLY_STOP_MIN_DELTA = 0.0
"""EarlyStopping: smallest improvement that counts (Keras default)."""

Kind = Literal["divergence", "plateau", "lr_too_low", "overfitting", "update_ratio"]


class LayerStats(Protocol):
    """The part of engine.health.LayerHealth the detectors read."""

    layer: int
    grad_norm: float
    update_ratio: float


@dataclass(frozen=True, slots=True)
class Remedy:
    """What to suggest: a rate change (``factor`` x the current rate), going back to the best
    validation step (``fork``, with ``factor`` x the rate), a pause or a stop."""

    type: Literal["set_lr", "fork", "pause", "stop"]
    factor: float | None = None
    step: int | None = None  # fork: the step to go back to (a checkpoint at or before it)


@dataclass(frozen=True, slots=True)
class Finding:
    """An alert: what is off (``message``, plain words) at ``step`` and what to try."""

    kind: Kind
    detector: str
    step: int
    message: str
    remedy: Remedy


@dataclass(frozen=True, slots=True)
class Order:
    """An autopilot command to queue: ``type`` set_lr (``lr``), pause or stop, and why."""

    policy: str
    type: Literal["set_lr", "pause", "stop"]
    reason: str
    lr: float | None = None
    best_step: int | None = None


def fmt(x: float) -> str:
    """Three significant digits, as the pages print numbers (app.web.present.number)."""
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.3g}"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


@dataclass
class Edge:
    """Fire when a condition becomes true, re-arm when it is false again; with a cooldown, also
    wait that many steps after the last firing (a condition that rises during it is not an
    alert: the one before covered it)."""

    cooldown: int = 0
    prev: bool = False
    last_fire: int | None = None

    def __call__(self, step: int, cond: bool) -> bool:
        ready = self.last_fire is None or step - self.last_fire >= self.cooldown
        fire = cond and not self.prev and ready
        self.prev = cond
        if fire:
            self.last_fire = step
        return fire


class Smoothed:
    """TensorBoard's debiased exponential moving average (what the charts draw)."""

    def __init__(self, weight: float = SMOOTHING) -> None:
        self.weight, self.last, self.n = weight, 0.0, 0

    def __call__(self, x: float) -> float:
        self.last = self.last * self.weight + (1 - self.weight) * x
        self.n += 1
        return self.last / (1 - self.weight**self.n)


# -- detectors -----------------------------------------------------------------------------------


class LossSpike:
    """The recent training loss against its recent mean (SPIKE_SHORT vs SPIKE_WINDOW steps)."""

    def __init__(self) -> None:
        self.losses: deque[float] = deque(maxlen=SPIKE_WINDOW + SPIKE_SHORT)

    def observe(self, loss: float) -> tuple[float, float] | None:
        """Take a step's loss; (recent mean, mean before) when it is above SPIKE_FACTOR x."""
        if not math.isfinite(loss):  # the run ends as diverged: nothing left to warn about
            return None
        self.losses.append(loss)
        if len(self.losses) < SPIKE_WINDOW + SPIKE_SHORT:
            return None
        values = list(self.losses)
        before = sum(values[:SPIKE_WINDOW]) / SPIKE_WINDOW
        recent = sum(values[SPIKE_WINDOW:]) / SPIKE_SHORT
        spiking = recent > SPIKE_FACTOR * before and recent - before > SPIKE_MIN_RISE
        return (recent, before) if spiking else None


class GradExplosion:
    """Each layer's gradient norm against its median over the last health samples."""

    def __init__(self) -> None:
        self.history: dict[int, deque[float]] = {}

    def observe(self, layers: Sequence[LayerStats]) -> tuple[float, int, float, float] | None:
        """Take a health sample; (ratio, layer, norm, median) of the worst exploding layer."""
        worst: tuple[float, int, float, float] | None = None
        for h in layers:
            past = self.history.setdefault(h.layer, deque(maxlen=GRAD_HISTORY))
            g = float(h.grad_norm)
            if len(past) >= GRAD_HISTORY // 2 and math.isfinite(g):
                median = statistics.median(past)
                if median > 0 and g > GRAD_EXPLODE_FACTOR * median:
                    ratio = g / median
                    if worst is None or ratio > worst[0]:
                        worst = (ratio, h.layer, g, median)
            if math.isfinite(g):
                past.append(g)
        return worst


class Divergence:
    """divergence: a loss spike or an exploding gradient norm, one alert for either (they come
    together: a rate too high shows in both within a few steps)."""

    def __init__(self) -> None:
        self.spike, self.grads = LossSpike(), GradExplosion()
        self.edge = Edge(SPIKE_COOLDOWN)

    def update(self, step: int, loss: float, health: Sequence[LayerStats] | None) -> Finding | None:
        spike = self.spike.observe(loss)
        grads = self.grads.observe(health) if health else None
        if not self.edge(step, spike is not None or grads is not None):
            return None
        if spike is not None:
            recent, before = spike
            message = (
                f"divergence coming: the training loss of the last {SPIKE_SHORT} steps averages "
                f"{fmt(recent)}, {fmt(recent / before)}x its mean of {fmt(before)} over the "
                f"{SPIKE_WINDOW} steps before: the learning rate is probably too high"
            )
        else:
            assert grads is not None
            ratio, layer, g, median = grads
            message = (
                f"divergence coming: layer {layer}'s gradient norm is {fmt(g)}, {fmt(ratio)}x "
                f"its recent median of {fmt(median)}: the gradients are exploding, the rate is "
                "probably too high"
            )
        return Finding("divergence", "divergence", step, message, Remedy("set_lr", 1 / 3))


class UpdateRatio:
    """update_ratio: a layer updating far too fast, or the layers far too slowly."""

    def __init__(self) -> None:
        self.high, self.low = Edge(UPDATE_RATIO_COOLDOWN), Edge(UPDATE_RATIO_COOLDOWN)
        self.median: float | None = None  # of the latest sample, for the plateau detector

    def update(self, step: int, layers: Sequence[LayerStats], decayed: bool) -> Finding | None:
        ratios = [(float(h.update_ratio), h.layer) for h in layers]
        finite = [r for r, _ in ratios if math.isfinite(r)]
        if not finite:
            return None
        lo, hi = HEALTHY_UPDATE_RATIO
        self.median = statistics.median(finite)
        top, layer = max((r, k) for r, k in ratios if math.isfinite(r))
        if self.high(step, top > hi * UPDATE_RATIO_FAR):
            message = (
                f"layer {layer} changes by {fmt(top)} of its weights at each step, far above "
                f"the healthy {fmt(lo)} to {fmt(hi)}: the learning rate is too high for it"
            )
            return Finding("update_ratio", "update_high", step, message, Remedy("set_lr", 1 / 3))
        if self.low(step, not decayed and self.median < lo / UPDATE_RATIO_FAR):
            message = (
                f"the layers change by {fmt(self.median)} of their weights at each step "
                f"(median), far below the healthy {fmt(lo)} to {fmt(hi)}: the learning rate "
                "is too low to make progress"
            )
            return Finding("update_ratio", "update_low", step, message, Remedy("set_lr", 3.0))
        return None


class Plateau:
    """plateau (or lr_too_low): the smoothed validation loss stopped improving."""

    def __init__(self) -> None:
        self.smooth = Smoothed()
        self.best = math.inf
        self.best_step = 0
        self.since = 0
        self.edge = Edge()
        self.patience = PLATEAU_PATIENCE
        self.fired = False  # since the last improvement

    def update(
        self, step: int, val_loss: float, *, quiet: bool, update_median: float | None
    ) -> Finding | None:
        if not math.isfinite(val_loss):
            return None
        s = self.smooth(val_loss)
        if s < self.best - PLATEAU_MIN_DELTA:
            self.best, self.best_step, self.since = s, step, 0
            if self.fired:  # back-off: a run that crawls on alerts less and less often
                self.patience, self.fired = self.patience * PLATEAU_BACKOFF, False
        else:
            self.since += 1
        if not self.edge(step, self.since >= self.patience and not quiet):
            return None
        self.fired = True
        lo = HEALTHY_UPDATE_RATIO[0]
        if update_median is not None and update_median < lo:
            message = (
                f"no progress for {self.since} evaluations (smoothed validation loss "
                f"{fmt(s)}, best {fmt(self.best)} at step {self.best_step}) while the layers "
                f"change by only {fmt(update_median)} of their weights per step (healthy from "
                f"{fmt(lo)}): the learning rate is too low, not a true plateau"
            )
            return Finding("lr_too_low", "plateau", step, message, Remedy("set_lr", 3.0))
        message = (
            f"plateau: the smoothed validation loss ({fmt(s)}) has not improved for "
            f"{self.since} evaluations (best {fmt(self.best)} at step {self.best_step}): a "
            "smaller learning rate usually gets a plateau moving again"
        )
        return Finding("plateau", "plateau", step, message, Remedy("set_lr", 0.1))


class Overfitting:
    """overfitting: the smoothed gap between validation and eval-mode training loss grows."""

    def __init__(self) -> None:
        self.smooth = Smoothed()
        self.gap: float | None = None
        self.growing = 0
        self.best_loss = math.inf
        self.best_step = 0
        self.edge = Edge()

    @property
    def overfitting(self) -> bool:
        """Alerted already, and the gap is still wide: the run overfits (whether or not the
        gap grew at the last evaluation)."""
        return self.edge.last_fire is not None and (self.gap or 0.0) > OVERFIT_MIN_GAP

    def update(self, step: int, val_loss: float, train_eval_loss: float | None) -> Finding | None:
        if not math.isfinite(val_loss):
            return None
        if val_loss < self.best_loss:
            self.best_loss, self.best_step = val_loss, step
        if train_eval_loss is None or not math.isfinite(train_eval_loss):
            return None
        gap = self.smooth(val_loss - train_eval_loss)
        self.growing = self.growing + 1 if self.gap is not None and gap > self.gap else 0
        self.gap = gap
        if not self.edge(step, self.growing >= OVERFIT_PATIENCE and gap > OVERFIT_MIN_GAP):
            return None
        message = (
            f"overfitting: the gap between validation and training loss (both in evaluation "
            f"mode) grew at each of the last {self.growing} evaluations, to {fmt(gap)}; the "
            f"best validation loss was {fmt(self.best_loss)} at step {self.best_step}"
        )
        return Finding(
            "overfitting", "overfitting", step, message, Remedy("fork", 1 / 3, self.best_step)
        )


# -- autopilot policies --------------------------------------------------------------------------


@dataclass
class ReduceLrOnPlateau:
    """Keras ReduceLROnPlateau on the validation loss (factor 0.1, patience 10, min_delta 1e-4,
    cooldown 0, min_lr 0)."""

    best: float = math.inf
    wait: int = 0
    cooldown: int = 0

    def update(self, val_loss: float, lr: float) -> Order | None:
        if not math.isfinite(val_loss):
            return None
        if self.cooldown > 0:
            self.cooldown -= 1
            self.wait = 0
        if val_loss < self.best - REDUCE_MIN_DELTA:
            self.best, self.wait = val_loss, 0
            return None
        if self.cooldown > 0:
            return None
        self.wait += 1
        if self.wait < REDUCE_PATIENCE:
            return None
        self.wait, self.cooldown = 0, REDUCE_COOLDOWN
        new = lr * REDUCE_FACTOR
        reason = (
            f"validation loss has not improved on {fmt(self.best)} for {REDUCE_PATIENCE} "
            f"evaluations: lr {fmt(lr)} x {REDUCE_FACTOR} = {fmt(new)}"
        )
        return Order("reduce_lr_on_plateau", "set_lr", reason, lr=new)


@dataclass
class EarlyStopping:
    """Keras EarlyStopping on the validation loss (patience 10, min_delta 0), ending the run at
    its best step: ``improved`` tells the caller to keep a checkpoint of that step."""

    best: float = math.inf
    best_step: int | None = None
    wait: int = 0
    improved: bool = False

    def update(self, step: int, val_loss: float) -> Order | None:
        self.improved = False
        if not math.isfinite(val_loss):
            return None
        if val_loss < self.best - EARLY_STOP_MIN_DELTA:
            self.best, self.best_step, self.wait, self.improved = val_loss, step, 0, True
            return None
        self.wait += 1
        if self.wait < EARLY_STOP_PATIENCE:
            return None
        reason = (
            f"validation loss has not improved on {fmt(self.best)} (step {self.best_step}) "
            f"for {EARLY_STOP_PATIENCE} evaluations: stopped; the best checkpoint is step "
            f"{self.best_step}"
        )
        return Order("early_stopping", "stop", reason, best_step=self.best_step)


# -- the whole watch -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one update produced: alerts to record, commands to queue, a checkpoint to keep."""

    findings: list[Finding] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    checkpoint: bool = False

    def __bool__(self) -> bool:
        return bool(self.findings or self.orders or self.checkpoint)


class Watch:
    """Every detector and the autopilot policies of one run, fed in step order.

    ``decayed(step)`` says whether the schedule has brought the rate below DECAYED_FACTOR of its
    start at that step. ``policies`` holds the policies switched on (``switch``).
    """

    def __init__(self, decayed: Callable[[int], bool] = lambda _s: False) -> None:
        self.decayed = decayed
        self.divergence, self.updates = Divergence(), UpdateRatio()
        self.plateau, self.overfit = Plateau(), Overfitting()
        self.policies: dict[str, Any] = {}

    @property
    def edges(self) -> dict[str, Edge]:
        """Each detector's trigger by detector name (alerts record it; a rebuild sets
        ``last_fire`` from them)."""
        return {
            "divergence": self.divergence.edge,
            "update_high": self.updates.high,
            "update_low": self.updates.low,
            "plateau": self.plateau.edge,
            "overfitting": self.overfit.edge,
        }

    def switch(self, policy: str, on: bool) -> None:
        """A policy switched on starts afresh (as a Keras callback at the start of training)."""
        if policy not in POLICIES:
            raise ValueError(f"unknown autopilot policy {policy!r}")
        if not on:
            self.policies.pop(policy, None)
        elif policy not in self.policies:
            self.policies[policy] = {
                "reduce_lr_on_plateau": ReduceLrOnPlateau,
                "early_stopping": EarlyStopping,
                "pause_on_spike": dict,
            }[policy]()

    def step(self, step: int, loss: float, health: Sequence[LayerStats] | None = None) -> Outcome:
        """After a training step (``health``: its per-layer statistics, when measured)."""
        out = Outcome()
        spike = self.divergence.update(step, loss, health)
        if health:
            ratio = self.updates.update(step, health, self.decayed(step))
            if ratio is not None:
                out.findings.append(ratio)
        if spike is not None:
            out.findings.insert(0, spike)
            if "pause_on_spike" in self.policies:
                reason = f"paused on a loss spike at step {step}: {spike.message}"
                out.orders.append(Order("pause_on_spike", "pause", reason))
        return out

    def evaluated(
        self, step: int, val_loss: float, train_eval_loss: float | None, lr: float
    ) -> Outcome:
        """After an evaluation at ``step`` (the rate ``lr`` is the one the next step uses)."""
        out = Outcome()
        overfit = self.overfit.update(step, val_loss, train_eval_loss)
        # No plateau where the schedule decayed the rate, where the autopilot handles plateaus,
        # or while the run overfits (a smaller rate is not what a rising val loss needs).
        handled = "reduce_lr_on_plateau" in self.policies
        quiet = self.decayed(step) or handled or self.overfit.overfitting
        plateau = self.plateau.update(
            step, val_loss, quiet=quiet, update_median=self.updates.median
        )
        out.findings.extend(f for f in (plateau, overfit) if f is not None)
        reduce = self.policies.get("reduce_lr_on_plateau")
        if reduce is not None:
            order = reduce.update(val_loss, lr)
            if order is not None:
                out.orders.append(order)
        stopping = self.policies.get("early_stopping")
        if stopping is not None:
            order = stopping.update(step, val_loss)
            out.checkpoint = stopping.improved
            if order is not None:
                out.orders.append(order)
        return out
