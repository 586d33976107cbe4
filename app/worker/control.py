"""What user commands do to a run being trained, kept apart from the I/O of the step loop.

``Control`` is the small state machine the commands drive (paused, steps left, stop,
checkpoint); ``apply_command`` maps one command row onto it and onto the Trainer. Each command
is applied at a step boundary and recorded at ``trainer.step_count`` (docs/architecture.md,
"Step numbering").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.worker.watch import POLICIES as AUTOPILOT_POLICIES


class LrSettable(Protocol):
    """The part of engine.Trainer commands touch."""

    def set_lr(self, lr: float) -> None: ...


@dataclass
class Control:
    """The run's control state, changed only by commands and by the step budget running out.

    ``pace`` is the most steps a second the loop may train (None: as fast as it goes);
    ``autopilot`` the policies switched on (app/worker/watch.py POLICIES).
    """

    paused: bool = False
    budget: int | None = None
    stop: bool = False
    checkpoint: bool = False
    pace: float | None = None
    autopilot: set[str] = field(default_factory=set)

    @property
    def should_step(self) -> bool:
        """Whether the loop trains now: not paused, or paused with single steps left."""
        if self.budget is not None:
            return self.budget > 0
        return not self.paused

    @property
    def idle(self) -> bool:
        """Paused with no ``step N`` steps owed: nothing to train until a command comes."""
        return self.paused and self.budget is None

    def count_step(self) -> bool:
        """Account for one step; True when a ``step N`` budget just ran out (pause now)."""
        if self.budget is None:
            return False
        self.budget -= 1
        if self.budget > 0:
            return False
        self.budget = None
        self.paused = True
        return True


def requested_lr(payload: dict[str, Any]) -> float:
    """The rate a ``set_lr`` asks for; KeyError, TypeError or ValueError if it is not one."""
    lr = float(payload["lr"])
    if not (math.isfinite(lr) and lr > 0.0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    return lr


def apply_command(
    control: Control, trainer: LrSettable, type_: str, payload: dict[str, Any]
) -> str | None:
    """Apply one command; returns an error text when it cannot apply (it is recorded, not raised).

    ``pause`` also cancels a pending ``step`` budget; ``step N`` while running means "run N more
    steps, then pause", so ``step`` always ends paused exactly N steps later.
    """
    if type_ == "set_lr":  # the next step trains at exactly lr (engine/schedules.py)
        try:
            trainer.set_lr(requested_lr(payload))
        except (KeyError, TypeError, ValueError) as exc:
            return f"set_lr rejected: {exc}"
    elif type_ == "set_pace":
        pace = payload.get("steps_per_second")
        if pace is not None:
            try:
                pace = float(pace)
            except (TypeError, ValueError):
                return f"set_pace rejected: {pace!r} is not a number"
            if not (math.isfinite(pace) and pace > 0):
                return f"set_pace rejected: steps_per_second must be > 0, got {pace!r}"
        control.pace = pace
    elif type_ == "pause":
        control.paused, control.budget, control.checkpoint = True, None, True
    elif type_ == "resume":
        control.paused, control.budget = False, None
    elif type_ == "step":  # a row written past the API may hold anything: refuse, never raise
        n = payload.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            return f"step rejected: n must be an integer >= 1, got {n!r}"
        control.budget = n
    elif type_ == "stop":
        control.stop = True
    elif type_ == "checkpoint":
        control.checkpoint = True
    elif type_ == "autopilot":  # the session's watch follows the set (app/worker/alerts.py)
        policy, on = payload.get("policy"), payload.get("on")
        if policy not in AUTOPILOT_POLICIES or not isinstance(on, bool):
            return f"autopilot rejected: policy {policy!r}, on {on!r}"
        (control.autopilot.add if on else control.autopilot.discard)(policy)
    else:
        return f"unknown command type {type_!r}"
    return None
