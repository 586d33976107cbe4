"""The run page's alerts and autopilot: notices with one button each, and the policy toggles.

``alerts_context`` is what ``_run_alerts.html`` shows (the newest open alerts, the policies as
last asked for); app/web/fragments.py adds it to the ``event`` part, so a new alert, an alert
handled in another tab or a switched policy is pushed to every viewer. The buttons post plain
forms here; the work is the JSON API's (app/api/alerts.py), so page and API cannot disagree.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from app import crud
from app.api import alerts as api_alerts
from app.crud import alerts as crud_alerts
from app.models import Run
from app.web.messages import message, refusal

router = APIRouter(include_in_schema=False)

POLICY_LABELS = {
    "reduce_lr_on_plateau": "reduce lr on plateau",
    "pause_on_spike": "pause on a loss spike",
    "early_stopping": "early stopping",
}
"""The policies in the order the page lists them, in words (app/worker/watch.py POLICIES)."""

POLICY_HELP = {
    "reduce_lr_on_plateau": "lr x 0.1 after 10 evaluations without improvement (Keras defaults)",
    "pause_on_spike": "pause when the loss jumps above twice its recent mean",
    "early_stopping": "stop after 10 evaluations without improvement; keeps the best checkpoint",
}


def alerts_context(session: Session, run: Run) -> dict[str, Any]:
    """Open alerts (newest first, at most ``OPEN_SHOWN``) and each policy's state."""
    open_alerts = crud_alerts.open_alerts(session, run)
    asked = crud_alerts.autopilot_asked(session, run.id)
    return {
        "alerts": [crud.serialize_event(ev) for ev in open_alerts[: crud_alerts.OPEN_SHOWN]],
        "alerts_more": max(len(open_alerts) - crud_alerts.OPEN_SHOWN, 0),
        "autopilot": [
            {"policy": p, "label": label, "help": POLICY_HELP[p], "on": asked.get(p, False)}
            for p, label in POLICY_LABELS.items()
        ],
    }


@router.post("/runs/{run_id}/alerts/{alert_id}/act", response_class=HTMLResponse)
async def act_form(request: Request, run_id: int, alert_id: int) -> HTMLResponse:
    """The notice's one button: the action's message, or a fork opened in the browser (this
    run is paused first if it moves, so a single worker goes over to the fork)."""
    db, settings = request.app.state.db, request.app.state.settings
    try:
        done = await to_thread.run_sync(api_alerts.act, db, settings, run_id, alert_id)
    except (HTTPException, RequestValidationError) as exc:
        return refusal("action", exc)
    label = done["action"].get("label") or done["action"].get("type")
    child = done.get("run")
    if child is not None:
        from app.web.run_page import pause_if_moving  # run_page -> fragments -> this module

        await to_thread.run_sync(pause_if_moving, db, run_id)
        response = message(f"{label}: run #{child['id']} made; opening it", "info")
        response.headers["HX-Redirect"] = f"/runs/{child['id']}"
        return response
    command = done["command"]
    text = f"{label}: command #{command['id']} sent · {command['note']}"
    return message(text, "info", 202)


@router.post("/runs/{run_id}/alerts/{alert_id}/dismiss", response_class=HTMLResponse)
async def dismiss_form(request: Request, run_id: int, alert_id: int) -> HTMLResponse:
    """The notice's dismiss button."""
    try:
        await to_thread.run_sync(api_alerts.dismiss, request.app.state.db, run_id, alert_id)
    except HTTPException as exc:
        return refusal("dismiss", exc)
    return message(f"alert #{alert_id} dismissed", "info")
