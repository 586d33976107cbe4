"""``/studies/new``: the form that creates a study, posted as plain fields to ``POST /studies``.

The base config is the new-run form's (the same fields and parsing: app/web/new_run_form.py);
below it, one row per field a study can search, each with a tick and either a range (low,
high, and a scale: linear, log, or log 1-x for averaging parameters) or choices separated by
``|``. The post builds the ``POST /api/studies`` body and calls that endpoint's own function,
so the page cannot accept what the API refuses; a refusal comes back as the form again (422)
with each error next to the field it is about, and nothing is created.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.api import studies as api
from app.studies import MODES
from app.web import new_run_form
from app.web.new_run_form import FieldError, FormInvalid, NewRunForm
from app.web.runs_list import templates

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class SearchRow:
    """A field the form offers to search, with the range or choices it starts with."""

    field: str
    kind: str  # "range" or "choices"
    low: str = ""
    high: str = ""
    scale: str = "linear"  # linear | log | log1m
    choices: str = ""
    hint: str = ""


SEARCH_ROWS: tuple[SearchRow, ...] = (
    SearchRow("lr", "range", "0.0001", "1", "log", hint="a rate: log scale"),
    SearchRow("batch_size", "range", "16", "256", "log"),
    SearchRow("weight_decay", "range", "0.00001", "0.1", "log"),
    SearchRow("dropout", "range", "0", "0.5", "linear"),
    SearchRow("momentum", "range", "0.8", "0.99", "log1m", hint="averaging: 1 - x on a log scale"),
    SearchRow("beta1", "range", "0.8", "0.99", "log1m", hint="averaging: 1 - x on a log scale"),
    SearchRow("beta2", "range", "0.99", "0.9999", "log1m", hint="averaging: 1 - x on a log scale"),
    SearchRow("hidden", "choices", choices="64 | 128, 128", hint="widths; choices by |"),
    SearchRow("optimizer", "choices", choices="sgd | momentum | adam"),
    SearchRow("activation", "choices", choices="relu | tanh"),
    SearchRow("batchnorm", "choices", choices="true | false"),
)
ROWS = {row.field: row for row in SEARCH_ROWS}
SCALES = (("linear", "linear"), ("log", "log"), ("log1m", "log 1\u2212x"))
SAMPLERS = ("random", "grid", "tpe")
PRUNERS = ("", "median", "hyperband")
STUDY_FIELDS = ("n_trials", "parallel", "sampler", "pruner", "mode", "perturbation_interval")
DEFAULT_TICKED = ("lr",)
DEFAULT_MAX_STEPS = "500"
"""Steps per trial the form starts at: a study is many runs, so each is short by default."""


def default_values() -> dict[str, Any]:
    """The form as first shown: the new-run form's defaults, at full speed, 500 steps a
    trial, the learning rate ticked on a log range, 16 trials two at a time."""
    base = new_run_form.default_form().model_dump()
    base.update(pace="", max_steps=DEFAULT_MAX_STEPS)
    values: dict[str, Any] = {**base, "n_trials": "16", "parallel": "2", "sampler": "random",
                              "pruner": "", "mode": "search", "study_seed": ""}  # fmt: skip
    for row in SEARCH_ROWS:
        values[f"low.{row.field}"], values[f"high.{row.field}"] = row.low, row.high
        values[f"scale.{row.field}"], values[f"choices.{row.field}"] = row.scale, row.choices
    return values


def form_context(
    values: Mapping[str, Any] | None = None,
    ticked: Sequence[str] = DEFAULT_TICKED,
    errors: Sequence[FieldError] = (),
) -> dict[str, Any]:
    """What ``_study_form.html`` needs: the values, the ticks, the errors and the options."""
    values = dict(values) if values is not None else default_values()
    base = NewRunForm.model_validate(
        {k: values[k] for k in NewRunForm.model_fields if values.get(k) is not None}
    )
    return {
        **new_run_form.form_context(base, errors),
        "values": values,
        "ticked": set(ticked),
        "rows": SEARCH_ROWS,
        "scales": SCALES,
        "samplers": SAMPLERS,
        "pruners": PRUNERS,
        "modes": sorted(MODES),
    }


# -- from the fields to the API's body -----------------------------------------------------------


def _number(text: str) -> Any:
    """A bound as a number when it is one (else the text, for the API to name); empty: None."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def _choice(field: str, text: str) -> Any:
    """One choice's text as the value RunConfig takes: widths for ``hidden``, a bool, a number,
    or the text itself (which RunConfig then names if it refuses it)."""
    if field == "hidden":
        parts = [p for p in re.split(r"[\s,]+", text) if p]
        return [int(p) if p.isdigit() else p for p in parts]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    number = _number(text)
    return number if number is not None else text


def space_from_form(values: Mapping[str, str], ticked: Sequence[str]) -> dict[str, Any]:
    """The ``space`` of the ticked rows (in the rows' order)."""
    space: dict[str, Any] = {}
    for row in SEARCH_ROWS:
        if row.field not in ticked:
            continue
        if row.kind == "choices":
            text = values.get(f"choices.{row.field}", "")
            space[row.field] = {"choices": [_choice(row.field, c.strip())
                                            for c in text.split("|") if c.strip()]}  # fmt: skip
            continue
        dist: dict[str, Any] = {
            "low": _number(values.get(f"low.{row.field}", "")),
            "high": _number(values.get(f"high.{row.field}", "")),
        }
        scale = values.get(f"scale.{row.field}", "linear")
        if scale == "log":
            dist["log"] = True
        elif scale == "log1m":
            dist["log_one_minus"] = True
        space[row.field] = dist
    return space


def _locate(loc: Sequence[Any], msg: str, from_advanced: set[str]) -> FieldError:
    """An error of the study's body, placed on the form: the base config's as the new-run form
    places them, a space's on its row, the study's settings on theirs."""
    parts = [str(p) for p in loc if p != "body"]
    msg = msg.removeprefix("Value error, ")
    if not parts or parts[0] in ("config", "name", "pace"):
        return new_run_form._locate(tuple(parts), msg, from_advanced)
    if parts[0] == "space":
        if len(parts) == 1:
            msg = "tick at least one field to search" if "at least 1" in msg else msg
            return FieldError("space", "space", msg)
        if len(parts) > 2 and parts[2] in ("low", "high", "choices"):
            msg = f"{parts[2]}: {msg}"  # the row has several inputs: say which
        return FieldError(".".join(parts[:3]), f"search.{parts[1]}", msg)
    if parts[0] == "seed":
        return FieldError("seed", "study_seed", msg)
    return FieldError(".".join(parts), parts[0] if parts[0] in STUDY_FIELDS else None, msg)


def build(values: Mapping[str, str], ticked: Sequence[str]) -> tuple[api.StudyCreate, set[str]]:
    """The ``POST /api/studies`` body the form describes (and the config keys the advanced JSON
    set), or FormInvalid naming every field that is wrong."""
    unknown = [f for f in ticked if f not in ROWS]
    if unknown:
        raise FormInvalid([FieldError("space", "space", f"{unknown[0]!r} cannot be searched here")])
    base = NewRunForm.model_validate({k: values[k] for k in NewRunForm.model_fields if k in values})
    config, from_advanced = new_run_form._config(base)
    body: dict[str, Any] = {"config": config, "space": space_from_form(values, ticked)}
    not_numbers = [
        FieldError(f"space.{f}.{key}", f"search.{f}", f"{key}: {dist[key]!r} is not a number")
        for f, dist in body["space"].items()
        for key in ("low", "high")
        if isinstance(dist.get(key), str)
    ]
    if not_numbers:
        raise FormInvalid(not_numbers)
    if base.name.strip():
        body["name"] = base.name.strip()
    if base.pace.strip():
        body["pace"] = base.pace.strip()
    for key in ("n_trials", "parallel", "sampler", "mode", "perturbation_interval"):
        if values.get(key, "").strip():
            body[key] = values[key].strip()
    body["pruner"] = values.get("pruner", "").strip() or None
    if values.get("study_seed", "").strip():
        body["seed"] = values["study_seed"].strip()
    try:
        return api.StudyCreate.model_validate(body), from_advanced
    except ValidationError as exc:
        raise FormInvalid(
            [_locate(e["loc"], e["msg"], from_advanced) for e in exc.errors()]
        ) from exc


def create(values: Mapping[str, str], ticked: Sequence[str], request: Request) -> dict[str, Any]:
    """Create the study exactly as ``POST /api/studies`` does (its own function)."""
    body, from_advanced = build(values, ticked)
    app = request.app
    try:
        return api.create_study(body, app.state.db, app.state.settings, request)
    except RequestValidationError as exc:
        errors = [_locate(e["loc"], e["msg"], from_advanced) for e in exc.errors()]
        raise FormInvalid(errors) from exc


# -- routes --------------------------------------------------------------------------------------


@router.get("/studies/new", response_class=HTMLResponse, name="new_study_page")
def new_study_page(request: Request) -> HTMLResponse:
    """The form, prefilled: the new-run form's defaults and the learning rate ticked."""
    return templates(request).TemplateResponse(request, "studies_new.html", form_context())


@router.post("/studies", response_class=HTMLResponse, name="new_study")
async def new_study(request: Request) -> Response:
    """Create a study from the form; the new study's page opens (HX-Redirect, or a 303), or the
    form comes back (422) with each problem next to its field."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "search"}
    ticked = [str(v) for v in form.getlist("search")]
    try:
        study = await to_thread.run_sync(create, values, ticked, request)
    except FormInvalid as exc:
        context = form_context(values, ticked, exc.errors)
        name = "_study_form.html" if request.headers.get("hx-request") else "studies_new.html"
        return templates(request).TemplateResponse(request, name, context, status_code=422)
    except HTTPException as exc:
        error = FieldError("body", None, str(exc.detail))
        context = form_context(values, ticked, [error])
        return templates(request).TemplateResponse(
            request, "_study_form.html", context, status_code=exc.status_code
        )
    url = f"/studies/{study['id']}"
    if request.headers.get("hx-request"):
        return Response(status_code=201, headers={"HX-Redirect": url, "Location": url})
    return RedirectResponse(url, status_code=303)
