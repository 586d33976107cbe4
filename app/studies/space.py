"""A study's search space: which RunConfig fields it draws, and from which distribution.

The body's ``space`` maps a RunConfig field to one of (docs/api.md, "Studies"):

- ``{"low", "high", "log": bool}``: a number (an int where the field is an int), uniform, or
  uniform in log space with ``log`` (a learning rate between 1e-4 and 1 on a log scale);
- ``{"choices": [...]}``: one of these values (any value the field takes, a list of widths too);
- ``{"low", "high", "log_one_minus": true}``: an averaging parameter (momentum, beta1, beta2,
  bn_momentum, rms_decay), for which 1 - x is drawn log-uniformly in [1 - high, 1 - low]: as
  much search between 0.9 and 0.99 as between 0.99 and 0.999.

Every check here answers a 422 naming the field (``SpaceError``): a field RunConfig does not
have, one that defines the data or is no setting of the training (comparing trials on
different data, or by how often they are measured, is meaningless), an empty or inverted range,
log with low <= 0, bounds RunConfig itself refuses.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import ValidationError

from engine import RunConfig

# Fields a space may not name: the data (trials must be compared on the same validation set),
# the measuring (how often a trial is evaluated changes no weight), the range test's knobs,
# and the seed (tuning a seed fits noise).
NOT_SEARCHABLE = frozenset(
    {
        "dataset", "val_fraction", "data_seed", "n_samples", "n_classes", "noise",
        "train_subset", "eval_every", "health_every", "lr_range_max", "lr_range_start", "seed",
    }
)  # fmt: skip
# Fields for which log_one_minus makes sense: averaging coefficients just below 1.
AVERAGING = frozenset({"momentum", "beta1", "beta2", "bn_momentum", "rms_decay"})
# Points per number range on a grid (``grid_points`` in the body; log-spaced where log).
DEFAULT_GRID_POINTS = 5
MAX_GRID = 10_000
MAX_CHOICES = 100

Kind = Literal["float", "int", "choices", "one_minus"]
Loc = tuple[str | int, ...]


class SpaceError(ValueError):
    """A space the study cannot use: ``loc`` (below ``body.space``) and a message for the 422."""

    def __init__(self, loc: Loc, msg: str, value: Any) -> None:
        super().__init__(msg)
        self.loc, self.msg, self.value = loc, msg, value


@dataclass(frozen=True)
class Param:
    """One searched field and its distribution."""

    field: str
    kind: Kind
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    @property
    def name(self) -> str:
        """The parameter's name in Optuna: ``1-momentum`` for a log_one_minus ``momentum``."""
        return f"1-{self.field}" if self.kind == "one_minus" else self.field

    def distribution(self) -> BaseDistribution:
        """Optuna's distribution of the drawn value."""
        if self.kind == "choices":
            return CategoricalDistribution([_encode(c) for c in self.choices])
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)  # type: ignore[arg-type]
        if self.kind == "one_minus":
            return FloatDistribution(1.0 - float(self.high), 1.0 - float(self.low), log=True)  # type: ignore[arg-type]
        return FloatDistribution(float(self.low), float(self.high), log=self.log)  # type: ignore[arg-type]

    def value(self, drawn: Any) -> Any:
        """The RunConfig value of what Optuna drew (x = 1 - u for log_one_minus)."""
        if self.kind == "choices":
            return _decode(drawn, self.choices)
        if self.kind == "one_minus":
            return 1.0 - float(drawn)
        return int(drawn) if self.kind == "int" else float(drawn)

    def grid(self, points: int) -> list[Any]:
        """The values a grid tries, as Optuna draws them: every choice, or ``points`` numbers
        from low to high (both included), evenly spaced, in log space where log (always for
        log_one_minus); for an int, the distinct rounded values."""
        if self.kind == "choices":
            return [_encode(c) for c in self.choices]
        dist = self.distribution()
        lo, hi = float(dist.low), float(dist.high)  # type: ignore[attr-defined]
        logged = self.log or self.kind == "one_minus"
        values = np.geomspace(lo, hi, points) if logged else np.linspace(lo, hi, points)
        if self.kind == "int":
            return sorted({min(max(round(float(v)), int(lo)), int(hi)) for v in values})
        values[0], values[-1] = lo, hi  # exact ends: Optuna checks a grid value is inside
        return [float(v) for v in values]

    def to_json(self) -> dict[str, Any]:
        """The distribution as the body gives it (what a study stores and serves)."""
        if self.kind == "choices":
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.kind == "one_minus":
            out["log_one_minus"] = True
        else:
            out["log"] = self.log
        return out


def _encode(choice: Any) -> Any:
    """Optuna takes None, bool, int, float and str choices: anything else (a list of widths)
    travels as its JSON text."""
    if choice is None or isinstance(choice, bool | int | float | str):
        return choice
    return json.dumps(choice)


def _decode(drawn: Any, choices: tuple[Any, ...]) -> Any:
    for choice in choices:
        if _encode(choice) == drawn:
            return choice
    raise ValueError(f"{drawn!r} is none of the choices")


def _field_kind(field: str) -> str:
    """'int', 'float', 'bool', 'literal' or 'other', from RunConfig's annotation."""
    annotation = RunConfig.model_fields[field].annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0] if len(args) == 1 else annotation
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if typing.get_origin(annotation) is Literal:
        return "literal"
    return "other"


def _check_value(base: dict[str, Any], field: str, value: Any, loc: Loc) -> None:
    """RunConfig must take ``value`` for ``field`` on top of the base config."""
    try:
        RunConfig(**{**base, field: value})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or field
        msg = f"{value!r} is not a valid {field}: {where}: {error['msg']}"
        raise SpaceError(loc, msg, value) from exc


def parse_space(raw: dict[str, dict[str, Any]], base: dict[str, Any]) -> list[Param]:
    """The space as Params (in the body's order), every range and choice checked against
    RunConfig on top of the ``base`` config; raises SpaceError naming the field."""
    if not raw:
        raise SpaceError((), "the space names no field", raw)
    params: list[Param] = []
    for field, dist in raw.items():
        params.append(_parse_one(field, dist, base))
    return params


def _parse_one(field: str, dist: dict[str, Any], base: dict[str, Any]) -> Param:
    loc: Loc = (field,)
    if field not in RunConfig.model_fields:
        raise SpaceError(loc, f"RunConfig has no field {field!r}", dist)
    if field in NOT_SEARCHABLE:
        raise SpaceError(loc, f"{field} cannot be searched (it is no setting of training)", dist)
    kind = _field_kind(field)
    choices = dist.get("choices")
    if choices is not None:
        values = tuple(choices)
        if len({json.dumps(_encode(v), sort_keys=True) for v in values}) != len(values):
            raise SpaceError((*loc, "choices"), "choices must be distinct", choices)
        for i, value in enumerate(values):
            _check_value(base, field, value, (*loc, "choices", i))
        return Param(field, "choices", choices=values)
    if kind not in ("int", "float"):
        raise SpaceError(loc, f"{field} is not a number: give it choices", dist)
    low, high = dist["low"], dist["high"]
    one_minus = bool(dist.get("log_one_minus"))
    log = bool(dist.get("log"))
    if kind == "int":
        for key, bound in (("low", low), ("high", high)):
            if not float(bound).is_integer():
                raise SpaceError((*loc, key), f"{field} is an integer: {key} must be one", bound)
        low, high = int(low), int(high)
        if one_minus:
            raise SpaceError((*loc, "log_one_minus"), f"{field} is an integer", True)
    if not low < high:
        raise SpaceError((*loc, "high"), f"empty range: high must be above low ({low})", high)
    if log and low <= 0:
        raise SpaceError((*loc, "low"), "a log range needs low > 0", low)
    if one_minus:
        if field not in AVERAGING:
            raise SpaceError(
                (*loc, "log_one_minus"),
                f"log_one_minus is for averaging parameters ({', '.join(sorted(AVERAGING))})",
                True,
            )
        if not (low >= 0 and high < 1):
            raise SpaceError(loc, "log_one_minus needs 0 <= low < high < 1", dist)
    for key, bound in (("low", low), ("high", high)):
        _check_value(base, field, bound, (*loc, key))
    kind_out: Kind = "one_minus" if one_minus else ("int" if kind == "int" else "float")
    return Param(field, kind_out, low=low, high=high, log=log)


def space_from_json(raw: dict[str, dict[str, Any]]) -> list[Param]:
    """A stored (already checked) space as Params."""
    out = []
    for field, dist in raw.items():
        if "choices" in dist:
            out.append(Param(field, "choices", choices=tuple(dist["choices"])))
        elif dist.get("log_one_minus"):
            out.append(Param(field, "one_minus", low=dist["low"], high=dist["high"]))
        else:
            kind: Kind = "int" if _field_kind(field) == "int" else "float"
            out.append(Param(field, kind, low=dist["low"], high=dist["high"], log=dist["log"]))
    return out


def distributions(params: list[Param]) -> dict[str, BaseDistribution]:
    """Optuna's distributions by parameter name (what ``study.ask`` is given)."""
    return {p.name: p.distribution() for p in params}


def grid_space(params: list[Param], points: int) -> dict[str, list[Any]]:
    """The grid a GridSampler walks: every combination once."""
    return {p.name: p.grid(points) for p in params}


def grid_size(params: list[Param], points: int) -> int:
    """How many combinations the grid has."""
    return math.prod(len(p.grid(points)) for p in params)


def config_values(params: list[Param], drawn: dict[str, Any]) -> dict[str, Any]:
    """The RunConfig values of one trial from what Optuna drew."""
    return {p.field: p.value(drawn[p.name]) for p in params}
