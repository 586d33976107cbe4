"""``GET /healthz``: 200 when the database answers, 503 otherwise."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """Liveness plus a database round trip; also reports live worker processes."""
    db = request.app.state.db
    supervisor = request.app.state.supervisor
    body: dict[str, Any] = {"database": db.dialect}
    if supervisor is not None:
        body["workers"] = len(supervisor.pids())
    try:
        db.ping()
    except Exception as exc:
        log.exception("health check: database does not answer")
        return JSONResponse({"status": "error", "error": str(exc), **body}, status_code=503)
    return JSONResponse({"status": "ok", **body})
