"""The overfit check on the run page: the button that starts one, and the check's own panel.

The panel (templates/_checks.html) says in plain words where the check stands ("reached 100% at
step 87: the model can learn"); while the check runs it re-fetches itself every second, and once
the run has ended it is rendered without that trigger, so the polling stops.
"""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from app import crud
from app.api.checks import OverfitRequest, is_overfit_check, overfit_result, start_overfit_check
from app.api.deps import ReadSession, run_or_404
from app.web import present
from app.web.messages import message, refusal
from app.web.run_page import pause_if_moving

router = APIRouter(include_in_schema=False)


@router.get("/runs/{run_id}/overfit-check/panel", response_class=HTMLResponse)
def overfit_panel(request: Request, run_id: int, session: ReadSession) -> HTMLResponse:
    """The overfit check's panel, fetched every second while it runs."""
    run = run_or_404(session, run_id)
    if not is_overfit_check(crud.run_config(run)):
        raise HTTPException(404, f"run {run_id} is not an overfit check")
    templates = request.app.state.templates
    html = templates.env.get_template("_checks.html").render(
        run=crud.serialize_run(run),
        result=overfit_result(session, run),
        active=run.status in present.ACTIVE_STATUSES,
    )
    return HTMLResponse(html)


@router.post("/runs/{run_id}/overfit-check", response_class=HTMLResponse)
async def overfit_form(request: Request, run_id: int) -> HTMLResponse:
    """The run page's "overfit 20 examples" button: start the check and open it (HX-Redirect);
    ``pause`` pauses this run first, so one worker can take the check."""
    form = await request.form()
    db, settings = request.app.state.db, request.app.state.settings
    try:
        child = await to_thread.run_sync(
            start_overfit_check, run_id, OverfitRequest(), db, settings
        )
        if form.get("pause"):
            await to_thread.run_sync(pause_if_moving, db, run_id)
    except (HTTPException, ValidationError, RequestValidationError) as exc:
        return refusal("overfit check", exc)
    response = message(f"overfit check #{child['id']} started; opening it", "info")
    response.headers["HX-Redirect"] = f"/runs/{child['id']}"
    return response
