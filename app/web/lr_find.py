"""The range test on the run page: the button that starts one, and the range test's own panel.

The panel (templates/_lr_find.html) is server-rendered: the smoothed loss against the rate on a
log axis is an inline SVG drawn here (a few hundred points, no JavaScript), with the suggested
rate marked and a one-click "apply" that sends the parent an ordinary ``set_lr``. While the test
runs, the panel re-fetches itself every second; once the run has ended it is rendered without
that trigger, so the polling stops (a range test lasts seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from app import crud
from app.api.commands import post_command
from app.api.deps import ReadSession, run_or_404
from app.api.lr_find import LrFindRequest, start_range_test
from app.api.schemas import SetLr
from app.crud.lr_find import is_range_test, range_rows
from app.db import Database
from app.web import present
from app.web.messages import message, refusal
from app.web.run_page import pause_if_moving
from engine.lr_find import smoothed

router = APIRouter(include_in_schema=False)

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 12, 32


@dataclass(frozen=True, slots=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True, slots=True)
class Plot:
    """An SVG line chart in user units of a WIDTH x HEIGHT viewBox."""

    points: str
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    marker: float | None


def plot(lrs: list[float], losses: list[float], suggested: float | None) -> Plot | None:
    """Smoothed loss against log10(lr); None with fewer than two points to draw."""
    smooth = smoothed(losses)
    n = min(len(smooth), len(lrs))
    xs = [math.log10(lr) for lr in lrs[:n] if lr > 0]
    ys = [float(v) for v in smooth[: len(xs)]]
    if len(xs) < 2:
        return None
    x0, x1 = math.floor(min(xs)), math.ceil(max(xs))
    x1 = x1 if x1 > x0 else x0 + 1
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
    y0, y1 = lo - pad, hi + pad

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)

    def py(y: float) -> float:
        return TOP + (y1 - y) / (y1 - y0) * (HEIGHT - TOP - BOTTOM)

    every = max(1, math.ceil((x1 - x0) / 8))
    x_ticks = [Tick(px(d), f"1e{d}") for d in range(x0, x1 + 1, every)]
    y_ticks = [Tick(py(y0 + (y1 - y0) * k / 4), present.number(y0 + (y1 - y0) * k / 4))
               for k in range(5)]  # fmt: skip
    points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
    marker = px(math.log10(suggested)) if suggested else None
    return Plot(points, x_ticks, y_ticks, marker)


def _rounded(lr: float) -> float:
    """The suggestion as the "apply" button says and sends it: two significant digits."""
    return float(f"{lr:.2g}")


def panel_context(session: Any, run_id: int) -> dict[str, Any]:
    """What templates/_lr_find.html needs for the range test ``run_id``."""
    model = run_or_404(session, run_id)
    run = crud.serialize_run(model)
    config = run["config"]
    lrs, losses = range_rows(session, model, config)
    suggested = run["suggested_lr"]
    parent = crud.get_run(session, run["parent_id"]) if run["parent_id"] is not None else None
    start = int(config.get("lr_range_start", 0))
    total = int(config.get("max_steps") or 0)
    return {
        "run": run,
        "active": run["status"] in present.ACTIVE_STATUSES,
        "done": run["step"] - start,
        "steps": total - start,
        "last_lr": lrs[-1] if lrs else None,
        "plot": plot(lrs, losses, suggested),
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "bottom": HEIGHT - BOTTOM,
        "right": WIDTH - RIGHT,
        "top": TOP,
        "suggested": suggested,
        "apply_lr": _rounded(suggested) if suggested else None,
        "parent": parent,
        "parent_active": parent is not None and parent.status in present.ACTIVE_STATUSES,
    }


def _templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


def render_panel(request: Request, session: Any, run_id: int) -> str:
    """The panel's HTML (the run page includes it for a range test)."""
    template = _templates(request).env.get_template("_lr_find.html")
    return template.render(panel_context(session, run_id))


@router.get("/runs/{run_id}/lr-find/panel", response_class=HTMLResponse, name="lr_find_panel")
def lr_find_panel(request: Request, run_id: int, session: ReadSession) -> HTMLResponse:
    """The range test's panel, fetched every second while it runs."""
    if not is_range_test(crud.run_config(run_or_404(session, run_id))):
        raise HTTPException(404, f"run {run_id} is not a range test")
    return HTMLResponse(render_panel(request, session, run_id))


@router.post("/runs/{run_id}/lr-find", response_class=HTMLResponse, name="lr_find_form")
async def lr_find_form(request: Request, run_id: int) -> HTMLResponse:
    """The run page's "find a learning rate" button: start a range test with the default range
    and open it (HX-Redirect); ``pause`` pauses this run first, so one worker can take it."""
    form = await request.form()
    db, settings = request.app.state.db, request.app.state.settings
    try:
        child = await to_thread.run_sync(start_range_test, run_id, LrFindRequest(), db, settings)
        if form.get("pause"):
            await to_thread.run_sync(pause_if_moving, db, run_id)
    except (HTTPException, ValidationError, RequestValidationError) as exc:
        return refusal("range test", exc)
    response = message(f"range test #{child['id']} started; opening it", "info")
    response.headers["HX-Redirect"] = f"/runs/{child['id']}"
    return response


@router.post("/runs/{run_id}/lr-find/apply", response_class=HTMLResponse, name="lr_find_apply")
async def lr_find_apply(request: Request, run_id: int) -> HTMLResponse:
    """Send the range test's parent a ``set_lr`` of the rate the button shows."""
    form = await request.form()
    db: Database = request.app.state.db
    try:
        with db.read() as session:
            run = run_or_404(session, run_id)
            parent_id = run.parent_id
        if parent_id is None:
            raise HTTPException(409, f"run {run_id} has no parent to apply a rate to")
        command = SetLr.model_validate({"type": "set_lr", "lr": form.get("lr")})
        event = await to_thread.run_sync(post_command, parent_id, command, db)
    except (HTTPException, ValidationError) as exc:
        return refusal("set_lr", exc)
    text = (
        f"set_lr {present.number(command.lr)} sent to run #{parent_id} "
        f"(event #{event['id']}): {event['note']}"
    )
    return message(text, "info", 202)
