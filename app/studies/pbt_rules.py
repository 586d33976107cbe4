"""Population-based training's rules, pure functions of their input (tested on synthetic
rankings): Ray Tune's split of a ranked population into quarters, explore's perturbation of
one value, and the generator that makes each decision reproducible after a restart.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np

from app.api.schemas import FROZEN_ON_FORK
from app.studies.space import Param

QUANTILE = 0.25
RESAMPLE_PROBABILITY = 0.25
FACTORS = (1.2, 0.8)


def quartiles(ranked: list[Any], quantile: float = QUANTILE) -> tuple[list[Any], list[Any]]:
    """(bottom, top) of members ranked best first, as Ray Tune splits them: ceil(n * quantile)
    each, at most half of the population."""
    n = math.ceil(len(ranked) * quantile)
    n = min(n, len(ranked) // 2)
    if n == 0:
        return [], []
    return ranked[len(ranked) - n :], ranked[:n]


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A generator fixed by the study's seed and the decision's key: the same decision draws
    the same source and the same perturbation after a restart."""
    digest = hashlib.sha256(json.dumps([seed, *keys]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def draw(param: Param, rng: np.random.Generator) -> Any:
    """A value from the param's distribution (log-uniform where log; 1 - x log-uniform for an
    averaging parameter)."""
    if param.kind == "choices":
        return param.choices[int(rng.integers(len(param.choices)))]
    lo, hi = float(param.low), float(param.high)  # type: ignore[arg-type]
    if param.kind == "one_minus":
        u = math.exp(rng.uniform(math.log(1.0 - hi), math.log(1.0 - lo)))
        return 1.0 - u
    x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if param.log else rng.uniform(lo, hi)
    if param.kind == "int":
        return int(min(max(round(x), int(lo)), int(hi)))
    return float(x)


def explorable(params: list[Param]) -> list[Param]:
    """The params explore may change: those a fork can change."""
    return [p for p in params if p.field not in FROZEN_ON_FORK]


def perturb(param: Param, value: Any, rng: np.random.Generator) -> Any:
    """Ray Tune's explore of one value: resampled with probability 0.25; else a number times
    1.2 or 0.8 (1 - x scaled for an averaging parameter), kept inside the space's range, and a
    choice moved to a neighbouring one."""
    if rng.random() < RESAMPLE_PROBABILITY:
        return draw(param, rng)
    if param.kind == "choices":
        encoded = [json.dumps(c) for c in param.choices]
        i = encoded.index(json.dumps(value)) if json.dumps(value) in encoded else 0
        j = min(max(i + (1 if rng.random() < 0.5 else -1), 0), len(param.choices) - 1)
        return param.choices[j]
    factor = FACTORS[int(rng.integers(2))]
    lo, hi = float(param.low), float(param.high)  # type: ignore[arg-type]
    if param.kind == "one_minus":
        u = min(max((1.0 - float(value)) * factor, 1.0 - hi), 1.0 - lo)
        return 1.0 - u
    x = min(max(float(value) * factor, lo), hi)
    return round(x) if param.kind == "int" else x


def sampled_names(params: list[Param], values: dict[str, Any]) -> dict[str, Any]:
    """The values under the names a search's trial records them (``1-beta1`` = 1 - beta1)."""
    out = {}
    for p in params:
        if p.field in values:
            v = values[p.field]
            out[p.name] = 1.0 - v if p.kind == "one_minus" else v
    return out


def fmt(value: Any) -> str:
    """A value in a note: 4 significant digits for a float."""
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
