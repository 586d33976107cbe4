"""One driver step of a ``search`` study (random, grid or TPE, with an optional pruner).

In order, each step:

1. adopts any trial Optuna handed out whose run was never created (the server died between
   ``ask`` and the commit of the run): the run is created now, with the drawn values;
2. tells Optuna the outcome of every trial whose run has ended and that was not told yet:
   COMPLETE with the run's best validation loss, PRUNED for a stopped run, FAIL for a failed or
   diverged one (or a finished one with no finite validation loss). A trial Optuna already
   holds as finished (told before a crash, not yet recorded here) is only recorded;
3. reports each running trial's new evaluations (validation loss at its step) and, when the
   pruner says so, queues an ordinary ``stop`` for its run with the reason;
4. while the study is running, creates trials as queued runs while fewer than ``parallel`` are
   unfinished and fewer than ``n_trials`` exist;
5. ends the study (finished; stopped after a stop) once every trial has been told.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from app.crud import studies as crud_studies
from app.crud.events import record_command
from app.models import TERMINAL_STATUSES, Run, Study, StudyTrial
from app.studies.driver import StudyDriver, register_mode
from app.studies.space import Param, config_values, distributions, space_from_json

log = logging.getLogger(__name__)

_TOLD = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "fail"}


def step(driver: StudyDriver, study_id: int) -> None:
    """One step of the study (see the module docstring)."""
    with driver.db.read() as s:
        study = crud_studies.get_study(s, study_id)
        if study is None:
            return
        rows = crud_studies.trials_of(s, study_id)
    ostudy = driver.optuna_study(study)
    params = space_from_json(json.loads(study.space))
    _adopt_orphans(driver, study, ostudy, params, rows)
    for trial, run in rows:
        if trial.state is None and run.status in TERMINAL_STATUSES:
            _tell(driver, ostudy, trial, run)
        elif trial.state is None:
            _report(driver, study, ostudy, trial, run)
    with driver.db.read() as s:
        study = crud_studies.get_study(s, study_id)
        rows = crud_studies.trials_of(s, study_id)
    if study is None:
        return
    open_ = sum(1 for t, _ in rows if t.state is None)
    count = len(rows)
    while study.status == "running" and open_ < study.parallel and count < study.n_trials:
        _create(driver, study, ostudy, params, ostudy.ask(distributions(params)))
        open_, count = open_ + 1, count + 1
    if open_ == 0 and (count >= study.n_trials or study.status == "stopping"):
        with driver.db.write() as s:
            ended = "stopped" if study.status == "stopping" else "finished"
            crud_studies.set_study_status(s, study_id, ended)
        driver.forget(study_id)


def _adopt_orphans(
    driver: StudyDriver,
    study: Study,
    ostudy: optuna.Study,
    params: list[Param],
    rows: list[tuple[StudyTrial, Run]],
) -> None:
    known = {t.number for t, _ in rows}
    for frozen in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.number not in known:
            log.warning(
                "study %s: adopting trial %s (asked, run not created)", study.id, frozen.number
            )
            _create(driver, study, ostudy, params, frozen)


def _create(
    driver: StudyDriver,
    study: Study,
    ostudy: optuna.Study,
    params: list[Param],
    trial: optuna.Trial | FrozenTrial,
) -> None:
    """The trial's run and link, in one transaction; a draw RunConfig refuses in combination
    with the base config (e.g. batch_size 1 with batchnorm), or one that cannot run here (e.g.
    hidden layers too wide for the memory limit), is a failed run saying why."""
    drawn = dict(trial.params)
    values = config_values(params, drawn)
    base = json.loads(study.config)
    config, error = driver.admit(base, values)
    with driver.db.write() as s:
        row, run = crud_studies.add_trial(
            s,
            study,
            number=trial.number,
            optuna_trial_id=trial._trial_id,
            params=values,
            sampled=drawn,
            config=config,
        )
        if error is not None:
            run.status, run.error = "failed", error
        pace = json.loads(study.options or "{}").get("pace")
        if pace is not None and error is None:  # as POST /api/runs queues a pace
            record_command(s, run.id, "set_pace", {"steps_per_second": float(pace)})
    if error is not None:
        ostudy.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        with driver.db.write() as s:
            crud_studies.mark_told(s, row.id, "fail", None)


def _outcome(run: Run) -> tuple[TrialState, float | None]:
    if run.status == "finished":
        loss = run.best_val_loss
        if loss is not None and math.isfinite(loss):
            return TrialState.COMPLETE, float(loss)
        return TrialState.FAIL, None
    if run.status == "stopped":
        return TrialState.PRUNED, None
    return TrialState.FAIL, None


def _tell(driver: StudyDriver, ostudy: optuna.Study, trial: StudyTrial, run: Run) -> None:
    """Tell Optuna how the trial ended, exactly once (a finished Optuna trial is only
    recorded: it was told before a crash that came before this record)."""
    frozen = ostudy._storage.get_trial(trial.optuna_trial_id)
    if not frozen.state.is_finished():
        _report(driver, None, ostudy, trial, run, prune=False)  # the last evaluations first
        state, value = _outcome(run)
        ostudy.tell(trial.number, value if state == TrialState.COMPLETE else None, state=state)
        frozen = ostudy._storage.get_trial(trial.optuna_trial_id)
    with driver.db.write() as s:
        crud_studies.mark_told(s, trial.id, _TOLD.get(frozen.state, "fail"), frozen.value)


def _report(
    driver: StudyDriver,
    study: Study | None,
    ostudy: optuna.Study,
    trial: StudyTrial,
    run: Run,
    *,
    prune: bool = True,
) -> None:
    """Report the run's new evaluations; with a pruner that says so, queue its stop."""
    with driver.db.read() as s:
        evals = crud_studies.evaluations_after(s, run.id, trial.reported_step)
    if not evals:
        return
    otrial = optuna.Trial(ostudy, trial.optuna_trial_id)
    known = ostudy._storage.get_trial(trial.optuna_trial_id).intermediate_values
    for at, loss in evals:
        if at not in known:
            otrial.report(loss, at)
    reason = None
    pruning = prune and study is not None and study.pruner and trial.pruned_reason is None
    if pruning and otrial.should_prune():
        assert study is not None
        reason = _reason(study, ostudy, trial, evals[-1][0])
    with driver.db.write() as s:
        crud_studies.set_reported(s, trial.id, evals[-1][0])
        if reason is not None:
            crud_studies.set_pruned(s, trial.id, reason)
            current = s.get(Run, run.id)
            if current is not None:
                payload = {"reason": reason, "study_id": trial.study_id, "trial": trial.number}
                crud_studies.queue_command(s, current, "stop", payload)


def _reason(study: Study, ostudy: optuna.Study, trial: StudyTrial, at: int) -> str:
    """Why the pruner stops the trial, for a person."""
    mine = ostudy._storage.get_trial(trial.optuna_trial_id).intermediate_values
    upto = [v for s, v in mine.items() if s <= at and not math.isnan(v)]
    best = min(upto) if upto else math.nan
    if study.pruner == "median":
        done = ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        others = [t.intermediate_values[at] for t in done if at in t.intermediate_values]
        median = _median(others)
        return (
            f"pruned by median: best val loss {best:.4g} by step {at} is above the median "
            f"{median:.4g} of {len(others)} finished trials at that step"
        )
    options: dict[str, Any] = json.loads(study.options or "{}")
    factor = int(options.get("reduction_factor", 3))
    return (
        f"pruned by hyperband: best val loss {best:.4g} by step {at} is not in the best "
        f"1/{factor} of its bracket at that rung"
    )


def _median(values: list[float]) -> float:
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2


register_mode("search", step)
