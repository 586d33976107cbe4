"""Request bodies, validated at the edge: a bad request is a 422 naming the field.

Commands are a union discriminated on ``type``, so ``{"type": "set_lr"}`` without ``lr``, an lr
that is not a finite positive number, or an unknown type are rejected before anything is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.admission import Unrunnable, check_runnable
from app.limits import run_memory_limit
from app.settings import Settings
from engine import RunConfig
from engine.config import INT64_MAX
from engine.data import BUILTIN

MAX_LR = 100.0
# Steps per second a run may be slowed to, at most: above it a pace is no slower than full speed.
MAX_PACE = 100_000.0

Pace = Annotated[float, Field(gt=0, le=MAX_PACE, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunCreate(_Strict):
    """``POST /api/runs``: an optional name and a RunConfig (every field has a default)."""

    name: str | None = Field(default=None, max_length=200)
    config: RunConfig = Field(default_factory=RunConfig)
    # Steps per second at most (null: as fast as it goes); queued as the run's first set_pace.
    pace: Pace | None = None
    # Autopilot policies switched on from the start (queued as the run's first commands).
    autopilot: list[AutopilotPolicy] = Field(default_factory=list, max_length=3)


class SetLr(_Strict):
    """The next step trains at exactly ``lr``; the schedule goes on relative to it."""

    type: Literal["set_lr"]
    lr: float = Field(gt=0, le=MAX_LR, allow_inf_nan=False)


class SetPace(_Strict):
    """Train at most ``steps_per_second`` steps a second from now on; null lifts the limit.

    A small model on digits does thousands of steps a second, faster than anyone can watch or
    react; a pace makes such a run one a person can nurse. It changes when steps happen, never
    what they compute.
    """

    type: Literal["set_pace"]
    steps_per_second: Pace | None


class Pause(_Strict):
    """Pause at the next step boundary (and checkpoint)."""

    type: Literal["pause"]


class Resume(_Strict):
    """Resume a paused run."""

    type: Literal["resume"]


class Step(_Strict):
    """Run exactly ``n`` more steps, then be paused."""

    type: Literal["step"]
    n: int = Field(ge=1, le=1_000_000)


class Stop(_Strict):
    """Checkpoint and end the run (status stopped)."""

    type: Literal["stop"]


class CheckpointNow(_Strict):
    """Write a checkpoint at the next step boundary."""

    type: Literal["checkpoint"]


AutopilotPolicy = Literal["reduce_lr_on_plateau", "pause_on_spike", "early_stopping"]
"""Autopilot policies (app/worker/watch.py POLICIES): each acts only by queuing an ordinary
command (set_lr, pause, stop) with source ``autopilot`` (docs/alerts.md)."""


class Autopilot(_Strict):
    """Switch an autopilot policy on or off (applied at the next step boundary, like any
    command, so a switch is an event on the curve)."""

    type: Literal["autopilot"]
    policy: AutopilotPolicy
    on: bool


Command = Annotated[
    SetLr | SetPace | Pause | Resume | Step | Stop | CheckpointNow | Autopilot,
    Field(discriminator="type"),
]


MAX_MORE_STEPS = 10_000_000


class ForkRequest(_Strict):
    """``POST /api/runs/{id}/fork``: continue from the checkpoint at ``step``.

    The checkpoint must exist at exactly that step (409 otherwise, naming the nearest ones): a
    step picked from the checkpoint list may have been thinned since the list was shown, and
    going on from another step silently would not be what the user chose. ``nearest: true``
    takes the newest checkpoint at or before ``step`` instead (e.g. a step read off the chart).

    ``more_steps`` N: train N steps after the fork step (the child's ``max_steps`` becomes the
    fork step + N), e.g. to go on with a run that finished; an explicit ``overrides.max_steps``
    that says otherwise is a 422.
    """

    step: int = Field(ge=0, le=INT64_MAX)
    nearest: bool = False
    overrides: dict[str, Any] = Field(default_factory=dict)
    name: str | None = Field(default=None, max_length=200)
    more_steps: int | None = Field(default=None, ge=1, le=MAX_MORE_STEPS, strict=True)


# Fields that define the data or the shape of the model (or its optimizer state): a fork cannot
# change them, because the parent's checkpoint would not fit.
FROZEN_ON_FORK = frozenset(
    {
        "dataset", "val_fraction", "data_seed", "n_samples", "n_classes", "noise", "hidden",
        "activation", "batchnorm", "bn_position", "init", "dtype", "batch_size",
        "seed", "train_subset",
    }
)  # fmt: skip


def invalid(loc: tuple[str | int, ...], msg: str, value: Any) -> RequestValidationError:
    """A 422 in FastAPI's own format, for checks pydantic cannot make alone."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg, "input": value}])


def config_for_storage(
    cfg: RunConfig, where: Settings | Path, loc: tuple[str | int, ...] = ("body", "config")
) -> dict[str, Any]:
    """The config as stored, once it is known to be runnable here (app/admission.py): a dataset
    path must resolve inside the data directory and be a dataset that fits the config, and the
    run must fit in memory. ``where``: the app's Settings (a bare data directory still works,
    with the machine's default memory limit).

    The path is stored resolved (absolute), so a worker started elsewhere finds the same file.
    """
    settings = where if isinstance(where, Settings) else Settings(data_dir=where)
    config = cfg.model_dump(mode="json")
    if cfg.dataset not in BUILTIN:
        config["dataset"] = str(_dataset_path(cfg, settings.data_dir, loc))
    try:
        check_runnable(RunConfig(**config), run_memory_limit(settings))
    except Unrunnable as exc:
        raise invalid((*loc, exc.field), str(exc), config.get(exc.field)) from exc
    return config


def _dataset_path(cfg: RunConfig, data_dir: Path, loc: tuple[str | int, ...]) -> Path:
    """The dataset file, resolved; a 422 unless it is an existing file in the data directory."""
    root = data_dir.resolve()
    try:  # "~nosuchuser/x" (RuntimeError), a name too long for the OS (OSError)
        raw = Path(cfg.dataset).expanduser()
        path = (raw if raw.is_absolute() else root / raw).resolve()
        inside, exists = path.is_relative_to(root), path.is_file()
    except (OSError, RuntimeError, ValueError) as exc:
        raise invalid((*loc, "dataset"), f"not a usable path: {exc}", cfg.dataset) from exc
    if not inside:
        raise invalid(
            (*loc, "dataset"), "dataset path must be inside the data directory", cfg.dataset
        )
    if not exists:
        raise invalid((*loc, "dataset"), "dataset file does not exist", cfg.dataset)
    return path


def stored_config(
    merged: dict[str, Any], where: Settings | Path, loc: tuple[str | int, ...] = ("body",)
) -> dict[str, Any]:
    """A config built from a parent's (a fork, a range test, a check), validated as RunConfig
    and made ready for storage; a field it fails on is a 422 at ``loc`` + the field."""
    try:
        cfg = RunConfig(**merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise invalid((*loc, *error["loc"]), error["msg"], merged) from exc
    return config_for_storage(cfg, where, loc)
