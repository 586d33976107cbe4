"""Coarse to fine: the space of a new study, shrunk around the best k trials of a parent.

For each number range, the new range spans the best trials' values plus half their spread on
each side (a tenth of the parent's width when they coincide), measured in log space for a log
range and in log(1 - x) for a log_one_minus one, then clipped to the parent's range: the child
never searches outside its parent. An int range is widened outward to whole numbers (and to at
least two values). A choice keeps only the values the best trials used.
"""

from __future__ import annotations

import math
from typing import Any

from app.studies.space import Param

PAD = 0.5  # of the best trials' spread, on each side
MIN_PAD = 0.1  # of the parent's width, when the best trials coincide


def narrow_space(params: list[Param], best: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The child's space (as the body gives one) from the parent's Params and the RunConfig
    values of its best trials (``best``, at least one)."""
    if not best:
        raise ValueError("narrowing needs at least one trial")
    out: dict[str, dict[str, Any]] = {}
    for p in params:
        values = [b[p.field] for b in best if p.field in b]
        out[p.field] = _narrow(p, values) if values else p.to_json()
    return out


def _narrow(p: Param, values: list[Any]) -> dict[str, Any]:
    if p.kind == "choices":
        kept = [c for c in p.choices if c in values]
        return {"choices": kept or list(p.choices)}
    low, high = float(p.low), float(p.high)  # type: ignore[arg-type]
    if p.kind == "one_minus":  # shrink u = 1 - x in log space, then map back
        u_lo, u_hi = _shrink([1.0 - float(v) for v in values], 1.0 - high, 1.0 - low, log=True)
        return {
            "low": max(low, 1.0 - u_hi),
            "high": min(high, 1.0 - u_lo),
            "log_one_minus": True,
        }
    lo, hi = _shrink([float(v) for v in values], low, high, log=p.log)
    if p.kind == "int":
        lo_i, hi_i = max(int(low), math.floor(lo)), min(int(high), math.ceil(hi))
        if lo_i == hi_i:  # at least two values, still inside the parent's range
            lo_i, hi_i = (lo_i - 1, hi_i) if hi_i == int(high) else (lo_i, hi_i + 1)
        return {"low": lo_i, "high": hi_i, "log": p.log}
    return {"low": max(low, lo), "high": min(high, hi), "log": p.log}


def _shrink(values: list[float], low: float, high: float, *, log: bool) -> tuple[float, float]:
    """[min - pad, max + pad] of ``values`` clipped to [low, high], in log space with ``log``."""
    f = math.log if log else float
    g = math.exp if log else float
    pts = [f(v) for v in values]
    a, b = f(low), f(high)
    lo, hi = min(pts), max(pts)
    pad = PAD * (hi - lo) if hi > lo else MIN_PAD * (b - a)
    lo, hi = max(a, lo - pad), min(b, hi + pad)
    return max(low, g(lo)), min(high, g(hi))
