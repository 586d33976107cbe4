"""Population-based training's records: members linked to their study, exploits (moves), the
latest validation loss a ranking compares, and the family tree a study page draws.

A PBT member is an ordinary run plus a ``trials`` row, as any trial; an exploit is a
``study_moves`` row (app/models.py ``StudyMove``) whose ``(member_run_id, round)`` key makes
the driver's decision idempotent. Nothing here trains or commands: app/studies/pbt.py decides.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.crud.lineage import segments
from app.crud.runs import iso, now
from app.crud.studies import link_trial
from app.models import Metric, Run, Study, StudyMove, StudyTrial
from app.series import json_float

NO_OPTUNA_TRIAL = -1  # a PBT member: PBT draws its own values, Optuna holds no trial for it


def link_member(
    session: Session,
    study: Study,
    run: Run,
    *,
    params: dict[str, Any],
    sampled: dict[str, Any],
    number: int | None = None,
) -> StudyTrial:
    """Make ``run`` member ``number`` of a PBT study (the next free number by default)."""
    if number is None:
        top = session.scalar(
            select(func.max(StudyTrial.number)).where(StudyTrial.study_id == study.id)
        )
        number = 0 if top is None else int(top) + 1
    return link_trial(session, study, run, number, NO_OPTUNA_TRIAL, params, sampled)


def latest_evaluation(session: Session, run_id: int) -> tuple[int, float] | None:
    """(step, val_loss) of the run's latest evaluation, through its lineage: a fork that has
    not evaluated yet stands where its parent stood at the fork step. A non-finite loss is
    +inf (ranked last); None when no evaluation exists."""
    for seg in reversed(segments(session, run_id)):
        stmt = select(Metric.step, Metric.val_loss).where(
            Metric.run_id == seg.run_id, Metric.step > seg.after, Metric.val_acc.is_not(None)
        )
        if seg.before is not None:
            stmt = stmt.where(Metric.step < seg.before)
        row = session.execute(stmt.order_by(Metric.step.desc()).limit(1)).first()
        if row is not None:
            loss = row[1]
            value = math.inf if loss is None or not math.isfinite(loss) else float(loss)
            return int(row[0]), value
    return None


def add_move(
    session: Session,
    *,
    study_id: int,
    member_run_id: int,
    source_run_id: int,
    round_: int | None,
    by: str,
    checkpoint_event_id: int | None,
    member_loss: float | None = None,
    source_loss: float | None = None,
) -> StudyMove:
    """A waiting exploit (the unique (member, round) key refuses a second one)."""
    move = StudyMove(
        study_id=study_id,
        member_run_id=member_run_id,
        source_run_id=source_run_id,
        round=round_,
        by=by,
        status="waiting",
        checkpoint_event_id=checkpoint_event_id,
        member_loss=member_loss,
        source_loss=source_loss,
        created_at=now(),
    )
    session.add(move)
    session.flush()
    return move


def move_exists(session: Session, member_run_id: int, round_: int) -> bool:
    """Whether PBT already decided about this member at this perturbation step."""
    stmt = select(StudyMove.id).where(
        StudyMove.member_run_id == member_run_id, StudyMove.round == round_
    )
    return session.execute(stmt.limit(1)).first() is not None


def moves_of(session: Session, study_id: int, *, status: str | None = None) -> list[StudyMove]:
    """The study's moves in id order (only those with ``status`` when given)."""
    stmt = select(StudyMove).where(StudyMove.study_id == study_id)
    if status is not None:
        stmt = stmt.where(StudyMove.status == status)
    return list(session.scalars(stmt.order_by(StudyMove.id)))


def finish_move(
    session: Session, move_id: int, status: str, note: str, child_run_id: int | None = None
) -> bool:
    """Close a waiting move (done or cancelled); False if it was not waiting any more."""
    result = session.execute(
        update(StudyMove)
        .where(StudyMove.id == move_id, StudyMove.status == "waiting")
        .values(status=status, note=note, child_run_id=child_run_id, done_at=now())
    )
    return result.rowcount == 1


def serialize_move(move: StudyMove) -> dict[str, Any]:
    """A move in the API (``GET /api/studies/{id}``'s ``moves``, the manual exploit's answer)."""
    return {
        "id": move.id,
        "member_run_id": move.member_run_id,
        "source_run_id": move.source_run_id,
        "round": move.round,
        "by": move.by,
        "status": move.status,
        "child_run_id": move.child_run_id,
        "member_loss": json_float(move.member_loss),
        "source_loss": json_float(move.source_loss),
        "note": move.note,
        "created_at": iso(move.created_at),
        "done_at": iso(move.done_at),
    }


def family_tree(rows: list[tuple[StudyTrial, Run]]) -> list[dict[str, Any]]:
    """Each trial run with the run it was forked from (``parent_id`` null for a first member
    or a search trial) and at which step: the edges of the study's family tree."""
    return [
        {
            "run_id": run.id,
            "trial": trial.number,
            "parent_id": run.parent_id,
            "parent_step": run.parent_step,
        }
        for trial, run in rows
    ]
