"""What the study pages show, read in one short transaction: the list of studies, and one
study with its trials (sorted as asked), their curves and the plots (app/web/studies_plots.py).

The trials are the API's own trial objects (``crud.studies.serialize_study``), so the page and
``GET /api/studies/{id}`` cannot disagree. Nothing here writes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.crud import studies as crud_studies
from app.crud import study_moves
from app.models import TERMINAL_STATUSES, Metric, Run, Study
from app.studies import MODES
from app.studies.space import Param, space_from_json
from app.web import present
from app.web import studies_plots as plots

ACTIVE = ("running", "paused", "stopping")
"""Study statuses in which the page still changes (then its live part refreshes itself)."""

BASE_SORTS = ("number", "status", "step", "best_val_loss", "best_val_acc")
"""Table columns one can sort by besides the searched fields (``p.<field>``)."""

MAX_CURVES = 100
"""Trials drawn on the curves chart (the best ones when there are more): a chart with more
lines is a grey blur, and each line costs the page a polyline."""

CURVE_POINTS = 200
"""Points per curve at most (a long trial's evaluations are thinned, keeping its minimum)."""


class BadSort(ValueError):
    """A sort key the table does not have (a 422 naming ``sort``)."""


# -- the list ------------------------------------------------------------------------------------


def list_context(session: Session) -> dict[str, Any]:
    """What ``_studies_table.html`` needs: every study with its done/total and best trial."""
    studies = []
    for study in crud_studies.list_studies(session):
        rows = crud_studies.trials_of(session, study.id)
        out = crud_studies.serialize_study(study, rows, with_trials=False)
        out["done"] = sum(1 for t, _ in rows if t.state is not None)
        out["created"] = len(rows)
        studies.append(out)
    return {"studies": studies, "any_active": any(s["status"] in ACTIVE for s in studies)}


# -- one study -----------------------------------------------------------------------------------


def _sort_value(trial: dict[str, Any], key: str) -> tuple[int, Any]:
    """(missing?, value): a missing or non-finite value sorts last in either direction."""
    value = trial["params"].get(key[2:]) if key.startswith("p.") else trial[key]
    if isinstance(value, bool) or value is None:
        return (1, 0) if value is None else (0, int(value))
    if isinstance(value, int | float):
        return (0, float(value)) if math.isfinite(value) else (1, 0)
    return (0, str(value)) if isinstance(value, str) else (0, plots.choice_label(value))


def sort_trials(
    trials: Sequence[dict[str, Any]], key: str, descending: bool, fields: Sequence[str]
) -> list[dict[str, Any]]:
    """The trials sorted by ``key`` (a base column or ``p.<field>``); ties by trial number.
    Missing values (no evaluation yet, a NaN loss) come last either way."""
    if key not in BASE_SORTS and key not in {f"p.{f}" for f in fields}:
        allowed = ", ".join([*BASE_SORTS, *(f"p.{f}" for f in fields)])
        raise BadSort(f"sort: {key!r} is not a column of the trials table (one of {allowed})")
    have = [t for t in trials if _sort_value(t, key)[0] == 0]
    missing = [t for t in trials if _sort_value(t, key)[0] == 1]
    have.sort(key=lambda t: t["number"])
    have.sort(key=lambda t: _sort_value(t, key)[1], reverse=descending)
    return have + sorted(missing, key=lambda t: t["number"])


def _thin(points: list[tuple[int, float]], most: int) -> list[tuple[int, float]]:
    """At most about ``most`` points: per bucket the lowest loss (what a loss curve is read
    for) and the bucket's last point; a NaN is kept, since it breaks the line."""
    if len(points) <= most:
        return points
    size = math.ceil(len(points) / (most // 2))
    out: list[tuple[int, float]] = []
    for i in range(0, len(points), size):
        bucket = points[i : i + size]
        bad = [p for p in bucket if not math.isfinite(p[1])]
        good = [p for p in bucket if math.isfinite(p[1])]
        keep = {bad[0]} if bad else set()
        if good:
            keep.add(min(good, key=lambda p: p[1]))
        keep.add(bucket[-1])
        out.extend(sorted(keep))
    return out


def curves(session: Session, run_ids: Sequence[int]) -> dict[int, list[tuple[int, float]]]:
    """Each run's validation loss at its evaluations (NaN where it was not finite: SQLite
    stores a NaN as NULL beside a set accuracy)."""
    if not run_ids:
        return {}
    stmt = (
        select(Metric.run_id, Metric.step, Metric.val_loss)
        .where(Metric.run_id.in_(list(run_ids)), Metric.val_acc.is_not(None))
        .order_by(Metric.run_id, Metric.step)
    )
    out: dict[int, list[tuple[int, float]]] = {rid: [] for rid in run_ids}
    for run_id, step, loss in session.execute(stmt):
        out[int(run_id)].append((int(step), math.nan if loss is None else float(loss)))
    return {rid: _thin(points, CURVE_POINTS) for rid, points in out.items()}


def parents(session: Session, run_ids: Sequence[int]) -> dict[int, tuple[int | None, int | None]]:
    """(parent run, fork step) of each run: the edges of the study's family tree."""
    if not run_ids:
        return {}
    stmt = select(Run.id, Run.parent_id, Run.parent_step).where(Run.id.in_(list(run_ids)))
    return {int(i): (p, s) for i, p, s in session.execute(stmt)}


def _drawn(trials: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials whose curves are drawn: all, or the MAX_CURVES best."""
    if len(trials) <= MAX_CURVES:
        return list(trials)
    return sort_trials(trials, "best_val_loss", False, [])[:MAX_CURVES]


def _param_columns(params: Sequence[Param]) -> list[dict[str, Any]]:
    """The table's columns of searched fields: name, scale note, sort key."""
    cols = []
    for p in params:
        note = {"one_minus": "log 1\u2212x", "choices": "choices"}.get(
            p.kind, "log" if p.log else "linear"
        )
        cols.append({"field": p.field, "note": note, "key": f"p.{p.field}"})
    return cols


def study_buttons(status: str) -> dict[str, bool]:
    """Which of pause / resume / stop can apply to a study in ``status`` (the API refuses the
    rest: 409 once it has ended; a pause of a paused study or a resume of a running one would
    change nothing), as the run page enables its buttons."""
    return {
        "pause": status == "running",
        "resume": status == "paused",
        "stop": status in ("running", "paused"),
    }


def member_moves(
    study: dict[str, Any], trials: Sequence[dict[str, Any]], moves: Sequence[dict[str, Any]]
) -> dict[int, dict[str, Any]]:
    """For a PBT study that can still change, the moves by hand each live member's row offers,
    by run id: ``source``, the live member with the lowest best validation loss to copy (None
    for that member itself), or ``replacing``, the waiting move already replacing it. A member
    is live while it trains and was not replaced; pbt_moves has the last word."""
    if study["mode"] != "pbt" or study["status"] not in ("running", "paused"):
        return {}
    waiting = {m["member_run_id"]: m for m in moves if m["status"] == "waiting"}
    live = [
        t
        for t in trials
        if t["state"] == "running"
        and t["pruned_reason"] is None
        and t["status"] not in TERMINAL_STATUSES
    ]
    scored = [
        t
        for t in live
        if isinstance(t["best_val_loss"], float)
        and math.isfinite(t["best_val_loss"])
        and t["run_id"] not in waiting
    ]
    best = min(scored, key=lambda t: (t["best_val_loss"], t["number"]), default=None)
    out = {}
    for t in live:
        source = best if best is not None and best["run_id"] != t["run_id"] else None
        out[t["run_id"]] = {"source": source, "replacing": waiting.get(t["run_id"])}
    return out


def trial_cell(value: Any) -> str:
    """A sampled value in the table: numbers by app.web.present.number, choices as JSON."""
    if isinstance(value, float):
        return present.number(value)
    return plots.choice_label(value)


def study_context(
    session: Session, study_id: int, sort: str = "number", descending: bool = False
) -> dict[str, Any] | None:
    """Everything the study page's live part shows (None: no such study)."""
    model = crud_studies.get_study(session, study_id)
    if model is None:
        return None
    rows = crud_studies.trials_of(session, study_id)
    study = crud_studies.serialize_study(model, rows)
    params = space_from_json(study["space"])
    fields = [p.field for p in params]
    trials = sort_trials(study["trials"], sort, descending, fields)
    for t in trials:
        t["cells"] = [trial_cell(t["params"].get(f)) for f in fields]
    best = study["best"]
    best_number = best["number"] if best else None
    drawn = _drawn(study["trials"])
    parent = (
        session.get(Study, model.parent_study_id) if model.parent_study_id is not None else None
    )
    children = list(session.scalars(select(Study).where(Study.parent_study_id == study_id)))
    done = sum(1 for t in study["trials"] if t["state"] != "running")
    moves = [study_moves.serialize_move(m) for m in study_moves.moves_of(session, study_id)]
    numbers = {t["run_id"]: t["number"] for t in study["trials"]}
    for m in moves:  # the table names members by trial number, as the trials table does
        m["member"], m["source"] = numbers.get(m["member_run_id"]), numbers.get(m["source_run_id"])
        m["child"] = numbers.get(m["child_run_id"]) if m["child_run_id"] is not None else None
    return {
        "study": study,
        "buttons": study_buttons(study["status"]),
        "moves": moves,
        "member_moves": member_moves(study, trials, moves),
        "trials": trials,
        "columns": _param_columns(params),
        "sort": sort,
        "descending": descending,
        "best": best,
        "done": done,
        "active": study["status"] in ACTIVE,
        "parent": parent,
        "children": children,
        "best_plot": plots.best_so_far(study["trials"], best_number),
        "param_plots": [plots.against_param(p, study["trials"], best_number) for p in params],
        "parallel": plots.parallel(params, study["trials"], best_number),
        "curves_plot": plots.loss_curves(
            drawn, curves(session, [t["run_id"] for t in drawn]), best_number
        ),
        "curves_capped": len(drawn) < len(study["trials"]),
        "tree": plots.family_tree(
            study["trials"],
            parents(session, [t["run_id"] for t in study["trials"]]),
            best_number,
        ),
        "max_curves": MAX_CURVES,
    }


def modes() -> list[str]:
    """Study modes the server's driver can run (``pbt`` once population-based training is
    registered, app/studies/driver.py)."""
    return sorted(MODES)
