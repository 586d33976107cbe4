"""Events: user commands (pending until applied) and worker status changes.

A command's fate is readable: every event has a ``state`` (pending, applied, error) and a
``note``, a sentence for a person ("applied at step 545", the error text, "waiting for the
worker's next poll"). No command stays pending on a run that has ended: the worker closes them
when it ends a run, the server when it stops an unclaimed one, and ``close_if_ended`` catches
those an older version left behind.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.crud.runs import iso, now
from app.models import TERMINAL_STATUSES, Event, Run
from engine.sanity import describe_initial_loss

CommandState = Literal["pending", "applied", "error"]

# Payload key a worker adds to a set_lr it applies: "exact" means the next step trained at exactly
# ``lr`` and the schedule went on relative to it (engine/schedules.py). A set_lr applied by an
# older version has no such key: it set the base rate (b x the schedule's factor from step 0).
LR_RULE = "lr_rule"

# Sources of commands a worker applies: a person's, and the autopilot's (app/worker/alerts.py:
# a policy acts only by queuing an ordinary command, which the same path applies).
COMMAND_SOURCES = ("user", "autopilot")


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
        .where(Event.run_id == run_id, Event.source.in_(COMMAND_SOURCES), Event.step.is_(None))
        .order_by(Event.id)
    )
    return list(session.scalars(stmt))


def mark_applied(
    session: Session,
    event_id: int,
    step: int,
    error: str | None = None,
    payload: dict[str, Any] | None = None,
) -> bool:
    """Record where a command took effect (and, given ``payload``, what the worker adds to it,
    e.g. the checkpoint a set_lr wrote first); False if someone else already applied it."""
    values: dict[str, Any] = {"step": step, "applied_at": now(), "error": error}
    if payload is not None:
        values["payload"] = json.dumps(payload)
    result = session.execute(
        update(Event).where(Event.id == event_id, Event.step.is_(None)).values(**values)
    )
    return result.rowcount == 1


def close_pending_commands(session: Session, run_id: int, step: int, status: str) -> int:
    """Close every command still pending on a run that has ended ``status`` at ``step``, with the
    error "run <status> before it applied"; returns how many. Call it in the transaction that
    ends the run, so a command can never be left waiting for a worker that will not come."""
    result = session.execute(
        update(Event)
        .where(Event.run_id == run_id, Event.source.in_(COMMAND_SOURCES), Event.step.is_(None))
        .values(step=step, applied_at=now(), error=f"run {status} before it applied")
    )
    return result.rowcount


def close_if_ended(session: Session, run: Run) -> int:
    """Close the pending commands of an ended run (left by an older version, or by an ending that
    did not go through a worker, such as Ctrl-C of ``pandamode train``); 0 when there are none."""
    if run.status not in TERMINAL_STATUSES:
        return 0
    return close_pending_commands(session, run.id, run.step, run.status)


def has_stale_commands(session: Session, run: Run) -> bool:
    """Whether an ended run still has pending commands (a cheap read before ``close_if_ended``)."""
    if run.status not in TERMINAL_STATUSES:
        return False
    stmt = select(Event.id).where(
        Event.run_id == run.id, Event.source.in_(COMMAND_SOURCES), Event.step.is_(None)
    )
    return session.execute(stmt.limit(1)).first() is not None


def list_events(session: Session, run_id: int, *, after_id: int = 0) -> list[Event]:
    """A run's events in id order, optionally only those after an id."""
    stmt = select(Event).where(Event.run_id == run_id, Event.id > after_id).order_by(Event.id)
    return list(session.scalars(stmt))


def events_by_ids(session: Session, ids: list[int]) -> list[Event]:
    """Events with these ids (the stream re-reads pending commands to see them applied)."""
    if not ids:
        return []
    return list(session.scalars(select(Event).where(Event.id.in_(ids)).order_by(Event.id)))


def lr_change_checkpoints(session: Session, run_id: int) -> dict[int, float]:
    """Checkpoint id -> the rate a ``set_lr`` set right after it: each applied set_lr first writes
    a checkpoint of the state before the change (its id is in the event's payload), so going
    back to that checkpoint undoes the change. Labelled "before lr X" and never thinned out."""
    stmt = select(Event.payload).where(
        Event.run_id == run_id,
        Event.type == "set_lr",
        Event.step.is_not(None),
        Event.error.is_(None),
    )
    out: dict[int, float] = {}
    for (raw,) in session.execute(stmt):
        payload = json.loads(raw or "{}")
        ckpt_id = payload.get("checkpoint_id")
        if ckpt_id is not None and "lr" in payload:
            out[int(ckpt_id)] = float(payload["lr"])
    return out


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
            Event.source.in_(COMMAND_SOURCES),
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
    """The event's payload as a dict; ``{}`` for a row written past the API whose payload is not
    a JSON object (the worker then records the command's error instead of failing the run)."""
    try:
        data = json.loads(ev.payload or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def command_state(ev: Event) -> CommandState:
    """pending (not applied yet), error (could not apply, or never will), or applied."""
    if ev.step is None:
        return "pending"
    return "error" if ev.error else "applied"


def _note(ev: Event) -> str:
    """The note that needs nothing but the event (for a pending command, a generic wait)."""
    state = command_state(ev)
    if state == "error":
        return str(ev.error)
    if state == "pending":  # what it waits for needs the run: describe_command says it
        return "waiting to be applied"
    if ev.type == "initial_loss":
        return describe_initial_loss(event_payload(ev))
    if ev.type == "alert":
        return str(event_payload(ev).get("message") or f"alert at step {ev.step}")
    if ev.type == "alert_handled":
        payload = event_payload(ev)
        return f"alert #{payload.get('alert_id')} {payload.get('how')} at step {ev.step}"
    if ev.source == "autopilot":
        payload = event_payload(ev)
        return (
            f"autopilot {payload.get('policy')}: {payload.get('reason')}; applied at step {ev.step}"
        )
    if ev.source == "worker":
        return f"{ev.type} at step {ev.step}"
    return f"applied at step {ev.step}"


def live_lease_holders(session: Session) -> list[int]:
    """Ids of the runs that hold a worker now (a lease that has not run out), oldest first."""
    stmt = select(Run.id).where(Run.worker_id.is_not(None), Run.lease_until >= now())
    return list(session.scalars(stmt.order_by(Run.id)))


def describe_command(session: Session, event: Event, *, holders: list[int] | None = None) -> str:
    """The event's note for a person, including what a pending command waits for:

    - a worker holds the run: "waiting for the worker's next poll";
    - no worker holds it (queued, or handed back): "waiting for a worker: run #3 holds it"
      (the runs holding a live lease; "runs #3, #5 hold them"), or "waiting for a worker" when
      none does (no worker is running, or one is about to claim the run);
    - the run has ended: "run finished before it applied" (what closing it will record).

    ``holders`` (from ``live_lease_holders``) saves the query when describing many events.
    """
    if event.step is not None:
        return _note(event)
    run = session.get(Run, event.run_id)
    if run is None:
        return _note(event)
    if run.status in TERMINAL_STATUSES:
        return f"run {run.status} before it applied"
    if run.worker_id is not None and run.lease_until is not None and run.lease_until >= now():
        return "waiting for the worker's next poll"
    if holders is None:
        holders = live_lease_holders(session)
    others = [r for r in holders if r != run.id]
    if not others:
        return "waiting for a worker"
    if len(others) == 1:
        return f"waiting for a worker: run #{others[0]} holds it"
    return "waiting for a worker: runs " + ", ".join(f"#{r}" for r in others) + " hold them"


def serialize_event(ev: Event, note: str | None = None) -> dict[str, Any]:
    """The event object of the API: payload fields are also copied to the top level; ``state``
    and ``note`` say what became of it (``note`` from ``describe_command`` when given)."""
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
        state=command_state(ev),
        note=note if note is not None else _note(ev),
    )
    return data
