"""pandamode's training engine: a pure-NumPy MLP trainer driven one step at a time.

The public surface is what app/ uses (see docs/architecture.md, "Engine contract").
"""

from engine.config import RunConfig
from engine.serialize import state_from_bytes, state_to_bytes
from engine.trainer import StepRecord, Trainer

__all__ = ["RunConfig", "StepRecord", "Trainer", "state_from_bytes", "state_to_bytes"]
