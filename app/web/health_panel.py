"""The run page's "Layer health" panel: small multiples of per-layer statistics over steps.

Server-drawn SVG (as app/web/lr_find.py draws the range test), one line per layer, each chart
with its healthy band shaded (the bands are engine/health.py's constants), and plain words for
what is off at the latest measured step. The panel is rendered once when the page loads
(``/runs/{id}/_health``) and then pushed: the stream's tail notices new health rows and asks the
fragments hook (app/web/fragments.py) for the ``health`` part, at most every couple of seconds per
run, whatever the number of viewers (app/stream.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment
from sqlalchemy.orm import Session

from app import crud
from app.api.deps import ReadSession
from app.crud.health import COLUMNS, health_series
from app.series import COLUMNS as SERIES_COLUMNS
from app.web import present
from engine.health import (
    BN_SHIFT_HIGH,
    DEAD_FRAC_HIGH,
    HEALTHY_ACT_STD,
    HEALTHY_GRAD_NORM,
    HEALTHY_UPDATE_RATIO,
    LayerHealth,
    problems,
)

router = APIRouter(include_in_schema=False)

FRAGMENT = "fragment-health"
"""SSE event name of the panel's pushes (app/stream.py, static/run.js)."""
MAX_STEPS = 200
"""Measured steps drawn per chart at most: a long run is thinned evenly (app/crud/health.py)."""
WIDTH, HEIGHT = 320, 150
LEFT, RIGHT, TOP, BOTTOM = 46, 8, 8, 22
PALETTE = ("#2f6fdf", "#d9822b", "#1f8a4c", "#8e44ad", "#c8312e", "#16a2b8", "#7a5c3e", "#555")
"""Line colour of layer k (cycled for deeper networks)."""

_INDEX = {name: k for k, name in enumerate(COLUMNS)}


@dataclass(frozen=True, slots=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True, slots=True)
class Line:
    layer: int
    colour: str
    segments: list[str]  # polyline point lists; a gap where a value is missing or not drawable


@dataclass(frozen=True, slots=True)
class Chart:
    """One small multiple, in user units of a WIDTH x HEIGHT viewBox."""

    key: str
    title: str
    log: bool
    band: tuple[float, float] | None  # the healthy band's top and bottom, in pixels
    band_text: str
    lines: list[Line]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    hidden_points: int  # non-finite values left out (nan, inf: the run is diverging)
    zero_points: int  # values at 0 a log axis cannot draw (e.g. updates once the rate is 0)


@dataclass(frozen=True, slots=True)
class Spec:
    key: str
    title: str
    log: bool
    band: tuple[float, float]
    band_text: str


SPECS = (
    Spec("grad_norm", "gradient norm", True, HEALTHY_GRAD_NORM, "healthy {0:g} to {1:g}"),
    Spec("update_ratio", "update / weight", True, HEALTHY_UPDATE_RATIO, "healthy {0:g} to {1:g}"),
    Spec("act_std", "activation std", True, HEALTHY_ACT_STD, "healthy {0:g} to {1:g}"),
    Spec("dead_frac", "dead ReLUs", False, (0.0, DEAD_FRAC_HIGH), "healthy up to {1:.0%}"),
    Spec("bn_shift", "BN running vs batch", False, (0.0, BN_SHIFT_HIGH), "healthy up to {1:g} std"),
)


def _finite(value: Any, log: bool) -> float | None:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if log and value <= 0:
        return None
    return float(value)


def _log_ticks(lo: float, hi: float, py: Callable[[float], float]) -> list[Tick]:
    every = max(1, math.ceil((hi - lo) / 4))
    return [Tick(py(d), f"1e{d}" if d else "1") for d in range(int(lo), int(hi) + 1, every)]


def chart(spec: Spec, rows: Sequence[Sequence[Any]], layers: list[int]) -> Chart | None:
    """The chart of ``spec.key`` over steps, one line per layer; None when no layer has it."""
    col = _INDEX[spec.key]
    per_layer: dict[int, list[tuple[int, float | None]]] = {k: [] for k in layers}
    hidden = zeros = 0
    for row in rows:
        raw = row[col]
        if raw is None:
            continue  # does not apply to this layer
        value = _finite(raw, spec.log)
        if value is None and isinstance(raw, int | float) and math.isfinite(raw):
            zeros += 1
        else:
            hidden += value is None
        per_layer.setdefault(int(row[1]), []).append((int(row[0]), value))
    per_layer = {k: v for k, v in per_layer.items() if v}
    if not per_layer:
        return None
    steps = [s for v in per_layer.values() for s, _ in v]
    x0, x1 = min(steps), max(steps)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    values = [y for v in per_layer.values() for _, y in v if y is not None]
    lo_band, hi_band = spec.band
    if spec.log:
        # The data's decades, stretched to a band edge within a decade of them (so the edge a
        # line nears is visible) but not to a far one (which would flatten the lines).
        logs = [math.log10(y) for y in values] or [math.log10(lo_band), math.log10(hi_band)]
        y0, y1 = math.floor(min(logs)), math.ceil(max(logs))
        y1 = y1 if y1 > y0 else y0 + 1
        for edge in (math.log10(lo_band), math.log10(hi_band)):
            if y0 - 1 <= edge <= y1 + 1:
                y0, y1 = min(y0, math.floor(edge)), max(y1, math.ceil(edge))

        def ty(y: float) -> float:
            return math.log10(y)
    else:
        y0, y1 = 0.0, max([1.0 if spec.key == "dead_frac" else hi_band * 2, *values])

        def ty(y: float) -> float:
            return y

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)

    def py(v: float) -> float:
        return TOP + (y1 - v) / (y1 - y0) * (HEIGHT - TOP - BOTTOM)

    lines = []
    for layer, points in sorted(per_layer.items()):
        segments: list[str] = []
        current: list[str] = []
        for step, y in points:
            if y is None:
                if current:
                    segments.append(" ".join(current))
                current = []
                continue
            current.append(f"{px(step):.1f},{py(ty(y)):.1f}")
        if current:
            segments.append(" ".join(current))
        # A single point still shows: a zero-length segment drawn with round caps.
        segments = [s if " " in s else f"{s} {s}" for s in segments]
        lines.append(Line(layer, PALETTE[layer % len(PALETTE)], segments))
    band = (max(py(ty(hi_band)), TOP), min(py(ty(lo_band)), HEIGHT - BOTTOM))
    if spec.log:
        y_ticks = _log_ticks(y0, y1, py)
    else:
        y_ticks = [Tick(py(y0 + (y1 - y0) * k / 2), present.number(y0 + (y1 - y0) * k / 2))
                   for k in range(3)]  # fmt: skip
    x_ticks = [Tick(px(x0), str(x0)), Tick(px(x1), str(x1))]
    return Chart(
        key=spec.key,
        title=spec.title,
        log=spec.log,
        band=band,
        band_text=spec.band_text.format(*spec.band),
        lines=lines,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        hidden_points=hidden,
        zero_points=zeros,
    )


def _rate_then(
    session: Session, run_id: int, step: int | None, config: dict[str, Any]
) -> float | None:
    """The rate the measured step trained at, as a fraction of the run's starting rate: a tiny
    update ratio is expected where the schedule (or the user) has brought the rate near 0, as
    at the end of a cosine schedule, and alarming where it has not. None when unknown."""
    if step is None:
        return None
    rows = crud.metric_rows(session, run_id, after=step - 1, before=step + 1)
    start = config.get("lr")
    lr = rows[0][SERIES_COLUMNS.index("lr")] if rows else None
    if not isinstance(lr, float) or not isinstance(start, int | float) or start <= 0:
        return None
    return lr / float(start)


def _as_health(row: Sequence[Any]) -> LayerHealth:
    return LayerHealth(int(row[1]), *(row[_INDEX[c]] for c in COLUMNS[2:]))


def health_context(session: Session, run_id: int) -> dict[str, Any]:
    """What templates/_run_health_live.html shows, from one read transaction."""
    model = crud.get_run(session, run_id)
    if model is None:
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    run = crud.serialize_run(model)
    config = run["config"]
    every = int(config.get("health_every", present.DEFAULTS["health_every"]) or 0)
    rows = health_series(session, run_id, every=every or 1, max_steps=MAX_STEPS)
    latest_step = max((int(r[0]) for r in rows), default=None)
    latest = [r for r in rows if int(r[0]) == latest_step]
    n_layers = len(latest)
    layers = list(range(n_layers))
    charts = [c for spec in SPECS if (c := chart(spec, rows, layers)) is not None]
    words = problems(
        [_as_health(r) for r in latest],
        activation=str(config.get("activation", "relu")),
        lr_factor=_rate_then(session, run_id, latest_step, config),
    )
    return {
        "run_id": run_id,
        "every": every,
        "step": latest_step,
        "charts": charts,
        "problems": words,
        "legend": [
            {
                "layer": k,
                "name": f"layer {k + 1}" + (" (output)" if k == n_layers - 1 and k else ""),
                "colour": PALETTE[k % len(PALETTE)],
            }
            for k in layers
        ],
        "latest": [{"layer": int(r[1]), **{c: r[_INDEX[c]] for c in COLUMNS[2:]}} for r in latest],
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": TOP,
        "bottom": HEIGHT - BOTTOM,
    }


def render_health(env: Environment, context: dict[str, Any]) -> str:
    """The panel's live part (``#health-live``)."""
    return env.get_template("_run_health_live.html").render(h=context)


@router.get("/runs/{run_id}/_health", response_class=HTMLResponse, name="run_health")
def run_health(request: Request, run_id: int, session: ReadSession) -> HTMLResponse:
    """The panel's live part, fetched once when the page loads; the stream pushes the rest."""
    context = health_context(session, run_id)
    return HTMLResponse(render_health(request.app.state.templates.env, context))
