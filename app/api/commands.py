"""``POST /api/runs/{id}/commands``: queue a command for the run's worker."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from app import crud
from app.api.deps import DbDep, RunId, run_or_404
from app.api.responses import EventOut
from app.api.schemas import Command
from app.models import TERMINAL_STATUSES

router = APIRouter(prefix="/api/runs", tags=["commands"])


@router.post("/{run_id}/commands", status_code=202, response_model=EventOut)
def post_command(run_id: RunId, command: Command, db: DbDep) -> dict[str, Any]:
    """Store the command; the worker applies it at the next step boundary and records the step.

    202: accepted, not yet applied; ``note`` says what it waits for. Follow it with ``GET
    /events`` or the stream. A run that has ended takes no more commands (409). A ``stop`` for a
    run no worker holds (queued, or handed back) needs no worker: it applies at once, at the run's
    committed step, and closes the commands still pending (no worker will apply them).
    """
    with db.write() as s:
        run = run_or_404(s, run_id)
        ended = run.status if run.status in TERMINAL_STATUSES else None
        if ended is not None:
            crud.close_if_ended(s, run)  # any an older version left open; committed before the 409
        else:
            payload = command.model_dump(exclude={"type"})
            event = crud.record_command(s, run_id, command.type, payload)
            if command.type == "stop" and crud.stop_if_unclaimed(s, run_id):
                crud.mark_applied(s, event.id, run.step)
                crud.close_pending_commands(s, run_id, run.step, "stopped")
                s.refresh(event)
            return crud.serialize_event(event, crud.describe_command(s, event))
    raise HTTPException(status_code=409, detail=f"run {run_id} is {ended}")
