"""The new-run form, server side: its fields become a ``RunCreate`` exactly as ``POST /api/runs``
would receive it, and every problem is named next to the field it came from.

Why on the server: the options (datasets, optimizers, schedules), the defaults and the validation
all live in Python already (``engine.RunConfig``); a form that posts its fields here needs no
JavaScript to build nested JSON, and cannot drift from the config it fills.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from app.api.runs import create_run
from app.api.schemas import RunCreate
from app.db import Database
from app.settings import Settings
from app.web import run_summary
from app.web.pages import PACE_CHOICES
from engine import RunConfig

DEFAULT_PACE = 50
"""Steps per second the form starts at: a default digits run (2300 steps) then lasts 46 s
instead of about one, long enough to nurse."""

TEXT_FIELDS = ("dataset", "optimizer", "schedule")
NUMBER_FIELDS = ("lr", "batch_size", "epochs", "max_steps", "seed")
CONFIG_FIELDS = frozenset({*TEXT_FIELDS, *NUMBER_FIELDS, "hidden", "batchnorm"})
"""RunConfig fields the form has an input for; an error on any other one belongs to the
advanced JSON, the only other way to set it."""


class NewRunForm(BaseModel):
    """The form as posted: every value is the text of its input (empty = use the default)."""

    name: str = ""
    dataset: str = ""
    hidden: str = ""
    """Widths separated by commas or spaces; empty (FastAPI reads an empty form field as an
    absent one) is no hidden layer."""
    optimizer: str = ""
    schedule: str = ""
    lr: str = ""
    batch_size: str = ""
    epochs: str = ""
    max_steps: str = ""
    seed: str = ""
    pace: str = ""
    batchnorm: str | None = None
    """A checkbox: present when ticked, absent otherwise."""
    advanced: str = ""


@dataclass(frozen=True)
class FieldError:
    """One problem: ``loc`` as the API names it (``config.lr``), the form ``field`` to mark
    (None when it is about the whole config), and the reason."""

    loc: str
    field: str | None
    msg: str

    @property
    def label(self) -> str:
        """The location without the ``config.`` every field but name and pace shares."""
        return self.loc.removeprefix("config.") or "config"

    @property
    def inline(self) -> str:
        """The text beside the input: the advanced JSON sets many keys, so say which one."""
        if self.field == "advanced" and self.loc != "advanced":
            return f"{self.label}: {self.msg}"
        return self.msg


class FormInvalid(Exception):
    """The form cannot make a run; nothing was created."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.loc}: {e.msg}" for e in errors))
        self.errors = errors


def default_form() -> NewRunForm:
    """The form as first shown: RunConfig's own defaults, at the default pace."""
    d = RunConfig()
    return NewRunForm(
        dataset=d.dataset,
        hidden=", ".join(map(str, d.hidden)),
        optimizer=d.optimizer,
        schedule=d.schedule,
        lr=str(d.lr),
        batch_size=str(d.batch_size),
        epochs=str(d.epochs),
        max_steps="" if d.max_steps is None else str(d.max_steps),
        seed=str(d.seed),
        pace=str(DEFAULT_PACE),
        batchnorm="on" if d.batchnorm else None,
    )


def _pace(text: str) -> float | None:
    try:
        return float(text) if text.strip() else None
    except ValueError:
        return None


def form_context(
    form: NewRunForm | None = None, errors: Sequence[FieldError] = ()
) -> dict[str, Any]:
    """What ``_new_run_form.html`` needs: the values to show, the errors, and the options, all
    from Python (RunConfig's Literal types, engine.data.BUILTIN, the pace choices)."""
    form = form or default_form()
    return {
        "form": form,
        "form_errors": list(errors),
        "field_errors": {e.field: e.inline for e in reversed(errors) if e.field},
        "datasets": run_summary.DATASETS,
        "optimizers": run_summary.OPTIMIZERS,
        "schedules": run_summary.SCHEDULES,
        "pace_choices": PACE_CHOICES,
        "selected_pace": _pace(form.pace),
    }


def _locate(loc: tuple[Any, ...], msg: str, from_advanced: set[str]) -> FieldError:
    parts = [str(p) for p in loc if p != "body"]
    msg = msg.removeprefix("Value error, ")
    field: str | None = None
    if len(parts) > 1 and parts[0] == "config":
        key = parts[1]
        field = "advanced" if key in from_advanced or key not in CONFIG_FIELDS else key
    elif parts and parts[0] in ("name", "pace"):
        field = parts[0]
    return FieldError(".".join(parts), field, msg)


def _config(form: NewRunForm) -> tuple[dict[str, Any], set[str]]:
    """The config the fields describe, the advanced JSON merged on top, and the keys it set.

    Numbers stay text: RunConfig parses them (lax mode) and names the field when it cannot.
    """
    config: dict[str, Any] = {}
    for key in (*TEXT_FIELDS, *NUMBER_FIELDS):
        value = getattr(form, key).strip()
        if value:
            config[key] = value
    config["hidden"] = [part for part in re.split(r"[\s,]+", form.hidden.strip()) if part]
    config["batchnorm"] = form.batchnorm is not None
    if not form.advanced.strip():
        return config, set()
    try:
        extra = json.loads(form.advanced)
    except json.JSONDecodeError as exc:
        raise FormInvalid([FieldError("advanced", "advanced", f"not valid JSON ({exc})")]) from exc
    if not isinstance(extra, dict):
        raise FormInvalid([FieldError("advanced", "advanced", "must be a JSON object")])
    return {**config, **extra}, set(extra)


def build(form: NewRunForm) -> tuple[RunCreate, set[str]]:
    """The ``POST /api/runs`` body the form describes (and the config keys the advanced JSON
    set), or FormInvalid naming every field that is wrong."""
    config, from_advanced = _config(form)
    body: dict[str, Any] = {"config": config}
    if form.name.strip():
        body["name"] = form.name.strip()
    if form.pace.strip():
        body["pace"] = form.pace.strip()
    try:
        return RunCreate.model_validate(body), from_advanced
    except ValidationError as exc:
        errors = [_locate(e["loc"], e["msg"], from_advanced) for e in exc.errors()]
        raise FormInvalid(errors) from exc


def create(form: NewRunForm, db: Database, settings: Settings) -> dict[str, Any]:
    """Create the run exactly as ``POST /api/runs`` does (it is that endpoint's own function:
    the dataset path check, the stored config, the pace as the first command); the run object."""
    body, from_advanced = build(form)
    try:
        return create_run(body, db, settings)
    except RequestValidationError as exc:
        errors = [_locate(tuple(e["loc"]), e["msg"], from_advanced) for e in exc.errors()]
        raise FormInvalid(errors) from exc
