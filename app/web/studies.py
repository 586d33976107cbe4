"""``/studies`` and ``/studies/{id}``: caviar mode's pages, and the form posts of their buttons.

The study page's live part (table, plots, status) is a server-rendered fragment that refreshes
itself by htmx every ``REFRESH`` while the study can change, and is rendered without its trigger
once the study has ended. Not an SSE stream: a study changes at the pace of its trials'
evaluations (every few seconds), the run page's stream hub tails one run, and a fragment is
cheap to render. What keeps the database load from growing with the number of viewers is
``LiveCache``: one render per study (and sort order) per ``CACHE_SECONDS``, the same HTML served
to every viewer in between.

The buttons (pause / resume / stop the study, narrow around the best k, continue the best, and a
PBT member's moves by hand: copy the best, lr x1.2 / x0.8) call the JSON API's own functions
(app/api/studies.py), so the page and the API cannot disagree; a refusal comes back as a message
with the API's status code (409 for a study that has ended, 422 naming the field). Pause /
resume / stop are enabled as the study's status allows, and follow it: each live refresh and
each command's answer carries them out of band.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError

from app.api import studies as api
from app.api.deps import DbDep, ReadSession, RunId, SettingsDep
from app.web import studies_form, studies_view
from app.web.messages import message, refusal
from app.web.runs_list import templates

T = TypeVar("T")

REFRESH = "2s"
"""How often a watched study's live part refreshes itself (trials evaluate every few seconds)."""

CACHE_SECONDS = 1.0
"""A rendered live part is served to every viewer for this long (less than REFRESH, so one
viewer always sees fresh data)."""

page_router = APIRouter(include_in_schema=False)


class LiveCache:
    """Rendered live parts by (study, sort), each kept ``ttl`` seconds: N viewers of a study
    cost the database one read per ``ttl``, not N."""

    def __init__(self, ttl: float = CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._items: dict[tuple[Any, ...], tuple[float, str]] = {}

    def get(self, key: tuple[Any, ...], render: Callable[[], str]) -> str:
        """The cached HTML for ``key``, rendered again when older than ``ttl``."""
        with self._lock:
            now = time.monotonic()
            hit = self._items.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
            html = render()
            if len(self._items) > 256:  # studies nobody watches any more
                self._items = {k: v for k, v in self._items.items() if now - v[0] < self.ttl}
            self._items[key] = (time.monotonic(), html)
            return html

    def forget(self, study_id: int) -> None:
        """Drop the study's renders (every sort order): a move or command just changed it, and
        the next refresh should show that rather than a render up to ``ttl`` old."""
        with self._lock:
            self._items = {k: v for k, v in self._items.items() if k[0] != study_id}


def _cache(request: Request) -> LiveCache:
    cache = getattr(request.app.state, "study_live_cache", None)
    if cache is None:
        cache = request.app.state.study_live_cache = LiveCache()
    return cache


SortQuery = Annotated[str, Query(max_length=100, description="a column: number, p.lr, ...")]
DirQuery = Annotated[str, Query(alias="dir", pattern="^(asc|desc)$", description="asc or desc")]


def _bad_sort(request: Request, message: str) -> HTMLResponse:
    return templates(request).TemplateResponse(
        request, "studies.html", {"studies": [], "any_active": False, "error": message},
        status_code=422,
    )  # fmt: skip


def _context(session: Any, study_id: int, sort: str, direction: str) -> dict[str, Any]:
    context = studies_view.study_context(session, study_id, sort, direction == "desc")
    if context is None:
        raise HTTPException(status_code=404, detail=f"study {study_id} not found")
    context["refresh"] = REFRESH
    context["modes"] = studies_view.modes()
    return context


# -- pages ---------------------------------------------------------------------------------------


@page_router.get("/studies", response_class=HTMLResponse, name="studies_page")
def studies_page(request: Request, session: ReadSession) -> HTMLResponse:
    """Every study: status, search, trials done/total, best so far, parent study."""
    return templates(request).TemplateResponse(
        request, "studies.html", studies_view.list_context(session)
    )


@page_router.get("/studies/_table", response_class=HTMLResponse, name="studies_table")
def studies_table(request: Request, session: ReadSession) -> HTMLResponse:
    """The studies table alone, for its own refresh while a study runs."""
    return templates(request).TemplateResponse(
        request, "_studies_table.html", studies_view.list_context(session)
    )


@page_router.get("/studies/{study_id}", response_class=HTMLResponse, name="study_page")
def study_page(
    request: Request,
    study_id: api.StudyId,
    session: ReadSession,
    sort: SortQuery = "number",
    direction: DirQuery = "asc",
) -> HTMLResponse:
    """One study: its buttons, then its live part (status, trials table, plots)."""
    try:
        context = _context(session, study_id, sort, direction)
    except studies_view.BadSort as exc:
        return _bad_sort(request, str(exc))
    context["dir"] = direction
    return templates(request).TemplateResponse(request, "study.html", context)


@page_router.get("/studies/{study_id}/_live", response_class=HTMLResponse, name="study_live")
def study_live(
    request: Request,
    study_id: api.StudyId,
    session: ReadSession,
    sort: SortQuery = "number",
    direction: DirQuery = "asc",
) -> HTMLResponse:
    """The live part alone (htmx refresh), from the cache shared by every viewer."""
    env = templates(request).env

    def render() -> str:
        context = {**_context(session, study_id, sort, direction), "dir": direction}
        live = env.get_template("_study_live.html").render(context)
        return live + env.get_template("_study_buttons.html").render({**context, "oob": True})

    try:
        html = _cache(request).get((study_id, sort, direction), render)
    except studies_view.BadSort as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return HTMLResponse(html)


# -- buttons -------------------------------------------------------------------------------------


def _through_api(
    what: str, model: type[BaseModel], fields: dict[str, Any], call: Callable[[Any], T]
) -> T | HTMLResponse:
    """The API's own body model and function for a form post: what it answers, or the refusal
    (its 404/409/422) as the form's message. Every study form goes through here, so a form can
    do nothing the API would refuse."""
    try:
        return call(model.model_validate(fields))
    except (HTTPException, ValidationError, RequestValidationError) as exc:
        return refusal(what, exc)


def _open(request: Request, url: str, text: str) -> Response:
    """Open ``url``: HX-Redirect for htmx, a 303 for a plain form post."""
    if request.headers.get("hx-request"):
        response = message(text, "info", 201)
        response.headers["HX-Redirect"] = url
        return response
    return RedirectResponse(url, status_code=303)


@page_router.post("/studies/{study_id}/commands", response_class=HTMLResponse)
def study_command_form(
    request: Request, study_id: api.StudyId, type: Annotated[str, Form()], db: DbDep
) -> HTMLResponse:
    """Pause, resume or stop the whole study (every unfinished trial gets the command)."""
    what = type if type in ("pause", "resume", "stop") else "command"
    out = _through_api(
        what,
        api.StudyCommand,
        {"type": type},
        lambda b: api.study_command(study_id, b, db, request),
    )
    if isinstance(out, Response):
        return out
    unfinished = sum(1 for t in out["trials"] or [] if t["state"] == "running")
    _cache(request).forget(study_id)
    answer = message(
        f"{type} sent to study {study_id} ({unfinished} unfinished trials); "
        f"the study is {out['status']}",
        "info",
        202,
    )
    # The buttons follow the study's new state at once (an out-of-band swap of #study-buttons).
    template = templates(request).env.get_template("_study_buttons.html")
    state = studies_view.study_buttons(out["status"])
    buttons = template.render(study=out, buttons=state, oob=True)
    return HTMLResponse(bytes(answer.body).decode() + buttons, status_code=202)


@page_router.post("/studies/{study_id}/narrow", response_class=HTMLResponse)
def narrow_form(
    request: Request,
    study_id: api.StudyId,
    db: DbDep,
    k: Annotated[str, Form()] = "3",
    n_trials: Annotated[str, Form()] = "",
) -> Response:
    """A new study around the best ``k`` trials, opened once created."""
    fields: dict[str, Any] = {"k": k.strip() or "3"}
    if n_trials.strip():
        fields["n_trials"] = n_trials.strip()
    out = _through_api(
        "narrow", api.NarrowRequest, fields, lambda b: api.narrow(study_id, b, db, request)
    )
    if isinstance(out, Response):
        return out
    return _open(request, f"/studies/{out['id']}", f"study {out['id']} created; opening it")


@page_router.post("/studies/{study_id}/continue-best", response_class=HTMLResponse)
def continue_best_form(
    request: Request,
    study_id: api.StudyId,
    db: DbDep,
    settings: SettingsDep,
    more_steps: Annotated[str, Form()] = "",
) -> Response:
    """Fork the best trial into a free-standing run that trains ``more_steps`` (empty: the
    API's default) and open it."""
    text = more_steps.strip()
    fields: dict[str, Any] = {}
    if text:  # a whole number as an int (the API's field is strict), anything else as typed
        fields["more_steps"] = int(text) if text.isascii() and text.isdigit() else text
    run = _through_api(
        "continue the best",
        api.ContinueBest,
        fields,
        lambda b: api.continue_best(study_id, db, settings, b),
    )
    if isinstance(run, Response):
        return run
    return _open(request, f"/runs/{run['id']}", f"run {run['id']} created; opening it")


@page_router.post("/studies/{study_id}/members/{run_id}/exploit", response_class=HTMLResponse)
def exploit_form(
    request: Request,
    study_id: api.StudyId,
    run_id: RunId,
    db: DbDep,
    source: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """A PBT member's "copy the best": replace it by an explored fork of ``source`` (the API's
    manual exploit, the same code as PBT's own)."""
    move = _through_api(
        "exploit",
        api.ExploitRequest,
        {"source": source.strip()},
        lambda b: api.exploit_member(study_id, run_id, b, db, request),
    )
    if isinstance(move, Response):
        return move
    _cache(request).forget(study_id)
    return message(
        f"exploit queued (move {move['id']}): run {run_id} will be replaced by an explored fork "
        f"of run {move['source_run_id']} once that run has taken its checkpoint",
        "info",
        202,
    )


@page_router.post("/studies/{study_id}/members/{run_id}/explore", response_class=HTMLResponse)
def explore_form(
    request: Request,
    study_id: api.StudyId,
    run_id: RunId,
    db: DbDep,
    factor: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """A PBT member's "lr x1.2" / "lr x0.8": the API's manual explore, an ordinary set_lr."""
    event = _through_api(
        "explore",
        api.ExploreRequest,
        {"factor": factor.strip() or None},
        lambda b: api.explore_member(study_id, run_id, b, db),
    )
    if isinstance(event, Response):
        return event
    _cache(request).forget(study_id)
    return message(f"run {run_id}: {event['payload']['reason']}", "info", 202)


router = APIRouter(include_in_schema=False)
"""Every study page route; /studies/new (the form) before /studies/{id}."""
router.include_router(studies_form.router)
router.include_router(page_router)
