"""``/``: the runs list (with its status filter and compare ticks) and the new-run form.

The form posts to ``POST /runs`` (htmx ``hx-post``, or a plain form post without JavaScript).
It answers with ``HX-Redirect`` to the new run's page (a 303 for a plain post), or with the form
again, status 422, each error next to its field (base.html lets htmx swap 422 answers).

``/_runs`` serves the list alone for its own htmx polling; it carries its trigger only while a
run can still change. The ticks that pick runs to compare survive those refreshes because each
checkbox is ``hx-preserve``d by id. Handlers are plain ``def``: database calls block, and FastAPI
runs these in its threadpool.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from app import crud
from app.api.deps import DbDep, ReadSession, SettingsDep
from app.models import TERMINAL_STATUSES
from app.web import new_run_form, run_summary

router = APIRouter(include_in_schema=False)


def templates(request: Request) -> Jinja2Templates:
    """The app's templates (every filter is registered where app/main.py makes them)."""
    found: Jinja2Templates = request.app.state.templates
    return found


StatusQuery = Annotated[
    str | None, Query(description="show only runs with this status (one of RUN_STATUSES)")
]


TrialsQuery = Annotated[
    Literal["hide"] | None,
    Query(description="'hide': leave out the runs that are a study's trials (caviar mode)"),
]


def runs_context(
    session: Session, status: str | None = None, trials: str | None = None
) -> dict[str, Any]:
    """What ``_runs_table.html`` needs: the runs (filtered by status, and without the studies'
    trials when asked: a study of 50 trials would bury the runs a person nurses), the count of
    each status, and whether anything can still change (then the table keeps polling)."""
    if status is not None and status not in run_summary.STATUSES:
        raise HTTPException(
            status_code=422,
            detail=f"status: {status!r} is not one of {', '.join(run_summary.STATUSES)}",
        )
    every = crud.serialize_runs(session, crud.list_runs(session))
    counts = {s: sum(r["status"] == s for r in every) for s in run_summary.STATUSES}
    shown = [r for r in every if trials != "hide" or r.get("study_id") is None]
    runs = [r for r in shown if status is None or r["status"] == status]
    query = "&".join(f"{k}={v}" for k, v in (("status", status), ("trials", trials)) if v)
    return {
        "runs": runs,
        "total": len(every),
        "status_filter": status,
        "status_counts": counts,
        "trials_filter": trials,
        "trial_count": sum(r.get("study_id") is not None for r in every),
        "query": f"?{query}" if query else "",
        "any_active": any(r["status"] not in TERMINAL_STATUSES for r in shown),
    }


@router.get("/", response_class=HTMLResponse, name="runs_page")
def runs_page(
    request: Request, session: ReadSession, status: StatusQuery = None, trials: TrialsQuery = None
) -> HTMLResponse:
    """The runs list and the new-run form, prefilled with RunConfig's own defaults."""
    context = {**runs_context(session, status, trials), **new_run_form.form_context()}
    return templates(request).TemplateResponse(request, "index.html", context)


@router.get("/_runs", response_class=HTMLResponse, name="runs_fragment")
def runs_fragment(
    request: Request, session: ReadSession, status: StatusQuery = None, trials: TrialsQuery = None
) -> HTMLResponse:
    """The runs table alone, for its own htmx polling."""
    context = runs_context(session, status, trials)
    return templates(request).TemplateResponse(request, "_runs_table.html", context)


@router.post("/runs", response_class=HTMLResponse, name="new_run")
def new_run(
    request: Request,
    form: Annotated[new_run_form.NewRunForm, Form()],
    db: DbDep,
    settings: SettingsDep,
) -> Response:
    """Create a run from the new-run form, as ``POST /api/runs`` would; nothing on a bad field."""
    try:
        run = new_run_form.create(form, db, settings)
    except new_run_form.FormInvalid as exc:
        context = new_run_form.form_context(form, exc.errors)
        if request.headers.get("hx-request"):
            return templates(request).TemplateResponse(
                request, "_new_run_form.html", context, status_code=422
            )
        with db.read() as session:  # no htmx: the whole page again, the form as it was sent
            context.update(runs_context(session))
        return templates(request).TemplateResponse(request, "index.html", context, status_code=422)
    url = f"/runs/{run['id']}"
    if request.headers.get("hx-request"):
        return Response(status_code=201, headers={"HX-Redirect": url, "Location": url})
    return RedirectResponse(url, status_code=303)
