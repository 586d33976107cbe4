"""``/api/runs/{id}/alerts``: the open alerts, and their one-click action or dismissal.

An action is the ORDINARY command or fork (``post_command``, ``fork_run`` of this API, called
directly), so what it does is an event on the curve like any other, replayable after a crash and
undoable by a fork. The alert is first marked handled (an ``alert_handled`` event, in a write
transaction that also checks it was still open, so two clicks act once); if the action is then
refused (the run ended meanwhile, a rate out of range), the mark records the error and the
alert is open again.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from app import crud
from app.api.commands import post_command
from app.api.deps import AlertId, DbDep, ReadSession, RunId, SettingsDep, run_or_404
from app.api.responses import EventOut, RunOut
from app.api.runs import fork_run
from app.api.schemas import Command, ForkRequest
from app.crud import alerts as crud_alerts
from app.db import Database
from app.models import Event, Run
from app.settings import Settings

router = APIRouter(prefix="/api/runs", tags=["alerts"])

_COMMAND: TypeAdapter[Any] = TypeAdapter(Command)


class AlertActed(BaseModel):
    """What acting on an alert did: the command it queued, or the run it forked."""

    alert_id: int
    action: dict[str, Any]
    command: EventOut | None = None
    run: RunOut | None = None


class AlertDismissed(BaseModel):
    """A dismissed alert: no action taken, no longer open."""

    alert_id: int
    dismissed: bool = True


@router.get("/{run_id}/alerts", response_model=list[EventOut])
def list_alerts(run_id: int, s: ReadSession) -> list[dict[str, Any]]:
    """Open alerts (not acted on, not dismissed, their action still possible), newest first:
    event objects of type ``alert`` with ``kind``, ``message`` and ``action``."""
    run = run_or_404(s, run_id)
    return [crud.serialize_event(ev) for ev in crud_alerts.open_alerts(s, run)]


def _open_alert(s: Session, run_id: int, alert_id: int) -> tuple[Run, Event]:
    """The run and its alert, 404 if either is unknown, 409 if it was already handled."""
    run = run_or_404(s, run_id)
    alert = s.get(Event, alert_id)
    if alert is None or alert.run_id != run_id or alert.type != crud_alerts.ALERT:
        raise HTTPException(status_code=404, detail=f"run {run_id} has no alert {alert_id}")
    if alert_id in crud_alerts.handled_alert_ids(s, run_id):
        raise HTTPException(
            status_code=409, detail=f"alert {alert_id} was already acted on or dismissed"
        )
    return run, alert


def act(db: Database, settings: Settings, run_id: int, alert_id: int) -> dict[str, Any]:
    """Take the alert's action once (see the module docstring); the web page calls it too."""
    with db.write() as s:
        run, alert = _open_alert(s, run_id, alert_id)
        action = dict(crud.event_payload(alert).get("action") or {})
        if not crud_alerts.actionable(run, action):
            raise HTTPException(status_code=409, detail=f"run {run_id} is {run.status}")
        marker = crud_alerts.record_handled(s, run, alert_id, "acted").id
    out: dict[str, Any] = {"alert_id": alert_id, "action": action}
    try:
        if action.get("type") == "fork":
            body = ForkRequest(step=int(action["step"]), overrides={"lr": action["lr"]})
            out["run"] = fork_run(run_id, body, db, settings)
        else:
            command = {"type": action.get("type")}
            if action.get("type") == "set_lr":
                command["lr"] = action.get("lr")
            out["command"] = post_command(run_id, _COMMAND.validate_python(command), db)
    except (HTTPException, RequestValidationError, ValidationError, KeyError) as exc:
        with db.write() as s:
            crud_alerts.handled_failed(s, marker, f"action refused: {exc}")
        if isinstance(exc, ValidationError):
            raise RequestValidationError(exc.errors()) from exc
        if isinstance(exc, KeyError):
            raise HTTPException(status_code=409, detail=f"alert action incomplete: {exc}") from exc
        raise
    return out


def dismiss(db: Database, run_id: int, alert_id: int) -> dict[str, Any]:
    """Close the alert without acting on it."""
    with db.write() as s:
        run, _alert = _open_alert(s, run_id, alert_id)
        crud_alerts.record_handled(s, run, alert_id, "dismissed")
    return {"alert_id": alert_id, "dismissed": True}


@router.post("/{run_id}/alerts/{alert_id}/act", status_code=202, response_model=AlertActed)
def act_on_alert(
    run_id: RunId, alert_id: AlertId, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    """Take the alert's suggested action: a ``set_lr``, ``pause`` or ``stop`` command (``command``
    in the answer, applied at the next step boundary) or a fork from a checkpoint with a new
    rate (``run``). 404: no such alert on this run; 409: already acted on or dismissed, or the
    run has ended (for a command)."""
    return act(db, settings, run_id, alert_id)


@router.post("/{run_id}/alerts/{alert_id}/dismiss", response_model=AlertDismissed)
def dismiss_alert(run_id: RunId, alert_id: AlertId, db: DbDep) -> dict[str, Any]:
    """Dismiss the alert (it stays in the events, no longer open). 404 / 409 as for ``act``."""
    return dismiss(db, run_id, alert_id)
