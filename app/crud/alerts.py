"""Alerts and autopilot as events: the queries behind them.

- An alert is a worker event of type ``alert`` at the step it was noticed, payload ``{"kind",
  "detector", "message", "action"}`` (app/worker/alerts.py).
- Acting on one or dismissing it records a user event ``alert_handled`` (payload ``{"alert_id",
  "how": "acted" | "dismissed"}``, applied at once at the run's committed step); an alert with
  such an event (without an error) is no longer open. A new row, rather than an update of the
  alert, so the stream pushes it like any event and the history says who closed what, when.
- An autopilot switch is a user command ``autopilot`` (``{"policy", "on"}``), applied by the
  worker like any command; what a policy does is an ordinary command (set_lr, pause, stop) with
  source ``autopilot`` and payload ``{"policy", "reason", ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.crud.events import event_payload
from app.crud.lineage import segment_rows, segments
from app.crud.runs import now
from app.models import TERMINAL_STATUSES, Checkpoint, Event, LayerHealth, Run
from app.series import Row

ALERT = "alert"
HANDLED = "alert_handled"
AUTOPILOT = "autopilot"
OPEN_SHOWN = 3
"""Open alerts the run page shows (newest first); the API lists them all."""


def autopilot_switches(session: Session, run_id: int) -> list[tuple[int, str, bool]]:
    """Applied ``autopilot`` commands as (step, policy, on), in the order they applied."""
    stmt = (
        select(Event)
        .where(
            Event.run_id == run_id,
            Event.type == AUTOPILOT,
            Event.step.is_not(None),
            Event.error.is_(None),
        )
        .order_by(Event.id)
    )
    out = []
    for ev in session.scalars(stmt):
        payload = event_payload(ev)
        assert ev.step is not None
        out.append((ev.step, str(payload.get("policy")), bool(payload.get("on"))))
    return out


def autopilot_asked(session: Session, run_id: int) -> dict[str, bool]:
    """Each policy's state as last asked for, applied or still pending (what the page shows: a
    worker applies a switch within one poll); policies never switched are absent (off)."""
    stmt = (
        select(Event)
        .where(Event.run_id == run_id, Event.type == AUTOPILOT, Event.error.is_(None))
        .order_by(Event.id)
    )
    out: dict[str, bool] = {}
    for ev in session.scalars(stmt):
        payload = event_payload(ev)
        out[str(payload.get("policy"))] = bool(payload.get("on"))
    return out


def alert_events(session: Session, run_id: int) -> list[Event]:
    """A run's alerts in id order."""
    stmt = select(Event).where(Event.run_id == run_id, Event.type == ALERT).order_by(Event.id)
    return list(session.scalars(stmt))


def handled_alert_ids(session: Session, run_id: int) -> set[int]:
    """Ids of the alerts acted on or dismissed (a marker whose action failed does not count)."""
    stmt = select(Event.payload).where(
        Event.run_id == run_id, Event.type == HANDLED, Event.error.is_(None)
    )
    ids = set()
    for (raw,) in session.execute(stmt):
        alert_id = json.loads(raw or "{}").get("alert_id")
        if isinstance(alert_id, int):
            ids.add(alert_id)
    return ids


def actionable(run: Run, action: dict[str, Any]) -> bool:
    """Whether an alert's action can still be taken: a command needs a run that has not ended;
    going back to a checkpoint (a fork) works on any run."""
    return action.get("type") == "fork" or run.status not in TERMINAL_STATUSES


def open_alerts(session: Session, run: Run) -> list[Event]:
    """Alerts not yet acted on or dismissed whose action can still be taken, newest first, and
    only the newest of each kind: a later alert of the same kind supersedes an older one (its
    numbers and its action are the current ones), so a run left broken does not pile up the
    same advice (a run set to lr 3 showed 8 open alerts, 3 kinds, after 3,500 steps)."""
    handled = handled_alert_ids(session, run.id)
    seen: set[str] = set()
    out: list[Event] = []
    for ev in reversed(alert_events(session, run.id)):
        payload = event_payload(ev)
        kind = str(payload.get("kind"))
        if kind in seen:
            continue
        seen.add(kind)
        if ev.id not in handled and actionable(run, payload.get("action") or {}):
            out.append(ev)
    return out


def record_handled(session: Session, run: Run, alert_id: int, how: str) -> Event:
    """Mark an alert handled (``how``: acted, dismissed), applied at once at the run's step."""
    ts = now()
    ev = Event(
        run_id=run.id,
        type=HANDLED,
        payload=json.dumps({"alert_id": alert_id, "how": how}),
        source="user",
        created_at=ts,
        applied_at=ts,
        step=run.step,
    )
    session.add(ev)
    session.flush()
    return ev


def handled_failed(session: Session, marker_id: int, error: str) -> None:
    """The action of an ``alert_handled`` marker was refused: the alert is open again."""
    session.execute(update(Event).where(Event.id == marker_id).values(error=error))


def evaluation_rows(session: Session, run_id: int, *, upto: int) -> list[Row]:
    """Every evaluation row at or before ``upto`` through the lineage (a fork's parent's rows up
    to its fork step), in step order: served by the partial index of evaluation rows."""
    out: list[Row] = []
    for seg in segments(session, run_id, before=upto + 1):
        out.extend(segment_rows(session, seg, evaluations_only=True))
    return out


def health_samples(
    session: Session, run_id: int, *, upto: int, samples: int
) -> list[tuple[int, list[LayerHealth]]]:
    """The last ``samples`` measured steps at or before ``upto`` of a run's own health rows, as
    (step, layers), oldest first."""
    steps_stmt = (
        select(LayerHealth.step)
        .where(LayerHealth.run_id == run_id, LayerHealth.step <= upto)
        .group_by(LayerHealth.step)
        .order_by(LayerHealth.step.desc())
        .limit(samples)
    )
    steps = sorted(session.scalars(steps_stmt))
    if not steps:
        return []
    rows = session.scalars(
        select(LayerHealth)
        .where(LayerHealth.run_id == run_id, LayerHealth.step >= steps[0])
        .where(LayerHealth.step <= upto)
        .order_by(LayerHealth.step, LayerHealth.layer)
    )
    by_step: dict[int, list[LayerHealth]] = {}
    for row in rows:
        by_step.setdefault(row.step, []).append(row)
    return sorted(by_step.items())


def alert_fires(events: Iterable[Event]) -> dict[str, int]:
    """The step each detector last fired at (the ``detector`` of each alert's payload)."""
    out: dict[str, int] = {}
    for ev in events:
        detector = event_payload(ev).get("detector")
        if isinstance(detector, str) and ev.step is not None:
            out[detector] = max(out.get(detector, ev.step), ev.step)
    return out


def checkpoint_id_at(session: Session, run_id: int, step: int) -> int | None:
    """Id of the run's newest checkpoint at exactly ``step`` (early stopping's best)."""
    stmt = (
        select(Checkpoint.id)
        .where(Checkpoint.run_id == run_id, Checkpoint.step == step)
        .order_by(Checkpoint.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)
