"""Population-based training's moves asked for by hand, which no PBT implementation allows:
``POST /api/studies/{id}/members/{run_id}/exploit`` queues the same two-step exploit PBT makes
(app/studies/pbt.py carries it out), ``.../explore`` an ordinary ``set_lr`` with its reason.
"""

from __future__ import annotations

import math

from sqlalchemy.orm import Session

from app import crud
from app.crud import studies as crud_studies
from app.crud import study_moves
from app.models import TERMINAL_STATUSES, Event, Run, Study, StudyMove, StudyTrial
from app.studies.pbt_rules import fmt
from engine import RunConfig


class MoveRefused(Exception):
    """A move the API refuses: ``status`` (404, 409 or 422), ``field`` for a 422, a message."""

    def __init__(self, status: int, msg: str, field: str | None = None) -> None:
        super().__init__(msg)
        self.status, self.msg, self.field = status, msg, field


def _active_member(s: Session, study: Study, run_id: int) -> tuple[StudyTrial, Run]:
    """The member ``run_id`` of a PBT study, still training (MoveRefused otherwise)."""
    if study.mode != "pbt":
        raise MoveRefused(409, f"study {study.id} is a {study.mode} study: exploit and explore "
                          "are moves of population-based training (mode pbt)")  # fmt: skip
    if study.status not in ("running", "paused"):
        raise MoveRefused(409, f"study {study.id} is {study.status}")
    trial = crud_studies.trial_of_run(s, run_id)
    run = s.get(Run, run_id)
    if trial is None or trial.study_id != study.id or run is None:
        raise MoveRefused(404, f"run {run_id} is no member of study {study.id}")
    if trial.state is not None or trial.pruned_reason is not None:
        raise MoveRefused(
            409, f"run {run_id} is no longer a member: {trial.pruned_reason or trial.state}"
        )
    if run.status in TERMINAL_STATUSES:
        raise MoveRefused(409, f"run {run_id} has {run.status}")
    return trial, run


def request_exploit(s: Session, study: Study, member_run_id: int, source_run_id: int) -> StudyMove:
    """A person's exploit: ``member_run_id`` is to be replaced by a fork of ``source_run_id``
    at the source's latest state, through the same two steps as PBT's own (a checkpoint
    command now, the fork when it has applied; the driver does the rest)."""
    _, member = _active_member(s, study, member_run_id)
    if source_run_id == member_run_id:
        raise MoveRefused(422, "a member cannot exploit itself", "source")
    try:
        _, source = _active_member(s, study, source_run_id)
    except MoveRefused as exc:
        raise MoveRefused(422, f"source: {exc.msg}", "source") from exc
    waiting = study_moves.moves_of(s, study.id, status="waiting")
    if any(m.member_run_id == member_run_id for m in waiting):
        raise MoveRefused(409, f"run {member_run_id} is already being replaced")
    event = crud_studies.queue_command(
        s,
        source,
        "checkpoint",
        {"study_id": study.id, "reason": f"exploit by hand: a copy for #{member.id}"},
    )
    member_eval = study_moves.latest_evaluation(s, member.id)
    source_eval = study_moves.latest_evaluation(s, source.id)
    return study_moves.add_move(
        s,
        study_id=study.id,
        member_run_id=member.id,
        source_run_id=source.id,
        round_=None,
        by="user",
        checkpoint_event_id=None if event is None else event.id,
        member_loss=None if member_eval is None else member_eval[1],
        source_loss=None if source_eval is None else source_eval[1],
    )


def explore_lr(
    s: Session, study: Study, member_run_id: int, *, lr: float | None, factor: float | None
) -> Event:
    """A person's explore: an ordinary ``set_lr`` on the member, to ``lr`` or its current rate
    times ``factor``, whose ``reason`` says "explore by hand: lr a -> b"."""
    trial, run = _active_member(s, study, member_run_id)
    current = run.lr if run.lr is not None else crud.run_config(run).get("lr")
    if lr is None:
        if current is None or not math.isfinite(current):
            raise MoveRefused(409, f"run {member_run_id} has no current learning rate to scale")
        lr = float(current) * float(factor)  # type: ignore[arg-type]
        field = "factor"
    else:
        field = "lr"
    limit = RunConfig.model_fields["lr"].metadata
    top = next((m.le for m in limit if getattr(m, "le", None) is not None), 100.0)
    if not (math.isfinite(lr) and 0.0 < lr <= top):
        raise MoveRefused(422, f"the new lr {lr:.4g} is outside (0, {top:g}]", field)
    reason = (
        f"explore by hand: lr {fmt(float(current)) if current is not None else '?'} -> {fmt(lr)}"
    )
    payload = {"lr": lr, "reason": reason, "study_id": study.id, "trial": trial.number}
    event = crud_studies.queue_command(s, run, "set_lr", payload)
    assert event is not None  # the member is still training
    return event
