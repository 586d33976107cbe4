"""How a run reads in a list: its learning rate, its layer widths, its settings side by side.

Kept apart from the routes so the runs list and the compare page say the same thing about a run,
and so the rules (a rate of 1.5e-4 never reads "0"; a built-in dataset's input and output widths
are known without loading it) are tested once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

from app.models import RUN_STATUSES
from app.web import present
from engine import RunConfig
from engine.data import BUILTIN

FEATURES: dict[str, int] = {"digits": 64, "spirals": 2, "moons": 2, "blobs": 2}
"""Input width of each built-in dataset (sklearn's 8x8 digits; the generated ones are 2-D)."""
assert set(FEATURES) == set(BUILTIN), "a new built-in dataset needs its input width here"

rate = present.number
"""A learning rate for people, as the run page writes it: ``1.5e-4``, ``0.0046``, never a "0"
that is only a rounding (app/web/present.py is the one formatter of rates)."""


def layers(config: dict[str, Any]) -> str:
    """The network's widths: ``64-128-128-10`` for a built-in dataset, ``128, 128`` (the hidden
    widths only) when the data is a file whose shape is unknown until it is read."""
    hidden = [int(w) for w in config.get("hidden", [])]
    n_in, n_out = FEATURES.get(str(config.get("dataset"))), present.classes(config)
    if n_in is None or n_out is None:
        return ", ".join(map(str, hidden)) if hidden else "no hidden layer"
    return "-".join(map(str, [n_in, *hidden, n_out]))


def dataset_name(config: dict[str, Any]) -> str:
    """A built-in dataset's name, or a file's base name (paths are stored absolute)."""
    dataset = str(config.get("dataset", ""))
    return dataset if dataset in BUILTIN else dataset.replace("\\", "/").rsplit("/", 1)[-1]


def choices(field: str) -> tuple[str, ...]:
    """The allowed values of a ``Literal`` field of RunConfig (e.g. the optimizers)."""
    return tuple(get_args(RunConfig.model_fields[field].annotation))


DATASETS: tuple[str, ...] = BUILTIN
OPTIMIZERS: tuple[str, ...] = choices("optimizer")
SCHEDULES: tuple[str, ...] = choices("schedule")
STATUSES: tuple[str, ...] = RUN_STATUSES


def config_table(
    configs: Sequence[dict[str, Any]],
) -> tuple[list[tuple[str, list[Any]]], list[tuple[str, Any]]]:
    """Rows ``(field, [value per run])`` where the runs differ, and ``(field, value)`` where they
    agree. Fields come in RunConfig's order (data, architecture, optimization, loop), then any
    stored field RunConfig no longer knows."""
    known = list(RunConfig.model_fields)
    extra = sorted({key for config in configs for key in config} - set(known))
    missing = object()
    differ: list[tuple[str, list[Any]]] = []
    same: list[tuple[str, Any]] = []
    for field in known + extra:
        values = [config.get(field, missing) for config in configs]
        if all(v is missing for v in values):
            continue
        shown = [None if v is missing else v for v in values]
        if all(v == values[0] for v in values):
            same.append((field, shown[0]))
        else:
            differ.append((field, shown))
    return differ, same


def setting(value: Any) -> str:
    """A config value in a table cell: lists as ``128, 128``, None as a dash, floats short."""
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "[]"
    if isinstance(value, float):
        return rate(value)
    return str(value)
