"""Live stream: one tail task per watched run, fanned out to every viewer's queue.

The tail polls the database every ``stream_poll`` seconds for new metric rows, new or newly
applied events and status changes, and puts what it found on each viewer's queue: database load
does not grow with viewers. A viewer reads its own backlog once at connect (after ``since``) and
fills any gap it notices from the database itself, so a slow start or a missed batch loses
nothing; the database stays the source of truth. The tail stops when its last viewer leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread

from app import crud
from app.db import Database
from app.models import TERMINAL_STATUSES
from app.series import Row, to_columns

log = logging.getLogger(__name__)

_STATUS_KEYS = ("status", "name", "lr", "total_steps", "best_val_loss", "best_val_acc", "error")


@dataclass
class Message:
    """What a tail found: ``metrics`` rows after ``after``, one ``event``, or a ``status``."""

    kind: str
    data: Any
    after: int = 0


def status_key(run: dict[str, Any]) -> tuple[Any, ...]:
    """The fields whose change is worth a ``status`` message (not the ever-moving step)."""
    return tuple(run.get(k) for k in _STATUS_KEYS)


def event_key(event: dict[str, Any]) -> tuple[Any, ...]:
    """An event is re-sent when it changes, i.e. when a pending command gets applied."""
    return (event["id"], event["step"], event["error"])


@dataclass
class _Tail:
    run_id: int
    queues: set[asyncio.Queue[Message]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    cursor: int = 0
    last_event_id: int = 0
    pending: set[int] = field(default_factory=set)
    status: tuple[Any, ...] = ()


class StreamHub:
    """Owns the tails; ``viewer()`` is one SSE client's stream of messages."""

    def __init__(self, db: Database, *, poll: float = 0.1, chunk_rows: int = 2000) -> None:
        self.db = db
        self.poll = poll
        self.chunk_rows = chunk_rows
        self.tails: dict[int, _Tail] = {}

    def subscribe(self, run_id: int) -> asyncio.Queue[Message]:
        """A new queue fed by the run's tail (started on first use)."""
        tail = self.tails.get(run_id)
        if tail is None:
            tail = self.tails[run_id] = _Tail(run_id)
            tail.task = asyncio.create_task(self._run_tail(tail), name=f"tail-{run_id}")
        queue: asyncio.Queue[Message] = asyncio.Queue()
        tail.queues.add(queue)
        return queue

    def unsubscribe(self, run_id: int, queue: asyncio.Queue[Message]) -> None:
        """Drop a viewer; the tail stops when it was the last one."""
        tail = self.tails.get(run_id)
        if tail is None:
            return
        tail.queues.discard(queue)
        if not tail.queues:
            del self.tails[run_id]
            if tail.task is not None:
                tail.task.cancel()

    async def close(self) -> None:
        """Stop every tail (app shutdown)."""
        tails, self.tails = list(self.tails.values()), {}
        for tail in tails:
            if tail.task is not None:
                tail.task.cancel()
        for tail in tails:
            if tail.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await tail.task

    # -- the tail ------------------------------------------------------------------------------

    async def _run_tail(self, tail: _Tail) -> None:
        """Poll until cancelled; a failed poll (e.g. the database busy) is logged and retried,
        since viewers would otherwise wait forever on a dead tail."""
        initialized = False
        while True:
            try:
                if not initialized:
                    await to_thread.run_sync(self._init_tail, tail)
                    initialized = True
                slow = await self._poll_once(tail)
            except Exception:
                log.exception("stream tail of run %s: poll failed, retrying", tail.run_id)
                slow = True
            await asyncio.sleep(self.poll * (10 if slow else 1))

    def _init_tail(self, tail: _Tail) -> None:
        with self.db.read() as s:
            run = crud.get_run(s, tail.run_id)
            tail.cursor = run.step if run is not None else 0
            events = crud.list_events(s, tail.run_id)
        tail.last_event_id = events[-1].id if events else 0
        tail.pending = {e.id for e in events if e.step is None}

    def _read(self, tail: _Tail) -> tuple[list[Row], list[dict[str, Any]], dict[str, Any] | None]:
        with self.db.read() as s:
            rows = crud.metric_rows(s, tail.run_id, after=tail.cursor, limit=self.chunk_rows)
            events = crud.list_events(s, tail.run_id, after_id=tail.last_event_id)
            changed = [e for e in crud.events_by_ids(s, sorted(tail.pending)) if e.step is not None]
            run = crud.get_run(s, tail.run_id)
            out = [crud.serialize_event(e) for e in (*changed, *events)]
            return rows, out, crud.serialize_run(run) if run is not None else None

    async def _poll_once(self, tail: _Tail) -> bool:
        """One database round trip; True when the run has ended (poll slower)."""
        rows, events, run = await to_thread.run_sync(self._read, tail)
        messages: list[Message] = []
        if rows:
            messages.append(Message("metrics", rows, after=tail.cursor))
            tail.cursor = int(rows[-1][0])
        for ev in events:
            tail.last_event_id = max(tail.last_event_id, ev["id"])
            if ev["step"] is None:
                tail.pending.add(ev["id"])
            else:
                tail.pending.discard(ev["id"])
            messages.append(Message("event", ev))
        if run is not None and status_key(run) != tail.status:
            tail.status = status_key(run)
            messages.append(Message("status", run))
        for queue in list(tail.queues):
            for msg in messages:
                queue.put_nowait(msg)
        return run is None or run["status"] in TERMINAL_STATUSES

    # -- one viewer ----------------------------------------------------------------------------

    def _snapshot(self, run_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        with self.db.read() as s:
            run = crud.get_run(s, run_id)
            if run is None:
                raise LookupError(f"run {run_id} not found")
            return crud.serialize_run(run), [
                crud.serialize_event(e) for e in crud.list_events(s, run_id)
            ]

    def _rows(self, run_id: int, after: int, until: int | None = None) -> list[Row]:
        with self.db.read() as s:
            rows = crud.metric_rows(s, run_id, after=after, limit=self.chunk_rows)
        return [r for r in rows if until is None or r[0] <= until]

    async def _backlog(
        self, run_id: int, after: int, until: int | None
    ) -> AsyncIterator[list[Row]]:
        """Rows after ``after`` (up to ``until``) from the database, in chunks."""
        while until is None or after < until:
            rows = await to_thread.run_sync(self._rows, run_id, after, until)
            if not rows:
                return
            yield rows
            after = int(rows[-1][0])

    async def viewer(self, run_id: int, since: int = 0) -> AsyncIterator[dict[str, Any]]:
        """SSE messages for one client: status, backlog after ``since``, events, then live."""
        queue = self.subscribe(run_id)
        try:
            run, events = await to_thread.run_sync(self._snapshot, run_id)
            sent_status = status_key(run)
            yield _sse("status", run)
            last = since
            async for rows in self._backlog(run_id, last, None):
                yield _metrics(rows)
                last = int(rows[-1][0])
            sent_events = {event_key(e) for e in events}
            for ev in events:
                yield _sse("event", ev)
            while True:
                msg = await queue.get()
                if msg.kind == "metrics":
                    async for rows in self._backlog(run_id, last, msg.after):
                        yield _metrics(rows)
                        last = int(rows[-1][0])
                    fresh = [r for r in msg.data if r[0] > last]
                    if fresh:
                        yield _metrics(fresh)
                        last = int(fresh[-1][0])
                elif msg.kind == "event" and event_key(msg.data) not in sent_events:
                    sent_events.add(event_key(msg.data))
                    yield _sse("event", msg.data)
                elif msg.kind == "status" and status_key(msg.data) != sent_status:
                    sent_status = status_key(msg.data)
                    yield _sse("status", msg.data)
        finally:
            self.unsubscribe(run_id, queue)


def _sse(event: str, data: Any, id_: int | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"event": event, "data": json.dumps(data, separators=(",", ":"))}
    if id_ is not None:
        message["id"] = str(id_)
    return message


def _metrics(rows: list[Row]) -> dict[str, Any]:
    return _sse("metrics", to_columns(rows), id_=int(rows[-1][0]))
