"""Studies and their trials: create, read, link a trial to its run, serialize.

A trial is an ordinary run (``runs``) plus one ``trials`` row linking it to its study; nothing
here changes how a run trains. Commands to a study's runs go through the ordinary events table
(``queue_command``), exactly as a person's.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.crud.events import close_pending_commands, mark_applied, record_command
from app.crud.leases import stop_if_unclaimed
from app.crud.runs import create_run, iso, now
from app.models import TERMINAL_STATUSES, Event, Metric, Run, Study, StudyTrial
from app.series import json_float

ACTIVE_STUDY_STATUSES = ("running", "paused", "stopping")


def create_study(
    session: Session,
    *,
    name: str | None,
    config: dict[str, Any],
    space: dict[str, Any],
    n_trials: int,
    parallel: int,
    sampler: str,
    pruner: str | None,
    mode: str,
    seed: int,
    options: dict[str, Any],
    parent_study_id: int | None = None,
) -> Study:
    """Insert a running study; without a name it is called ``study-<id>``."""
    ts = now()
    study = Study(
        name=name or "",
        status="running",
        mode=mode,
        config=json.dumps(config),
        space=json.dumps(space),
        n_trials=n_trials,
        parallel=parallel,
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        options=json.dumps(options),
        optuna_name=f"pandamode-{uuid.uuid4().hex}",
        parent_study_id=parent_study_id,
        created_at=ts,
        updated_at=ts,
    )
    session.add(study)
    session.flush()
    if not name:
        study.name = f"study-{study.id}"
        session.flush()
    return study


def get_study(session: Session, study_id: int) -> Study | None:
    """The study with this id, or None."""
    return session.get(Study, study_id)


def list_studies(session: Session, *, limit: int = 500) -> list[Study]:
    """Studies, newest first."""
    return list(session.scalars(select(Study).order_by(Study.id.desc()).limit(limit)))


def active_study_ids(session: Session) -> list[int]:
    """Studies the driver still has work for (creating, watching or ending trials)."""
    stmt = select(Study.id).where(Study.status.in_(ACTIVE_STUDY_STATUSES)).order_by(Study.id)
    return list(session.scalars(stmt))


def set_study_status(session: Session, study_id: int, status: str) -> None:
    """Set a study's status and bump updated_at."""
    session.execute(
        update(Study).where(Study.id == study_id).values(status=status, updated_at=now())
    )


def study_json(study: Study, column: str) -> dict[str, Any]:
    """One of the study's JSON columns (config, space, options) as a dict."""
    return json.loads(getattr(study, column) or "{}")


def trials_of(session: Session, study_id: int) -> list[tuple[StudyTrial, Run]]:
    """The study's trials with their runs, in trial-number order."""
    stmt = (
        select(StudyTrial, Run)
        .join(Run, Run.id == StudyTrial.run_id)
        .where(StudyTrial.study_id == study_id)
        .order_by(StudyTrial.number)
    )
    return [(t, r) for t, r in session.execute(stmt).all()]


def trial_params(trial: StudyTrial) -> dict[str, Any]:
    """The RunConfig values a trial set."""
    return json.loads(trial.params)


def trial_of_run(session: Session, run_id: int) -> StudyTrial | None:
    """The trials row of a run, or None for a run that is no trial."""
    return session.scalars(select(StudyTrial).where(StudyTrial.run_id == run_id)).first()


def add_trial(
    session: Session,
    study: Study,
    *,
    number: int,
    optuna_trial_id: int,
    params: dict[str, Any],
    sampled: dict[str, Any],
    config: dict[str, Any],
) -> tuple[StudyTrial, Run]:
    """Create the trial's run (queued: the next free worker trains it) and link it."""
    run = create_run(session, config=config, name=f"study {study.id} · trial {number}")
    trial = link_trial(session, study, run, number, optuna_trial_id, params, sampled)
    return trial, run


def link_trial(
    session: Session,
    study: Study,
    run: Run,
    number: int,
    optuna_trial_id: int,
    params: dict[str, Any],
    sampled: dict[str, Any],
) -> StudyTrial:
    """The row that makes ``run`` trial ``number`` of ``study`` (a search's trial or a PBT
    member), with what was drawn for it."""
    trial = StudyTrial(
        study_id=study.id,
        run_id=run.id,
        number=number,
        optuna_trial_id=optuna_trial_id,
        params=json.dumps(params),
        sampled=json.dumps(sampled),
        reported_step=0,
        created_at=now(),
    )
    session.add(trial)
    session.flush()
    return trial


def mark_told(session: Session, trial_id: int, state: str, value: float | None) -> None:
    """Record what Optuna was told about a trial (complete, pruned or fail)."""
    session.execute(
        update(StudyTrial)
        .where(StudyTrial.id == trial_id)
        .values(state=state, value=value, told_at=now())
    )


def set_reported(session: Session, trial_id: int, step: int) -> None:
    """The last evaluation step reported to Optuna's pruner."""
    session.execute(update(StudyTrial).where(StudyTrial.id == trial_id).values(reported_step=step))


def set_pruned(session: Session, trial_id: int, reason: str) -> None:
    """Why the trial is being ended early (the pruner, or a study stop)."""
    session.execute(
        update(StudyTrial).where(StudyTrial.id == trial_id).values(pruned_reason=reason)
    )


def evaluations_after(session: Session, run_id: int, after: int) -> list[tuple[int, float]]:
    """(step, val_loss) of the run's own evaluations after step ``after`` (NaN where the loss
    was not finite: SQLite stores NaN as NULL)."""
    stmt = (
        select(Metric.step, Metric.val_loss)
        .where(Metric.run_id == run_id, Metric.step > after, Metric.val_acc.is_not(None))
        .order_by(Metric.step)
    )
    return [(int(s), math.nan if v is None else float(v)) for s, v in session.execute(stmt)]


def best_eval_step(session: Session, run_id: int) -> int | None:
    """The first step of the run's lowest finite validation loss (None: no evaluation)."""
    stmt = (
        select(Metric.step)
        .where(Metric.run_id == run_id, Metric.val_acc.is_not(None), Metric.val_loss.is_not(None))
        .order_by(Metric.val_loss, Metric.step)
        .limit(1)
    )
    return session.scalars(stmt).first()


def queue_command(
    session: Session, run: Run, type_: str, payload: dict[str, Any] | None = None
) -> Event | None:
    """An ordinary command for a trial's run, as ``POST /api/runs/{id}/commands`` queues it
    (None for a run that has ended). A stop for a run no worker holds applies at once."""
    if run.status in TERMINAL_STATUSES:
        return None
    event = record_command(session, run.id, type_, payload)
    if type_ == "stop" and stop_if_unclaimed(session, run.id):
        mark_applied(session, event.id, run.step)
        close_pending_commands(session, run.id, run.step, "stopped")
    return event


def serialize_trial(trial: StudyTrial, run: Run) -> dict[str, Any]:
    """A trial in the study object: its run, what it set, how it stands."""
    return {
        "number": trial.number,
        "run_id": run.id,
        "name": run.name,
        "params": json.loads(trial.params),
        "sampled": json.loads(trial.sampled),
        "status": run.status,
        "step": run.step,
        "total_steps": run.total_steps,
        "lr": json_float(run.lr),
        "best_val_loss": json_float(run.best_val_loss),
        "best_val_acc": json_float(run.best_val_acc),
        "state": trial.state or "running",
        "value": json_float(trial.value),
        "pruned_reason": trial.pruned_reason,
    }


def best_trial(rows: list[tuple[StudyTrial, Run]]) -> tuple[StudyTrial, Run] | None:
    """The trial whose run reached the lowest finite validation loss (ties: lowest number)."""
    scored = [
        (r.best_val_loss, t.number, t, r)
        for t, r in rows
        if r.best_val_loss is not None and math.isfinite(r.best_val_loss)
    ]
    if not scored:
        return None
    _, _, t, r = min(scored, key=lambda x: (x[0], x[1]))
    return t, r


def serialize_study(
    study: Study, rows: list[tuple[StudyTrial, Run]], *, with_trials: bool = True
) -> dict[str, Any]:
    """The study object of the API; ``trials`` only with ``with_trials`` (``counts`` always)."""
    counts: dict[str, int] = {}
    for _, run in rows:
        counts[run.status] = counts.get(run.status, 0) + 1
    best = best_trial(rows)
    out: dict[str, Any] = {
        "id": study.id,
        "name": study.name,
        "status": study.status,
        "mode": study.mode,
        "config": study_json(study, "config"),
        "space": study_json(study, "space"),
        "n_trials": study.n_trials,
        "parallel": study.parallel,
        "sampler": study.sampler,
        "pruner": study.pruner,
        "seed": study.seed,
        "options": study_json(study, "options"),
        "parent_study_id": study.parent_study_id,
        "created_at": iso(study.created_at),
        "updated_at": iso(study.updated_at),
        "counts": counts,
        "best": None if best is None else serialize_trial(*best),
    }
    if with_trials:
        out["trials"] = [serialize_trial(t, r) for t, r in rows]
    return out


def trial_links(session: Session, run_ids: list[int]) -> dict[int, tuple[int, int]]:
    """``trial_link`` of many runs at once: run id -> (study_id, trial number), trials only."""
    out: dict[int, tuple[int, int]] = {}
    for i in range(0, len(run_ids), 500):  # well within any database's parameter limit
        stmt = select(StudyTrial.run_id, StudyTrial.study_id, StudyTrial.number).where(
            StudyTrial.run_id.in_(run_ids[i : i + 500])
        )
        out.update((int(r[0]), (int(r[1]), int(r[2]))) for r in session.execute(stmt))
    return out


def trial_link(session: Session, run_id: int) -> tuple[int, int] | None:
    """(study_id, trial number) of a run that is a trial (the run object's ``study_id`` and
    ``trial``), None for any other run."""
    stmt = select(StudyTrial.study_id, StudyTrial.number).where(StudyTrial.run_id == run_id)
    row = session.execute(stmt).first()
    return None if row is None else (int(row[0]), int(row[1]))
