"""Live stream: one tail task per watched run; every message is encoded once for all viewers.

The tail polls the database every ``poll`` seconds (once per run, however many viewers) for new
metric rows, new or changed events and status changes. It encodes each SSE message ONCE, as the
bytes sse-starlette writes to the socket unchanged (its ``ensure_bytes`` passes ``bytes``
through), and puts the same ``Message`` object on every viewer's queue: what a message costs does
not grow with the number of viewers.

The tail also holds what a new viewer starts from: the last ``status`` sent, the latest version of
every event, the latest HTML fragments and ``cursor`` (the last step fanned out). A viewer joins in
one step of the event loop, with no ``await`` between copying that state and emptying its queue,
so whatever happened before the copy is in it and whatever happens after arrives on the queue:
nothing can fall between the two (the old design read the events twice, in two threads, and a
command applied between the reads was lost). Metric rows never change once committed, so the
viewer reads its backlog up to ``cursor`` from the database itself; far behind, as one
downsampled ``overview`` plus the exact last rows, never every row.

Once the run has a terminal status and its last rows and events are fanned out, the tail sends
the final ``status`` (``id:`` = the last step), every viewer's stream ends, and the tail stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread
from sqlalchemy.orm import Session
from sse_starlette import ServerSentEvent

from app import crud
from app.crud.health import latest_health_step
from app.crud.pictures import pictures_version
from app.db import Database
from app.models import TERMINAL_STATUSES
from app.series import Row, to_columns

log = logging.getLogger(__name__)

_STATUS_KEYS = ("status", "name", "lr", "total_steps", "best_val_loss", "best_val_acc", "error")
# A change of these goes out at the next poll; the others (the rate, the best metrics, which
# move at every flush of a scheduled run) at most once per ``status_interval``.
_URGENT_KEYS = ("status", "name", "total_steps", "error")

# At most one ``status`` per this many seconds for a change of the rate or the best metrics
# alone (they move at every flush of a scheduled run, and each status also re-renders the page's
# status fragment for every viewer): a change within it waits for the next poll after it, and
# the latest one wins. A new status (paused, finished...) is never held back.
STATUS_INTERVAL = 1.0
# A pushed panel (below) is re-rendered, one fragment for every viewer, at most this often per
# run: the health panel summarizes the whole run and the pictures change at evaluations, so
# every 2 s is live enough.
PANEL_INTERVAL = 2.0
# Panels pushed when what they show changes: name -> its version, read at every poll (one or
# two key lookups); the fragments hook renders a panel whose version moved (app/web/fragments).
PANELS: dict[str, Callable[[Session, int], Any]] = {
    "health": latest_health_step,
    "pictures": pictures_version,
}
# A viewer more than this many rows behind gets an overview instead of every row...
OVERVIEW_AFTER_ROWS = 4000
# ... followed by the exact last rows, this many.
EXACT_TAIL_ROWS = 2000
# Points of an overview by default (about a chart's pixel width) and the range a client may ask.
DEFAULT_POINTS, MIN_POINTS, MAX_POINTS = 2000, 100, 10000

Fragments = Callable[[int, set[str]], list[tuple[str, str]]]


@dataclass(frozen=True, eq=False)
class Message:
    """One SSE message, encoded once and shared by every viewer it goes to.

    ``first``/``last`` are the steps a ``metrics`` message covers (0 for other kinds).
    """

    kind: str
    data: bytes
    first: int = 0
    last: int = 0


def encode(event: str, data: str, id_: int | None = None) -> bytes:
    """An SSE message as bytes (multi-line data becomes several ``data:`` lines)."""
    return ServerSentEvent(data, event=event, id=None if id_ is None else str(id_)).encode()


def encode_json(event: str, obj: Any, id_: int | None = None) -> bytes:
    """An SSE message whose data is compact JSON."""
    return encode(event, json.dumps(obj, separators=(",", ":")), id_)


def metrics_message(rows: list[Row], kind: str = "metrics") -> Message:
    """Columnar rows (as ``GET /metrics``) with ``id:`` = their last step."""
    first, last = int(rows[0][0]), int(rows[-1][0])
    return Message(kind, encode_json(kind, to_columns(rows), last), first, last)


def status_key(run: dict[str, Any]) -> tuple[Any, ...]:
    """The fields whose change is worth a ``status`` message (not the ever-moving step)."""
    return tuple(run.get(k) for k in _STATUS_KEYS)


def _urgent(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """The part of a status key that is sent without waiting (see ``_URGENT_KEYS``)."""
    return tuple(v for k, v in zip(_STATUS_KEYS, key, strict=False) if k in _URGENT_KEYS)


def event_key(event: dict[str, Any]) -> tuple[Any, ...]:
    """An event is re-sent when it changes: a pending command applied, or given an error."""
    return (event["id"], event["step"], event["error"])


def _is_open(event: dict[str, Any]) -> bool:
    """A pending command may still change (get its step or its error); others are settled."""
    return event["step"] is None and event["error"] is None


@dataclass
class _Read:
    """One poll's database read: the run first (see ``_read``), then what is new."""

    run: dict[str, Any] | None
    metrics: Message | None = None
    more: bool = False  # the row limit was reached: more rows are waiting
    events: list[dict[str, Any]] = field(default_factory=list)
    panels: dict[str, Any] = field(default_factory=dict)  # each panel's version (``PANELS``)


@dataclass(eq=False)
class _Tail:
    run_id: int
    queues: set[asyncio.Queue[Message | None]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    cursor: int = 0  # the last step fanned out; rows up to it are read from the database
    status: Message | None = None  # the last status fanned out: a new viewer's first message
    status_key: tuple[Any, ...] = ()
    status_at: float = -math.inf
    events: dict[int, Message] = field(default_factory=dict)  # latest version, in id order
    event_keys: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    open_events: set[int] = field(default_factory=set)
    last_event_id: int = 0
    fragments: dict[str, Message] = field(default_factory=dict)  # latest, by SSE event name
    panels: dict[str, tuple[Any, float]] = field(default_factory=dict)  # version, render time
    terminal_polls: int = 0
    ended: bool = False


@dataclass
class _Snapshot:
    status: Message
    cursor: int
    events: list[Message]
    fragments: list[Message]


class StreamHub:
    """Owns the tails; ``viewer()`` is one SSE client's stream of encoded messages.

    ``fragments`` (optional) renders server-side HTML for the htmx SSE extension:
    ``fragments(run_id, changed) -> [(sse_event_name, html), ...]``. It is called in a worker
    thread (``anyio.to_thread``), at most once per tail poll in which ``event`` and/or ``status``
    messages were produced, with ``changed`` the set of those kinds; also once when a tail starts
    (``changed == {"status", "event"}``) so a new viewer gets the current fragments. Each pair is
    encoded once, as an SSE message named ``sse_event_name`` whose data is the HTML (one ``data:``
    line per line), and fanned out to every viewer right after that poll's JSON messages (when
    the run has ended: before the final ``status``, which stays the stream's last message). The
    latest fragment of each name is also sent to a viewer that joins later, after the events.
    An exception in it is logged and that poll's fragments are skipped; the JSON stream goes on.
    """

    def __init__(
        self,
        db: Database,
        *,
        poll: float = 0.1,
        chunk_rows: int = 2000,
        fragments: Fragments | None = None,
        overview_after: int = OVERVIEW_AFTER_ROWS,
        exact_tail: int = EXACT_TAIL_ROWS,
        status_interval: float = STATUS_INTERVAL,
        panel_interval: float = PANEL_INTERVAL,
    ) -> None:
        self.db = db
        self.poll = poll
        self.chunk_rows = chunk_rows
        self.fragments = fragments
        self.overview_after = overview_after
        self.exact_tail = min(exact_tail, overview_after)
        self.status_interval = status_interval
        self.panel_interval = panel_interval
        self.tails: dict[int, _Tail] = {}

    def subscribe(self, run_id: int) -> tuple[_Tail, asyncio.Queue[Message | None]]:
        """A new queue fed by the run's tail (started on first use). ``None`` ends the stream."""
        tail = self.tails.get(run_id)
        if tail is None:
            tail = self.tails[run_id] = _Tail(run_id)
            tail.task = asyncio.create_task(self._run_tail(tail), name=f"tail-{run_id}")
        queue: asyncio.Queue[Message | None] = asyncio.Queue()
        tail.queues.add(queue)
        return tail, queue

    def unsubscribe(self, tail: _Tail, queue: asyncio.Queue[Message | None]) -> None:
        """Drop a viewer; the tail stops when it was the last one."""
        tail.queues.discard(queue)
        if not tail.queues and self.tails.get(tail.run_id) is tail:
            del self.tails[tail.run_id]
            if tail.task is not None:
                tail.task.cancel()

    async def close(self) -> None:
        """Stop every tail and end its viewers' streams (app shutdown)."""
        tails, self.tails = list(self.tails.values()), {}
        for tail in tails:
            if tail.task is not None:
                tail.task.cancel()
            self._end(tail, [])
        for tail in tails:
            if tail.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await tail.task

    # -- the tail ------------------------------------------------------------------------------

    async def _run_tail(self, tail: _Tail) -> None:
        """Poll until the run has ended or no one watches; a failed poll (e.g. the database
        busy) is logged and retried, since viewers would otherwise wait forever on a dead tail."""
        while not tail.ended:
            more = False
            try:
                if tail.ready.is_set():
                    more = await self._poll(tail)
                else:
                    await self._start(tail)
                delay = 0.0 if more else self.poll
            except Exception:
                log.exception("stream tail of run %s: poll failed, retrying", tail.run_id)
                delay = self.poll * 10
            if not tail.ended:
                await asyncio.sleep(delay)

    def _read(
        self, run_id: int, cursor: int | None, last_event_id: int, open_ids: list[int]
    ) -> _Read:
        """One read transaction. The run is read FIRST: when it is terminal, every row and event
        committed before its final status is visible to the queries after it (also under
        PostgreSQL's READ COMMITTED), so an empty answer then means everything was sent.
        ``cursor`` None (a tail starting) reads no rows: the tail starts at the run's step."""
        with self.db.read() as s:
            run = crud.get_run(s, run_id)
            if run is None:
                return _Read(None)
            out = _Read(crud.serialize_run(run))
            out.panels = {name: version(s, run_id) for name, version in PANELS.items()}
            if cursor is not None:
                rows = crud.metric_rows(s, run_id, after=cursor, limit=self.chunk_rows)
                out.metrics = metrics_message(rows) if rows else None
                out.more = len(rows) >= self.chunk_rows
            fresh = crud.list_events(s, run_id, after_id=last_event_id)
            changed = crud.events_by_ids(s, open_ids)
            out.events = [crud.serialize_event(e) for e in (*changed, *fresh)]
        return out

    async def _start(self, tail: _Tail) -> None:
        """The first read: the state a viewer joins from; nothing is fanned out."""
        read = await to_thread.run_sync(self._read, tail.run_id, None, 0, [])
        if read.run is None:
            self._end(tail, [])
            return
        tail.cursor = int(read.run["step"])
        self._apply_events(tail, read.events)
        self._set_status(tail, read.run, time.monotonic())
        tail.terminal_polls = int(read.run["status"] in TERMINAL_STATUSES)
        first = {"status", "event"} | self._panels_changed(tail, read, force=True)
        tail.fragments = {m.kind: m for m in await self._fragments(tail, first)}
        tail.ready.set()

    async def _poll(self, tail: _Tail) -> bool:
        """One database round trip, fanned out; True when more rows are already waiting."""
        read = await to_thread.run_sync(
            self._read, tail.run_id, tail.cursor, tail.last_event_id, sorted(tail.open_events)
        )
        if read.run is None:  # the run vanished: end the streams without a final status
            self._end(tail, [])
            return False
        messages: list[Message] = []
        changed: set[str] = set()
        if read.metrics is not None:
            messages.append(read.metrics)
            tail.cursor = read.metrics.last
        events = self._apply_events(tail, read.events)
        if events:
            messages.extend(events)
            changed.add("event")
        terminal = read.run["status"] in TERMINAL_STATUSES
        changed |= self._panels_changed(tail, read, force=terminal)
        tail.terminal_polls = tail.terminal_polls + 1 if terminal else 0
        # Terminal in the previous read too: one more poll lets whatever a worker writes just
        # after the final status (e.g. an error on a command left pending) reach the viewers.
        if tail.terminal_polls >= 2 and not read.more:
            final = Message("status", encode_json("status", read.run, tail.cursor))
            self._fan_out(tail, messages)
            fragments = await self._fragments(tail, changed | {"status"})
            self._end(tail, [*fragments, final])
            return False
        now = time.monotonic()
        key = status_key(read.run)
        urgent = _urgent(key) != _urgent(tail.status_key)
        if key != tail.status_key and (urgent or now - tail.status_at >= self.status_interval):
            messages.append(self._set_status(tail, read.run, now))
            changed.add("status")
        self._fan_out(tail, messages)
        if changed:
            fragments = await self._fragments(tail, changed)
            tail.fragments.update((m.kind, m) for m in fragments)
            self._fan_out(tail, fragments)
        return read.more

    def _panels_changed(self, tail: _Tail, read: _Read, *, force: bool = False) -> set[str]:
        """The panels (``PANELS``) whose version moved since they were last rendered, each at
        most once per ``panel_interval`` (``force``: whatever the interval, as when a tail
        starts or the run has ended)."""
        now, out = time.monotonic(), set()
        for name, version in read.panels.items():
            shown = tail.panels.get(name)
            if version is None or (shown is not None and shown[0] == version):
                continue
            if not force and shown is not None and now - shown[1] < self.panel_interval:
                continue
            tail.panels[name] = (version, now)
            out.add(name)
        return out

    def _apply_events(self, tail: _Tail, events: list[dict[str, Any]]) -> list[Message]:
        """Record new or changed events in the tail; their messages, once each."""
        out: list[Message] = []
        for ev in events:
            key = event_key(ev)
            eid = int(ev["id"])
            tail.last_event_id = max(tail.last_event_id, eid)
            if _is_open(ev):
                tail.open_events.add(eid)
            else:
                tail.open_events.discard(eid)
            if tail.event_keys.get(eid) == key:
                continue
            tail.event_keys[eid] = key
            tail.events[eid] = message = Message("event", encode_json("event", ev))
            out.append(message)
        return out

    def _set_status(self, tail: _Tail, run: dict[str, Any], now: float) -> Message:
        tail.status = Message("status", encode_json("status", run))
        tail.status_key, tail.status_at = status_key(run), now
        return tail.status

    async def _fragments(self, tail: _Tail, changed: set[str]) -> list[Message]:
        """The hook's HTML for this poll, each encoded once (see the class docstring)."""
        if self.fragments is None:
            return []
        try:
            pairs = await to_thread.run_sync(self.fragments, tail.run_id, set(changed))
            return [Message(name, encode(name, html)) for name, html in pairs]
        except Exception:
            log.exception("stream fragments of run %s failed", tail.run_id)
            return []

    @staticmethod
    def _fan_out(tail: _Tail, messages: list[Message]) -> None:
        for queue in tail.queues:
            for message in messages:
                queue.put_nowait(message)

    def _end(self, tail: _Tail, last: list[Message]) -> None:
        """Send the last messages and end every viewer's stream; later viewers get a new tail."""
        tail.ended = True
        tail.ready.set()
        if self.tails.get(tail.run_id) is tail:
            del self.tails[tail.run_id]
        for queue in tail.queues:
            for message in last:
                queue.put_nowait(message)
            queue.put_nowait(None)

    # -- one viewer ----------------------------------------------------------------------------

    @staticmethod
    def _join(tail: _Tail, queue: asyncio.Queue[Message | None]) -> _Snapshot | None:
        """The tail's state, and the queue emptied of what that state already covers: no await
        in between, so no message can fall between the snapshot and the queue."""
        if tail.ended or tail.status is None:
            return None
        while not queue.empty():
            queue.get_nowait()
        return _Snapshot(
            tail.status, tail.cursor, list(tail.events.values()), list(tail.fragments.values())
        )

    def _rows(self, run_id: int, after: int, upto: int) -> Message | None:
        with self.db.read() as s:
            rows = crud.metric_rows(s, run_id, after=after, before=upto + 1, limit=self.chunk_rows)
        return metrics_message(rows) if rows else None

    def _overview(self, run_id: int, after: int, upto: int, points: int) -> Message | None:
        with self.db.read() as s:
            rows = crud.metrics_overview(s, run_id, after=after, before=upto + 1, max_points=points)
        if not rows:
            return None
        return Message("overview", encode_json("overview", to_columns(rows), upto), after, upto)

    async def _backlog(
        self, run_id: int, after: int, upto: int, points: int
    ) -> AsyncIterator[Message]:
        """Rows in (after, upto]: exact in chunks, or an overview up to ``upto - exact_tail``
        and the exact rows after it when there are more than ``overview_after``."""
        if upto - after > self.overview_after:
            split = upto - self.exact_tail
            overview = await to_thread.run_sync(self._overview, run_id, after, split, points)
            if overview is not None:
                yield overview
            after = split
        while after < upto:
            message = await to_thread.run_sync(self._rows, run_id, after, upto)
            if message is None:
                return
            yield message
            after = message.last

    async def viewer(
        self, run_id: int, since: int = 0, points: int = DEFAULT_POINTS
    ) -> AsyncIterator[bytes]:
        """One client's SSE bytes: status, backlog after ``since`` (an overview when far
        behind), events, fragments, then live until the run has ended."""
        tail, queue = self.subscribe(run_id)
        try:
            await tail.ready.wait()
            snap = self._join(tail, queue)
            if snap is None:
                return
            yield snap.status.data
            last = since
            async for message in self._backlog(run_id, since, snap.cursor, points):
                yield message.data
                last = message.last
            for message in (*snap.events, *snap.fragments):
                yield message.data
            last = max(last, snap.cursor)
            while (message := await queue.get()) is not None:
                if message.kind == "metrics":
                    if message.last <= last:
                        continue
                    if message.first <= last:  # only when ``since`` was ahead of the tail
                        part = await to_thread.run_sync(self._rows, run_id, last, message.last)
                        message = part or message
                    last = message.last
                yield message.data
        finally:
            self.unsubscribe(tail, queue)
