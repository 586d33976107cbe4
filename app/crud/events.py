"""Events: user commands (pending until applied) and worker status changes."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.crud.runs import iso, now
from app.models import Event


def record_command(
    session: Session, run_id: int, type_: str, payload: dict[str, Any] | None = None
) -> Event:
    """Queue a user command; it stays pending (step NULL) until a worker applies it."""
    ev = Event(
        run_id=run_id,
        type=type_,
        payload=json.dumps(payload or {}),
        source="user",
        created_at=now(),
    )
    session.add(ev)
    session.flush()
    return ev


def record_worker_event(
    session: Session,
    run_id: int,
    type_: str,
    step: int,
    payload: dict[str, Any] | None = None,
    error: str | None = None,
) -> Event:
    """Record a status change made by a worker (applied at once, at ``step``)."""
    ts = now()
    ev = Event(
        run_id=run_id,
        type=type_,
        payload=json.dumps(payload or {}),
        source="worker",
        created_at=ts,
        applied_at=ts,
        step=step,
        error=error,
    )
    session.add(ev)
    session.flush()
    return ev


def pending_commands(session: Session, run_id: int) -> list[Event]:
    """User commands not yet applied, in the order they must be applied (id order)."""
    stmt = (
        select(Event)
        .where(Event.run_id == run_id, Event.source == "user", Event.step.is_(None))
        .order_by(Event.id)
    )
    return list(session.scalars(stmt))


def mark_applied(session: Session, event_id: int, step: int, error: str | None = None) -> bool:
    """Record where a command took effect; False if someone else already applied it."""
    result = session.execute(
        update(Event)
        .where(Event.id == event_id, Event.step.is_(None))
        .values(step=step, applied_at=now(), error=error)
    )
    return result.rowcount == 1


def list_events(session: Session, run_id: int, *, after_id: int = 0) -> list[Event]:
    """A run's events in id order, optionally only those after an id."""
    stmt = select(Event).where(Event.run_id == run_id, Event.id > after_id).order_by(Event.id)
    return list(session.scalars(stmt))


def events_by_ids(session: Session, ids: list[int]) -> list[Event]:
    """Events with these ids (the stream re-reads pending commands to see them applied)."""
    if not ids:
        return []
    return list(session.scalars(select(Event).where(Event.id.in_(ids)).order_by(Event.id)))


def applied_set_lr_since(session: Session, run_id: int, step: int) -> list[Event]:
    """Applied ``set_lr`` commands at or after ``step``: replayed after loading a checkpoint."""
    stmt = (
        select(Event)
        .where(
            Event.run_id == run_id,
            Event.type == "set_lr",
            Event.step.is_not(None),
            Event.step >= step,
            Event.error.is_(None),
        )
        .order_by(Event.id)
    )
    return list(session.scalars(stmt))


def current_pace(session: Session, run_id: int, *, pending: bool = False) -> float | None:
    """The run's pace: ``steps_per_second`` of its last applied ``set_pace`` (None: full speed).

    With ``pending``, the last one asked for, applied or not: what the run page shows, since a
    worker applies a new command within one poll.
    """
    conditions = [Event.run_id == run_id, Event.type == "set_pace", Event.error.is_(None)]
    if not pending:
        conditions.append(Event.step.is_not(None))
    stmt = select(Event).where(*conditions).order_by(Event.id.desc()).limit(1)
    ev = session.scalars(stmt).first()
    pace = event_payload(ev).get("steps_per_second") if ev is not None else None
    return float(pace) if pace is not None else None


def steps_left(session: Session, run_id: int, committed: int) -> int | None:
    """Steps still owed to a ``step N`` command when the run stands at step ``committed``.

    The budget lives in the worker; this rebuilds it from the events when another worker takes
    the run over, so a crash or a restart in the middle of ``step 1000`` still ends paused 1000
    steps after the command. None when the last pause/resume/step applied was not a ``step``
    (``pause`` and ``resume`` cancel a budget) or its steps are all done.
    """
    stmt = (
        select(Event)
        .where(
            Event.run_id == run_id,
            Event.source == "user",
            Event.type.in_(("pause", "resume", "step")),
            Event.step.is_not(None),
            Event.error.is_(None),
        )
        .order_by(Event.id.desc())
        .limit(1)
    )
    ev = session.scalars(stmt).first()
    if ev is None or ev.type != "step" or ev.step is None:
        return None
    left = ev.step + int(event_payload(ev).get("n", 0)) - committed
    return left if left > 0 else None


def event_payload(ev: Event) -> dict[str, Any]:
    """The event's payload as a dict."""
    return json.loads(ev.payload or "{}")


def serialize_event(ev: Event) -> dict[str, Any]:
    """The event object of the API: payload fields are also copied to the top level."""
    payload = event_payload(ev)
    data: dict[str, Any] = dict(payload)
    data.update(
        id=ev.id,
        run_id=ev.run_id,
        type=ev.type,
        source=ev.source,
        step=ev.step,
        created_at=iso(ev.created_at),
        applied_at=iso(ev.applied_at),
        error=ev.error,
        payload=payload,
    )
    return data
