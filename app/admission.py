"""Can this config run here? The checks made when a run is created, forked, range-tested or
checked (app/api/schemas.py) and by ``pandamode train`` (app/headless.py), before any worker
loads it: the data is a dataset that fits the config, and the run fits in memory.

A refusal names the config field to change, so the API answers 422 at that field and the CLI
prints one line.
"""

from __future__ import annotations

from engine import RunConfig
from engine.data import DataShape, DoesNotFit, inspect_dataset
from engine.memory import MemoryEstimate, estimate, format_bytes

# The field that shrinks each part of the estimate (MemoryEstimate.largest).
_FIELD_OF_PART = {
    "parameters": "hidden",
    "training": "batch_size",
    "evaluation": "hidden",
    "dataset": "dataset",
}


class Unrunnable(ValueError):
    """The config cannot run: ``field`` is the one to change, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_runnable(cfg: RunConfig, memory_limit: int | None) -> tuple[DataShape, MemoryEstimate]:
    """The data's shape and the run's memory estimate; Unrunnable when it cannot run."""
    try:
        shape = inspect_dataset(cfg)
    except DoesNotFit as exc:
        raise Unrunnable(exc.field, str(exc)) from exc
    except ValueError as exc:
        raise Unrunnable("dataset", str(exc)) from exc
    need = estimate(cfg, shape)
    if memory_limit is not None and need.total > memory_limit:
        raise Unrunnable(
            _FIELD_OF_PART[need.largest()],
            f"this run needs {need.describe()}, more than the {format_bytes(memory_limit)} a "
            "run may use here (setting PANDAMODE_MAX_RUN_MEMORY)",
        )
    return shape, need
