"""``GET /api/runs/{id}/stream``: server-sent events (``metrics``, ``event``, ``status``)."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Header, HTTPException, Query, Request
from sse_starlette import EventSourceResponse

from app import crud
from app.db import Database

router = APIRouter(prefix="/api/runs", tags=["stream"])

PING_SECONDS = 15
SEND_TIMEOUT_SECONDS = 30


def _exists(db: Database, run_id: int) -> bool:
    with db.read() as s:
        return crud.get_run(s, run_id) is not None


@router.get("/{run_id}/stream")
async def stream(
    run_id: int,
    request: Request,
    since: Annotated[int | None, Query(ge=0, description="resume after this step")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """Status first, then metric rows after ``since`` (or Last-Event-ID) in chunks, then live.

    ``metrics`` messages carry ``id:`` = their last step, so a reconnecting EventSource resumes
    where it stopped; ``event`` messages are upserts keyed by the event id.
    """
    if not await to_thread.run_sync(_exists, request.app.state.db, run_id):
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    start = since or 0
    if last_event_id is not None and last_event_id.strip().isdigit():
        start = max(start, int(last_event_id.strip()))
    return EventSourceResponse(
        request.app.state.hub.viewer(run_id, start),
        ping=PING_SECONDS,
        send_timeout=SEND_TIMEOUT_SECONDS,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
