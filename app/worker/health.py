"""Which steps the worker measures per-layer health at (engine/health.py).

Every ``health_every``-th step by number (steps 10, 20, ... for 10), so a run resumed after a
crash, or a fork, measures the same steps as one that never stopped, and its rows never clash.
"""

from __future__ import annotations

from engine import Trainer


def health_due(trainer: Trainer) -> bool:
    """True when the step about to be trained is one to measure (never with health_every 0)."""
    every = trainer.cfg.health_every
    return every > 0 and (trainer.step_count + 1) % every == 0
