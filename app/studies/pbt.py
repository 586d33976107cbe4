"""Population-based training (Jaderberg et al., 2017) as a study mode, built only from the
ordinary commands: checkpoint, fork, set_lr and stop (docs/studies.md, "Population-based
training").

The population is ``parallel`` members, each an ordinary run (a trial of the study). Once a
member has trained ``perturbation_interval`` steps since it was last ranked (or started, or was
forked), it is ranked against the others by their latest validation loss; one in the bottom
quarter is replaced by a fork of a random member of the top quarter (exploit) whose
hyperparameters are perturbed (explore), and is stopped with the reason. Ray
Tune's defaults: quantile 0.25, numbers multiplied by 1.2 or 0.8, resampled from the space with
probability 0.25. Fields a fork cannot change (``FROZEN_ON_FORK``) are never explored; the
learning rate is changed by an ordinary ``set_lr`` queued on the fork, so it shows on its curve.

An exploit takes two driver steps, both read back from the database: (1) the decision, a
``study_moves`` row keyed by (member, step) and a ``checkpoint`` command to the source, so the
fork copies the source's latest state rather than an older periodic checkpoint; (2) once that
command applied, in ONE transaction: the fork, its trial row, the explore, the events on both
runs and the member's stop. A server killed anywhere resumes with nothing done twice.

A member that diverges or fails is replaced the same way at its last step, so the population
stays ``parallel``; the study ends when every member has reached the config's ``max_steps``.
The rules themselves are in ``pbt_rules``; the moves a person asks for, in ``pbt_moves``.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app import crud
from app.crud import studies as crud_studies
from app.crud import study_moves
from app.crud.fork_rates import settle_fork_rate
from app.models import TERMINAL_STATUSES, Event, Run, Study, StudyMove, StudyTrial
from app.studies.driver import StudyDriver, register_mode
from app.studies.pbt_rules import draw, explorable, fmt, perturb, quartiles, rng_for, sampled_names
from app.studies.space import Param, space_from_json
from engine import RunConfig

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_EVALS = 4  # perturbation_interval defaults to 4 evaluations
REPLACED = ("failed", "diverged")  # members that end this way are replaced, not just told


def interval_of(study: Study) -> int:
    """The study's perturbation interval in steps (stored in its options)."""
    options = json.loads(study.options or "{}")
    base = json.loads(study.config)
    return int(options.get("perturbation_interval") or DEFAULT_INTERVAL_EVALS * base["eval_every"])


def step(driver: StudyDriver, study_id: int) -> None:
    """One step of a PBT study: fill the population, record ended members, finish waiting
    exploits, rank members that reached a perturbation step, end the study when all are done."""
    with driver.db.read() as s:
        study = crud_studies.get_study(s, study_id)
        if study is None:
            return
    params = space_from_json(json.loads(study.space))
    if study.status == "running":
        _populate(driver, study, params)
    for move in _waiting(driver, study_id):
        _complete(driver, study, params, move)
    if study.status == "stopping":
        _stop_stragglers(driver, study)
    _record_ended(driver, study)
    if study.status == "running":
        _rank(driver, study)
    _maybe_end(driver, study)


def _waiting(driver: StudyDriver, study_id: int) -> list[StudyMove]:
    with driver.db.read() as s:
        return study_moves.moves_of(s, study_id, status="waiting")


def _populate(driver: StudyDriver, study: Study, params: list[Param]) -> None:
    """Members 0 .. parallel-1, drawn from the space (seeded by the study's seed and the
    member's number: a restart draws the same values). Each is created in one transaction
    with its trial row, so none is created twice."""
    with driver.db.read() as s:
        have = {t.number for t, _ in crud_studies.trials_of(s, study.id)}
    base = json.loads(study.config)
    pace = json.loads(study.options or "{}").get("pace")
    for number in range(study.parallel):
        if number in have:
            continue
        rng = rng_for(study.seed, number)
        values = {p.field: draw(p, rng) for p in params}
        config, error = driver.admit(base, values)  # e.g. too wide for the memory limit
        with driver.db.write() as s:
            current = crud_studies.get_study(s, study.id)
            if current is None or current.status != "running":
                return  # paused or stopped meanwhile: no new member
            name = f"study {study.id} · member {number}"
            run = crud.create_run(s, config=config, name=name)
            trial = study_moves.link_member(
                s, study, run, params=values, sampled=sampled_names(params, values), number=number
            )
            if error is not None:
                run.status, run.error = "failed", error
                crud_studies.mark_told(s, trial.id, "fail", None)
            elif pace is not None:
                crud.record_command(s, run.id, "set_pace", {"steps_per_second": float(pace)})


def _stop_stragglers(driver: StudyDriver, study: Study) -> None:
    """Stop a member created while the study's stop was being sent (it would train on and keep
    the study from ending): the same ordinary stop, with the same reason."""
    reason = "the study was stopped"
    with driver.db.write() as s:
        for trial, run in crud_studies.trials_of(s, study.id):
            if trial.state is not None or trial.pruned_reason is not None:
                continue
            if run.status in TERMINAL_STATUSES:
                continue
            crud_studies.set_pruned(s, trial.id, reason)
            payload = {"reason": reason, "study_id": study.id, "trial": trial.number}
            crud_studies.queue_command(s, run, "stop", payload)


def _record_ended(driver: StudyDriver, study: Study) -> None:
    """Tell (in the trials table) how each ended member ended: complete at max_steps, pruned
    when stopped (replaced, or the study stopped), fail otherwise. A member that failed or
    diverged is replaced first: its move is decided here, at its last step."""
    with driver.db.read() as s:
        rows = crud_studies.trials_of(s, study.id)
        waiting = {m.member_run_id for m in study_moves.moves_of(s, study.id, status="waiting")}
    for trial, run in rows:
        if trial.state is not None or run.status not in TERMINAL_STATUSES:
            continue
        if run.id in waiting:
            continue  # its exploit decides first
        replace = run.status in REPLACED and trial.pruned_reason is None
        if replace and study.status == "running" and _decide(driver, study, trial, run, run.step):
            continue
        state, value = "fail", None
        if trial.pruned_reason is not None and run.status in ("finished", "stopped"):
            state = "pruned"  # replaced (or the study stopped) but it ended before its stop did
        elif run.status == "finished":
            loss = run.best_val_loss
            if loss is not None and math.isfinite(loss):
                state, value = "complete", float(loss)
        elif run.status == "stopped":
            state = "pruned"
        with driver.db.write() as s:
            crud_studies.mark_told(s, trial.id, state, value)


def _standing(s: Session, rows: list[tuple[StudyTrial, Run]]) -> dict[int, tuple[int, float]]:
    """Latest (evaluation step, validation loss) of each member still training; one already
    replaced (its stop not applied yet) is no member any more: neither ranked nor copied."""
    out = {}
    for trial, run in rows:
        member = trial.state is None and trial.pruned_reason is None
        if member and run.status not in TERMINAL_STATUSES:
            latest = study_moves.latest_evaluation(s, run.id)
            if latest is not None:
                out[run.id] = latest
    return out


def _rank(driver: StudyDriver, study: Study) -> None:
    """Rank each member whose latest evaluation is at least an interval past its previous
    ranking (or its start: step 0, or the step it was forked at), as Ray Tune counts it, at that
    evaluation's step; the round is recorded in the same transaction as the decision."""
    interval = interval_of(study)
    with driver.db.read() as s:
        rows = crud_studies.trials_of(s, study.id)
        standing = _standing(s, rows)
        moves = study_moves.moves_of(s, study.id, status="waiting")
    # A member being replaced, or being copied (its checkpoint is awaited), waits a tick.
    busy = {m.member_run_id for m in moves} | {m.source_run_id for m in moves}
    by_run = {run.id: (trial, run) for trial, run in rows}
    ranking = sorted(standing, key=lambda r: (standing[r][1], r))
    for run_id, (at, _) in sorted(standing.items()):
        trial, run = by_run[run_id]
        last = max(run.parent_step or 0, trial.reported_step)
        total = run.total_steps
        if at < last + interval or run_id in busy:
            continue
        if total is not None and at >= total:
            continue
        _decide(driver, study, trial, run, at, ranking=ranking, standing=standing)


def _decide(
    driver: StudyDriver,
    study: Study,
    trial: StudyTrial,
    run: Run,
    round_: int,
    *,
    ranking: list[int] | None = None,
    standing: dict[int, tuple[int, float]] | None = None,
) -> bool:
    """PBT's decision for ``run`` at step ``round_``: if it is in the bottom quarter of
    ``ranking`` (or ended badly: ``ranking`` None), a waiting move from a random member of
    the top quarter and a checkpoint command to it. Records the round either way. True when
    a move was made."""
    with driver.db.read() as s:
        rows = crud_studies.trials_of(s, study.id)
        if standing is None:
            standing = _standing(s, rows)
        waiting = {m.member_run_id for m in study_moves.moves_of(s, study.id, status="waiting")}
    if ranking is None:  # a member that ended badly: everyone still training ranks above it
        ranking = sorted(standing, key=lambda r: (standing[r][1], r))
        bottom, top = [run.id], quartiles(ranking)[1] or ranking[:1]
    else:
        bottom, top = quartiles(ranking)
    sources = [r for r in top if r != run.id and r not in waiting]
    with driver.db.write() as s:
        if study_moves.move_exists(s, run.id, round_):
            return False
        current = s.get(StudyTrial, trial.id)
        if current is None or current.state is not None or current.pruned_reason is not None:
            return False
        current.reported_step = max(current.reported_step, round_)
        if run.id not in bottom or not sources:
            return False
        rng = rng_for(study.seed, run.id, round_)
        source_id = sources[int(rng.integers(len(sources)))]
        source = s.get(Run, source_id)
        if source is None:
            return False
        event = crud_studies.queue_command(
            s, source, "checkpoint", {"study_id": study.id, "reason": f"PBT: a copy for #{run.id}"}
        )
        member_loss = standing[run.id][1] if run.id in standing else None
        study_moves.add_move(
            s,
            study_id=study.id,
            member_run_id=run.id,
            source_run_id=source_id,
            round_=round_,
            by="pbt",
            checkpoint_event_id=None if event is None else event.id,
            member_loss=member_loss,
            source_loss=standing[source_id][1],
        )
    return True


class Cannot(Exception):
    """Why an exploit cannot be done (its transaction rolls back, the move is cancelled)."""


def _complete(driver: StudyDriver, study: Study, params: list[Param], move: StudyMove) -> None:
    """Finish a waiting exploit once the source's checkpoint command has applied."""
    if study.status in ("stopping", "stopped", "finished"):
        _cancel(driver, move, "the study was stopped")
        return
    if study.status == "paused":
        return
    at = None
    if move.checkpoint_event_id is not None:
        with driver.db.read() as s:
            event = s.get(Event, move.checkpoint_event_id)
            source = s.get(Run, move.source_run_id)
            parked = source is not None and source.status == "paused" and not source.worker_id
            if event is not None and event.step is None and not parked:
                return  # the source's worker has not taken the checkpoint yet
            if parked:  # paused and handed back: its checkpoint at the pause is its state
                event = None
            if event is not None and event.error:
                _cancel(driver, move, f"#{move.source_run_id} took no checkpoint: {event.error}")
                return
            at = None if event is None else event.step
    try:
        with driver.db.write() as s:
            exploit(s, study, params, move, at=at)
    except Cannot as exc:
        _cancel(driver, move, str(exc))


def _cancel(driver: StudyDriver, move: StudyMove, note: str) -> None:
    with driver.db.write() as s:
        study_moves.finish_move(s, move.id, "cancelled", note)
    log.info("PBT move %s cancelled: %s", move.id, note)


def exploit(
    s: Session, study: Study, params: list[Param], move: StudyMove, *, at: int | None
) -> Run:
    """The exploit and explore of ``move``, in the caller's transaction: fork the source at its
    checkpoint at or before ``at`` (its latest without), perturb the explorable fields, queue
    the new rate as a ``set_lr``, record the events, stop the member with the reason. Raises
    ``Cannot`` saying why it cannot be done (the transaction rolls back); returns the child."""
    member = s.get(Run, move.member_run_id)
    source = s.get(Run, move.source_run_id)
    member_trial = crud_studies.trial_of_run(s, move.member_run_id)
    source_trial = crud_studies.trial_of_run(s, move.source_run_id)
    if member is None or source is None or member_trial is None or source_trial is None:
        raise Cannot("the member or its source no longer exists")
    if member_trial.state is not None or member_trial.pruned_reason is not None:
        raise Cannot(f"#{member.id} was already replaced or ended")
    if member.status in TERMINAL_STATUSES and member.status not in REPLACED:
        raise Cannot(f"#{member.id} {member.status} first")
    if source.status in REPLACED:
        raise Cannot(f"the source #{source.id} {source.status}")
    if source_trial.pruned_reason is not None:
        raise Cannot(f"the source #{source.id} was replaced first")
    ckpt_step = crud.checkpoint_step_at_or_before(s, source.id, source.step if at is None else at)
    if ckpt_step is None:
        raise Cannot(f"the source #{source.id} has no checkpoint")
    end = source.total_steps or crud.run_config(source).get("max_steps")
    if source.status == "finished" or (end is not None and ckpt_step >= end):
        raise Cannot(f"the source #{source.id} reached its last step before it could be copied")
    number = _next_number(s, study.id)
    # Explore: the source's settings, the explorable ones perturbed (lr through set_lr).
    rng = rng_for(study.seed, member.id, move.id)
    base = crud.run_config(source)
    values = dict(crud_studies.trial_params(source_trial))
    changes: dict[str, tuple[Any, Any]] = {}
    for p in explorable(params):
        if p.field == "lr":
            continue
        old = base.get(p.field, values.get(p.field))
        new = perturb(p, old, rng)
        if new != old:
            changes[p.field] = (old, new)
    config = {**base, **{f: new for f, (_, new) in changes.items()}}
    try:
        config = RunConfig(**config).model_dump(mode="json")
    except ValidationError:
        config, changes = base, {}  # a combination RunConfig refuses: copy without exploring
    name = f"study {study.id} · member {number}"
    child = crud.fork_run(s, source, step=ckpt_step, config=config, name=name)
    if child is None:
        raise Cannot(f"the source #{source.id} has no checkpoint at or before step {ckpt_step}")
    k = int(child.parent_step or 0)
    new_lr = None
    lr_param = next((p for p in explorable(params) if p.field == "lr"), None)
    if lr_param is not None and child.lr is not None and math.isfinite(child.lr):
        new_lr = float(perturb(lr_param, float(child.lr), rng))
        changes["lr"] = (float(child.lr), new_lr)
    explore = "explore: " + (
        ", ".join(f"{f} {fmt(a)} -> {fmt(b)}" for f, (a, b) in changes.items()) or "no change"
    )
    link = {"study_id": study.id, "trial": number}
    if new_lr is not None:
        crud.record_command(s, child.id, "set_lr", {"lr": new_lr, "reason": explore, **link})
    settle_fork_rate(s, source, child, new_lr=new_lr)
    values.update({f: new for f, (_, new) in changes.items()})
    study_moves.link_member(
        s, study, child, params=values, sampled=sampled_names(params, values), number=number
    )
    how = "by hand" if move.by == "user" else f"at round {move.round}"
    reason = f"replaced by #{child.id}, a fork of #{source.id} at step {k} (PBT exploit {how}" + (
        f": val loss {fmt(move.member_loss)} in the bottom quarter, "
        f"#{source.id}'s {fmt(move.source_loss)} in the top)"
        if move.member_loss is not None and move.source_loss is not None
        else ")"
    )
    ids = {"member_run_id": member.id, "source_run_id": source.id, "child_run_id": child.id}
    crud.record_worker_event(
        s, child.id, "exploit", k,
        {"message": f"exploited #{source.id} at step {k}, replacing #{member.id}", **ids, **link},
    )  # fmt: skip
    crud.record_worker_event(
        s, source.id, "exploited", k,
        {"message": f"copied into #{child.id} at step {k}, replacing #{member.id}", **ids},
    )  # fmt: skip
    crud.record_worker_event(
        s, child.id, "explore", k, {"message": explore, "changes": _json_changes(changes), **link}
    )
    crud_studies.set_pruned(s, member_trial.id, reason)
    if member.status in TERMINAL_STATUSES:
        crud_studies.mark_told(s, member_trial.id, "fail", None)
    else:
        crud_studies.queue_command(
            s, member, "stop", {"reason": reason, **link, "trial": member_trial.number}
        )
    if not study_moves.finish_move(s, move.id, "done", reason, child_run_id=child.id):
        raise Cannot("the move was no longer waiting")
    return child


def _json_changes(changes: dict[str, tuple[Any, Any]]) -> dict[str, dict[str, Any]]:
    return {f: {"from": a, "to": b} for f, (a, b) in changes.items()}


def _next_number(s: Session, study_id: int) -> int:
    rows = crud_studies.trials_of(s, study_id)
    return max((t.number for t, _ in rows), default=-1) + 1


def _maybe_end(driver: StudyDriver, study: Study) -> None:
    """End the study once its population exists, every member was told and no exploit
    waits: finished (every member reached max_steps), or stopped after a stop."""
    with driver.db.read() as s:
        rows = crud_studies.trials_of(s, study.id)
        waiting = study_moves.moves_of(s, study.id, status="waiting")
        fresh = crud_studies.get_study(s, study.id)
    if fresh is None or waiting:
        return
    if len(rows) < study.parallel and fresh.status != "stopping":
        return  # the population is not complete yet (a study stopped early ends regardless)
    if any(t.state is None for t, _ in rows):
        return
    with driver.db.write() as s:
        ended = "stopped" if fresh.status == "stopping" else "finished"
        crud_studies.set_study_status(s, study.id, ended)


register_mode("pbt", step)
