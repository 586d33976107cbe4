"""The study driver's crash windows, reproduced one at a time (app/studies/search.py): Optuna
handed out a trial but the server died before its run was committed; Optuna was told an
outcome but the server died before recording it. Either way the next step puts things right,
with no trial lost, duplicated, or told twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from optuna.trial import TrialState

from app.crud import studies as crud_studies
from app.db import Database
from app.settings import Settings
from app.studies import StudyDriver
from app.studies.space import distributions, parse_space

pytestmark = pytest.mark.timeout(60)

SPACE = {"lr": {"low": 1e-3, "high": 1e-1, "log": True}}


def _study(db: Database, tiny: dict[str, Any], **over: Any) -> int:
    values: dict[str, Any] = {
        "name": None,
        "config": {**tiny, "max_steps": 40, "eval_every": 20},
        "space": SPACE,
        "n_trials": 3,
        "parallel": 1,
        "sampler": "random",
        "pruner": None,
        "mode": "search",
        "seed": 3,
        "options": {},
        **over,
    }
    with db.write() as s:
        return crud_studies.create_study(s, **values).id


def _rows(db: Database, sid: int) -> list[tuple[Any, Any]]:
    with db.read() as s:
        return crud_studies.trials_of(s, sid)


@pytest.fixture
def driver(db: Database, settings: Settings) -> StudyDriver:
    return StudyDriver(db, settings.database_url)


def test_a_trial_asked_but_never_created_is_adopted(
    db: Database, driver: StudyDriver, tiny: dict[str, Any]
) -> None:
    sid = _study(db, tiny)
    with db.read() as s:
        study = crud_studies.get_study(s, sid)
    ostudy = driver.optuna_study(study)
    params = parse_space(SPACE, tiny)
    orphan = ostudy.ask(distributions(params))  # the server "dies" here: no run yet
    driver.tick()
    rows = _rows(db, sid)
    assert [t.number for t, _ in rows] == [0] == [orphan.number]
    trial, run = rows[0]
    assert crud_studies.trial_params(trial)["lr"] == orphan.params["lr"]
    assert run.status == "queued"
    driver.tick()
    assert len(_rows(db, sid)) == 1, "parallel=1: nothing more while it is unfinished"
    assert len(ostudy.get_trials(deepcopy=False)) == 1, "no second ask"


def test_an_outcome_told_but_not_recorded_is_recorded_not_told_again(
    db: Database,
    driver: StudyDriver,
    tiny: dict[str, Any],
    worker: Any,
    wait: Callable[..., Any],
) -> None:
    sid = _study(db, tiny, n_trials=1)
    driver.tick()
    ((trial, _),) = _rows(db, sid)
    wait(lambda: _rows(db, sid)[0][1].status == "finished", what="the trial trains")
    with db.read() as s:
        study = crud_studies.get_study(s, sid)
    ostudy = driver.optuna_study(study)
    best = _rows(db, sid)[0][1].best_val_loss
    ostudy.tell(trial.number, best)  # the server "dies" here: told, not recorded
    driver.tick()
    ((trial, _run),) = _rows(db, sid)
    assert trial.state == "complete" and trial.value == best
    frozen = ostudy.get_trials(deepcopy=False)
    assert [t.state for t in frozen] == [TrialState.COMPLETE]
    with db.read() as s:
        assert crud_studies.get_study(s, sid).status == "finished"


def test_settings_refused_in_combination_make_a_failed_trial_saying_why(
    db: Database, driver: StudyDriver, tiny: dict[str, Any]
) -> None:
    """batch_size 1 is a valid draw, but RunConfig refuses it with batchnorm on."""
    space = {"batchnorm": {"choices": [True]}, "batch_size": {"choices": [1]}}
    sid = _study(db, {**tiny, "batchnorm": False}, space=space, n_trials=1)
    driver.tick()
    ((trial, run),) = _rows(db, sid)
    assert run.status == "failed" and "batch_size" in (run.error or "")
    assert trial.state == "fail"
    driver.tick()
    with db.read() as s:
        assert crud_studies.get_study(s, sid).status == "finished"
