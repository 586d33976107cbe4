"""``GET /api/runs/{id}/stream``: server-sent events (``status``, ``overview``, ``metrics``,
``event``, and the HTML fragments of the hub's hook); the protocol is in docs/api.md."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from sse_starlette import EventSourceResponse

from app import crud
from app.api.deps import RunId
from app.db import Database
from app.models import TERMINAL_STATUSES
from app.stream import DEFAULT_POINTS, MAX_POINTS, MIN_POINTS

router = APIRouter(prefix="/api/runs", tags=["stream"])

PING_SECONDS = 15
SEND_TIMEOUT_SECONDS = 30
# Steps are far below this; it keeps a resume point inside a 64-bit database integer.
MAX_STEP = 10**18 - 1


def _run_state(db: Database, run_id: int) -> tuple[str, int] | None:
    """The run's status and committed step, or None when there is no such run."""
    with db.read() as s:
        run = crud.get_run(s, run_id)
        return None if run is None else (run.status, int(run.step))


def parse_last_event_id(value: str | None) -> int | None:
    """The step in a ``Last-Event-ID`` header, or None when it is not a plain ASCII number
    (``str.isdigit`` accepts "²", which ``int`` then refuses)."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 18 or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def _has_everything(since: int | None, header: int | None, step: int) -> bool:
    """The client already holds the run's last step (and so, after the stream's final status,
    everything). ``since=0`` means "from the start", never "everything", so the page of a run
    that ended before its first step still gets its status and events once (the final status then
    carries ``id: 0``, which the reconnect sends back as Last-Event-ID)."""
    return (header is not None and header >= step) or (since is not None and 0 < step <= since)


@router.get(
    "/{run_id}/stream",
    response_model=None,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the event stream"},
        204: {"description": "the run has ended and the client already has everything"},
    },
)
async def stream(
    run_id: RunId,
    request: Request,
    since: Annotated[
        int | None, Query(ge=0, le=MAX_STEP, description="resume after this step")
    ] = None,
    points: Annotated[
        int,
        Query(ge=MIN_POINTS, le=MAX_POINTS, description="points of the overview (chart width)"),
    ] = DEFAULT_POINTS,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse | Response:
    """Status, the backlog after ``since`` (or Last-Event-ID; an ``overview`` when far behind),
    events, then live; the stream ends after a finished run's final ``status``.

    ``metrics`` messages carry ``id:`` = their last step, so a reconnecting EventSource resumes
    where it stopped; ``event`` messages are upserts keyed by the event id. A client that resumes
    a run that has ended and already has its last step gets 204, which stops EventSource.
    """
    state = await to_thread.run_sync(_run_state, request.app.state.db, run_id)
    if state is None:
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    status, step = state
    header = parse_last_event_id(last_event_id)
    if status in TERMINAL_STATUSES and _has_everything(since, header, step):
        return Response(status_code=204)
    start = max(since or 0, header or 0)
    return EventSourceResponse(
        request.app.state.hub.viewer(run_id, start, points),
        ping=PING_SECONDS,
        send_timeout=SEND_TIMEOUT_SECONDS,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
