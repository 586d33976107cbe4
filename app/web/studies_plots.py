"""The study page's plots, drawn on the server as SVG geometry (no JavaScript, as the range
test's plot in app/web/lr_find.py): the best-so-far curve, the validation loss against each
hyperparameter, a parallel-coordinates view, and every trial's validation-loss curve.

Everything here is pure: trials come in as the API's trial objects (``serialize_trial``), curves
as lists of (step, loss); out go ``Chart`` and ``Parallel`` objects in user units of a
``viewBox``, which templates/_study_plots.html lays out. Each scale is the one the search used:
log where the distribution is log, 1 - x on a log axis for a log_one_minus parameter (as much
room between 0.99 and 0.999 as between 0.9 and 0.99, which is how it was drawn), one slot per
choice for categories.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.studies.space import Param
from app.web import present

WIDTH, HEIGHT = 640, 260
SMALL_WIDTH, SMALL_HEIGHT = 320, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 14, 12, 36

BEST = "best"
"""CSS class of the best trial's mark and line (drawn last, on top)."""

SHADES = ("#2f6fdf", "#5a8ce4", "#86a9e9", "#b0c4ec", "#cfd8e8")
"""Parallel coordinates: a trial's line shade by its rank (best fifth darkest)."""


@dataclass(frozen=True, slots=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True, slots=True)
class Mark:
    """A dot: one trial, with a tooltip and a link to its run."""

    x: float
    y: float
    title: str
    href: str
    css: str = "trial"


@dataclass(frozen=True, slots=True)
class Line:
    """A polyline (``points`` as SVG wants them); ``colour`` overrides the class's stroke."""

    points: str
    title: str
    css: str = "trial"
    href: str | None = None
    colour: str | None = None


@dataclass
class Chart:
    """A chart in user units of a ``width`` x ``height`` viewBox."""

    id: str
    title: str
    x_label: str
    y_label: str
    width: int = WIDTH
    height: int = HEIGHT
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    empty: str = ""

    @property
    def left(self) -> int:
        return LEFT

    @property
    def right(self) -> int:
        return self.width - RIGHT

    @property
    def top(self) -> int:
        return TOP

    @property
    def bottom(self) -> int:
        return self.height - BOTTOM

    def px(self, frac: float) -> float:
        return LEFT + frac * (self.width - LEFT - RIGHT)

    def py(self, frac: float) -> float:
        return self.bottom - frac * (self.bottom - TOP)


# -- scales --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """Maps a value to [0, 1] of an axis: linear, log10, or one slot per category."""

    kind: Literal["linear", "log", "category"]
    lo: float = 0.0
    hi: float = 1.0
    categories: tuple[str, ...] = ()

    def frac(self, value: Any) -> float | None:
        """Where ``value`` sits (None: it cannot be drawn on this axis)."""
        if self.kind == "category":
            label = choice_label(value)
            if label not in self.categories:
                return None
            return (self.categories.index(label) + 0.5) / len(self.categories)
        x = _finite(value)
        if x is None or (self.kind == "log" and x <= 0):
            return None
        t = math.log10(x) if self.kind == "log" else x
        return min(max((t - self.lo) / (self.hi - self.lo), -0.02), 1.02)

    def ticks(self, count: int = 5) -> list[tuple[float, str]]:
        """(fraction, label) of about ``count`` round ticks: 1-2-5 steps on a linear axis,
        decades (or 1, 2, 5 times a decade when the axis spans less than two) on a log one."""
        if self.kind == "category":
            n = len(self.categories)
            return [((i + 0.5) / n, c) for i, c in enumerate(self.categories)]
        if self.kind == "log":
            lo, hi = self.lo - 1e-9, self.hi + 1e-9  # 1 - 0.999 is 0.0010000000000000009
            values = [10.0**d for d in range(math.ceil(lo), math.floor(hi) + 1)]
            if hi - lo < 2:
                decades = range(math.floor(lo), math.ceil(hi) + 1)
                values = [m * 10.0**d for d in decades for m in (1, 2, 5)]
                values = [v for v in values if lo <= math.log10(v) <= hi]
            if len(values) < 3:  # less than a decade: round values, placed on the log axis
                values = [v for v in _nice(10.0**self.lo, 10.0**self.hi, count) if v > 0]
            every = max(1, math.ceil(len(values) / 7))
            return [(self._at(math.log10(v)), present.number(v)) for v in values[::every]]
        return [(self._at(v), present.number(v)) for v in _nice(self.lo, self.hi, count)]

    def _at(self, t: float) -> float:
        return (t - self.lo) / (self.hi - self.lo)


def _nice(lo: float, hi: float, count: int) -> list[float]:
    """Round values (multiples of 1, 2 or 5 times a power of ten) from lo to hi, about
    ``count`` of them."""
    raw = (hi - lo) / max(count - 1, 1)
    if not raw > 0:
        return [lo]
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9)
    out = []
    for k in range(first, first + count + 2):
        if k * step <= hi + step * 1e-9:
            out.append(round(k * step, 12))
    return out


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def choice_label(value: Any) -> str:
    """A choice as an axis says it: ``relu``, ``[64, 64]``, ``true``."""
    return value if isinstance(value, str) else json.dumps(value, separators=(", ", ":"))


def span(values: Sequence[float], *, log: bool, pad: float = 0.04) -> Scale:
    """A scale around ``values`` (finite, and > 0 when log), padded a little."""
    xs = [math.log10(v) if log else v for v in values]
    lo, hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    width = hi - lo or (abs(hi) * 0.1 if hi else 1.0)
    return Scale("log" if log else "linear", lo - width * pad, hi + width * pad)


def loss_scale(values: Sequence[Any]) -> Scale:
    """The loss axis: log when every finite value is positive (losses span decades)."""
    finite = [x for x in (_finite(v) for v in values) if x is not None]
    log = bool(finite) and all(x > 0 for x in finite)
    return span(finite, log=log, pad=0.08)


def param_scale(param: Param) -> Scale:
    """The axis of a searched field: its whole range as the study searched it."""
    if param.kind == "choices":
        return Scale("category", categories=tuple(choice_label(c) for c in param.choices))
    low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
    if param.kind == "one_minus":
        return span([1.0 - high, 1.0 - low], log=True, pad=0.0)
    return span([low, high], log=param.log, pad=0.0)


def param_label(param: Param) -> str:
    """What the axis shows: ``lr (log scale)``, ``1 - beta1 (log scale)``."""
    if param.kind == "one_minus":
        return f"1 \u2212 {param.field} (log scale)"
    if param.kind == "choices":
        return param.field
    return f"{param.field} (log scale)" if param.log else param.field


def param_value(param: Param, trial: dict[str, Any]) -> Any:
    """What a trial is plotted at on the param's axis (1 - x for log_one_minus: the drawn
    value itself, exact, when Optuna's draw was kept)."""
    value = trial["params"].get(param.field)
    if param.kind == "one_minus":
        drawn = trial.get("sampled", {}).get(param.name)
        return drawn if _finite(drawn) is not None else (None if value is None else 1.0 - value)
    return value


def _axis_ticks(chart: Chart, x: Scale, y: Scale) -> None:
    chart.x_ticks = [Tick(chart.px(f), label) for f, label in x.ticks()]
    chart.y_ticks = [Tick(chart.py(f), label) for f, label in y.ticks()]


def _describe(trial: dict[str, Any]) -> str:
    settings = ", ".join(
        f"{k} {present.number(v) if isinstance(v, float) else choice_label(v)}"
        for k, v in trial["params"].items()
    )
    return (
        f"trial {trial['number']} ({trial['status']}): {settings}; best val loss "
        f"{present.number(trial['best_val_loss'])}, acc {present.number(trial['best_val_acc'])}"
    )


def _href(trial: dict[str, Any]) -> str:
    return f"/runs/{trial['run_id']}"


# -- charts --------------------------------------------------------------------------------------


def best_so_far(trials: Sequence[dict[str, Any]], best_number: int | None) -> Chart:
    """Each trial's best validation loss by trial number, and the running best as a step line:
    does the search still find better settings?"""
    chart = Chart("plot-best", "best so far", "trial", "best validation loss")
    scored = [t for t in trials if _finite(t["best_val_loss"]) is not None]
    if not scored:
        chart.empty = "No trial has been evaluated yet."
        return chart
    y = loss_scale([t["best_val_loss"] for t in scored])
    x = span([t["number"] for t in trials], log=False, pad=0.03)
    _axis_ticks(chart, x, y)
    every = max(1, math.ceil((max(t["number"] for t in trials) + 1) / 10))
    chart.x_ticks = [Tick(chart.px(x.frac(n) or 0.0), str(n))
                     for n in range(0, max(t["number"] for t in trials) + 1, every)]  # fmt: skip
    points: list[str] = []
    best = math.inf
    for t in sorted(scored, key=lambda t: t["number"]):
        fx, fy = x.frac(t["number"]), y.frac(t["best_val_loss"])
        if fx is None or fy is None:
            continue
        css = BEST if t["number"] == best_number else "trial"
        chart.marks.append(Mark(chart.px(fx), chart.py(fy), _describe(t), _href(t), css))
        if t["best_val_loss"] < best:
            if points:  # hold the old best until this trial, then step down
                points.append(f"{chart.px(fx):.1f},{points[-1].split(',')[1]}")
            best = t["best_val_loss"]
            points.append(f"{chart.px(fx):.1f},{chart.py(y.frac(best) or 0):.1f}")
    last = chart.px(x.frac(max(t["number"] for t in trials)) or 1.0)
    points.append(f"{last:.1f},{points[-1].split(',')[1]}")
    chart.lines.append(Line(" ".join(points), "best so far", "running-best"))
    chart.marks.sort(key=lambda m: m.css == BEST)
    return chart


def against_param(param: Param, trials: Sequence[dict[str, Any]], best_number: int | None) -> Chart:
    """The best validation loss of each trial against one hyperparameter, on the axis the
    search drew it on."""
    chart = Chart(
        f"plot-param-{param.field}",
        param.field,
        param_label(param),
        "best val loss",
        width=SMALL_WIDTH,
        height=SMALL_HEIGHT,
    )
    x = param_scale(param)
    scored = [t for t in trials if _finite(t["best_val_loss"]) is not None]
    y = loss_scale([t["best_val_loss"] for t in scored])
    _axis_ticks(chart, x, y)
    if not scored:
        chart.empty = "no evaluation yet"
    for t in scored:
        fx, fy = x.frac(param_value(param, t)), y.frac(t["best_val_loss"])
        if fx is None or fy is None:
            continue
        css = BEST if t["number"] == best_number else "trial"
        chart.marks.append(Mark(chart.px(fx), chart.py(fy), _describe(t), _href(t), css))
    chart.marks.sort(key=lambda m: m.css == BEST)
    return chart


def loss_curves(
    trials: Sequence[dict[str, Any]],
    curves: dict[int, list[tuple[int, float]]],
    best_number: int | None,
) -> Chart:
    """Every trial's validation loss against the step on one chart, the best trial on top in
    its own colour. A non-finite loss breaks the line (a diverged trial ends where it blew
    up)."""
    chart = Chart("plot-curves", "validation loss of every trial", "step", "validation loss")
    by_run = {t["run_id"]: t for t in trials}
    values = [v for run_id in by_run for _, v in curves.get(run_id, [])]
    steps = [s for run_id in by_run for s, _ in curves.get(run_id, [])]
    if not steps:
        chart.empty = "No evaluation yet: the curves appear at each trial's first evaluation."
        return chart
    x = Scale("linear", 0.0, float(max(max(steps), 1)))
    y = loss_scale(values)
    _axis_ticks(chart, x, y)
    ordered = sorted(by_run.values(), key=lambda t: t["number"] == best_number)
    for t in ordered:
        css = BEST if t["number"] == best_number else "trial"
        segment: list[str] = []
        segments: list[str] = []
        for step, loss in curves.get(t["run_id"], []):
            fx, fy = x.frac(step), y.frac(loss)
            if fx is None or fy is None:
                if segment:
                    segments.append(" ".join(segment))
                segment = []
                continue
            segment.append(f"{chart.px(fx):.1f},{chart.py(fy):.1f}")
        if segment:
            segments.append(" ".join(segment))
        for points in segments:
            chart.lines.append(Line(points, _describe(t), css, _href(t)))
    return chart


# -- parallel coordinates ------------------------------------------------------------------------


@dataclass
class Axis:
    """One vertical axis of the parallel-coordinates view."""

    x: float
    label: str
    ticks: list[Tick]


@dataclass
class Parallel:
    """Parallel coordinates: one axis per searched field and the best validation loss last;
    one line per evaluated trial, darker the better, the best highlighted."""

    width: int
    height: int
    top: int
    bottom: int
    axes: list[Axis]
    lines: list[Line]
    empty: str = ""


def parallel(
    params: Sequence[Param], trials: Sequence[dict[str, Any]], best_number: int | None
) -> Parallel:
    """Every evaluated trial as a line across the axes of its settings and its result."""
    top, height = 28, 280
    bottom = height - 24
    n_axes = len(params) + 1
    width = max(960, 180 * n_axes)
    gap = (width - 2 * 90) / max(n_axes - 1, 1)
    xs = [90 + i * gap for i in range(n_axes)]
    scored = [t for t in trials if _finite(t["best_val_loss"]) is not None]
    scales = [param_scale(p) for p in params]
    y_loss = loss_scale([t["best_val_loss"] for t in scored])

    def py(frac: float) -> float:
        return bottom - frac * (bottom - top)

    axes = [
        Axis(x, param_label(p), [Tick(py(f), label) for f, label in s.ticks()])
        for x, p, s in zip(xs, params, scales, strict=False)
    ]
    axes.append(Axis(xs[-1], "best val loss", [Tick(py(f), lb) for f, lb in y_loss.ticks()]))
    ranked = sorted(scored, key=lambda t: (t["best_val_loss"], t["number"]))
    lines = []
    for rank, t in reversed(list(enumerate(ranked))):  # the worst first, the best on top
        fracs = [s.frac(param_value(p, t)) for p, s in zip(params, scales, strict=True)]
        fracs.append(y_loss.frac(t["best_val_loss"]))
        if any(f is None for f in fracs):
            continue
        points = " ".join(f"{x:.1f},{py(f):.1f}" for x, f in zip(xs, fracs, strict=True))  # type: ignore[arg-type]
        if t["number"] == best_number:
            lines.append(Line(points, _describe(t), BEST, _href(t)))
        else:
            shade = SHADES[min(len(SHADES) - 1, rank * len(SHADES) // max(len(ranked), 1))]
            lines.append(Line(points, _describe(t), "trial", _href(t), shade))
    lines.sort(key=lambda line: line.css == BEST)
    empty = "" if lines else "No trial has been evaluated yet."
    return Parallel(width, height, top, bottom, axes, lines, empty)


# -- family tree ---------------------------------------------------------------------------------


@dataclass
class Tree:
    """The study's runs as a family tree of forks (population-based training's exploits, or
    any fork of one trial into another): one lane per trial run, a bar from the step it started
    at to the step it reached, a connector from the parent's lane at the fork step."""

    width: int
    height: int
    left: int
    right: int
    bottom: int
    x_ticks: list[Tick]
    lanes: list[dict[str, Any]]
    edges: list[Line]


def family_tree(
    trials: Sequence[dict[str, Any]],
    parents: dict[int, tuple[int | None, int | None]],
    best_number: int | None,
) -> Tree | None:
    """The tree, or None when no trial run was forked from another (a plain search)."""
    by_run = {t["run_id"]: t for t in trials}
    if not any(p in by_run for p, _ in parents.values()):
        return None
    ordered = sorted(trials, key=lambda t: t["number"])
    lane = {t["run_id"]: i for i, t in enumerate(ordered)}
    width, left, right, top, row = WIDTH + 320, 90, WIDTH + 320 - RIGHT, 8, 18
    bottom = top + row * len(ordered)
    height = bottom + 30
    last = max([t["step"] for t in ordered] + [1])
    scale = Scale("linear", 0.0, float(last))

    def px(step: float) -> float:
        return left + (scale.frac(step) or 0.0) * (right - left)

    def py(run_id: int) -> float:
        return top + row * lane[run_id] + row / 2

    lanes, edges = [], []
    for t in ordered:
        parent, at = parents.get(t["run_id"], (None, None))
        start = at if parent in by_run and at is not None else 0
        lanes.append({
            "y": py(t["run_id"]), "x1": px(start), "x2": px(max(t["step"], start)),
            "label": f"trial {t['number']}", "href": _href(t), "title": _describe(t),
            "css": BEST if t["number"] == best_number else "trial", "status": t["status"],
        })  # fmt: skip
        if parent in by_run and at is not None:
            points = f"{px(at):.1f},{py(parent):.1f} {px(at):.1f},{py(t['run_id']):.1f}"
            title = f"trial {t['number']} forked from trial {by_run[parent]['number']} at step {at}"
            edges.append(Line(points, title, "fork", _href(t)))
    ticks = [Tick(px(v), present.number(v)) for v in _nice(0.0, float(last), 6)]
    return Tree(width, height, left, right, bottom, ticks, lanes, edges)
