"""A study's configs are admitted as any run's (app/admission.py): a base config that cannot run
here is a 422 at create, and a draw that cannot run (hidden layers too wide for the memory
limit) becomes a failed trial saying why, in a search and in PBT's population, never a run
handed to a worker."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.crud import studies as crud_studies
from app.db import Database
from app.main import create_app
from app.settings import Settings
from app.studies import StudyDriver

pytestmark = pytest.mark.timeout(60)

LIMIT = 50_000_000
"""Bytes a run may need in these tests: the tiny config needs ~70 kB, two 4096-wide layers on
spirals ~1.2 GB."""

WIDE = [4096, 4096]


@pytest.fixture
def limited(settings: Settings) -> Iterator[TestClient]:
    """The app with a run memory limit of LIMIT bytes (and no worker)."""
    with TestClient(create_app(settings.model_copy(update={"max_run_memory": LIMIT}))) as c:
        yield c


def test_a_base_config_too_large_is_422_at_create_and_nothing_is_stored(
    limited: TestClient, tiny: dict[str, Any]
) -> None:
    body = {"config": {**tiny, "hidden": WIDE}, "space": {"lr": {"low": 1e-3, "high": 1e-1}}}
    response = limited.post("/api/studies", json=body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "config", "hidden"]
    assert "more than the" in error["msg"] and "PANDAMODE_MAX_RUN_MEMORY" in error["msg"]
    assert limited.get("/api/studies").json() == [] and limited.get("/api/runs").json() == []


def test_a_draw_too_wide_for_the_memory_limit_is_a_failed_trial_saying_why(
    limited: TestClient, tiny: dict[str, Any], wait: Callable[..., Any]
) -> None:
    """Through the server's own driver (app/main.py passes it the run memory limit)."""
    body = {
        "config": {**tiny, "max_steps": 40},
        "space": {"hidden": {"choices": [WIDE]}, "lr": {"low": 1e-3, "high": 1e-1}},
        "n_trials": 2,
        "parallel": 1,
    }
    created = limited.post("/api/studies", json=body)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]

    def study() -> dict[str, Any]:
        return limited.get(f"/api/studies/{sid}").json()

    wait(lambda: study()["status"] == "finished", what="the study ends with its failed trials")
    trials = study()["trials"]
    assert [t["state"] for t in trials] == ["fail", "fail"]
    for trial in trials:
        assert trial["params"]["hidden"] == WIDE
        run = limited.get(f"/api/runs/{trial['run_id']}").json()
        assert run["status"] == "failed"
        assert run["error"].startswith("the sampled settings cannot run here: hidden: ")
        assert "PANDAMODE_MAX_RUN_MEMORY" in run["error"]


def _create(db: Database, tiny: dict[str, Any], mode: str, **over: Any) -> int:
    values: dict[str, Any] = {
        "name": None,
        "config": {**tiny, "max_steps": 400, "eval_every": 20},
        "space": {
            "lr": {"low": 1e-3, "high": 1e-1, "log": True},
            "hidden": {"choices": [[8], WIDE]},
        },
        "n_trials": 8,
        "parallel": 8,
        "sampler": "random",
        "pruner": None,
        "mode": mode,
        "seed": 5,
        "options": {"perturbation_interval": 40} if mode == "pbt" else {},
        **over,
    }
    with db.write() as s:
        return crud_studies.create_study(s, **values).id


@pytest.mark.parametrize("mode", ["search", "pbt"])
def test_each_draw_is_checked_against_the_drivers_limit(
    db: Database, settings: Settings, tiny: dict[str, Any], mode: str
) -> None:
    """Narrow draws train, wide ones fail at once with the reason; without a limit the same
    draws would all be queued (the check is the limit's, not the space's)."""
    sid = _create(db, tiny, mode)
    StudyDriver(db, settings.database_url, memory_limit=LIMIT).tick()
    with db.read() as s:
        rows = crud_studies.trials_of(s, sid)
    assert len(rows) == 8
    wide = [(t, r) for t, r in rows if crud_studies.trial_params(t)["hidden"] == WIDE]
    narrow = [(t, r) for t, r in rows if crud_studies.trial_params(t)["hidden"] == [8]]
    assert wide and narrow, "the seed draws both widths"
    for trial, run in wide:
        assert run.status == "failed" and trial.state == "fail"
        assert "cannot run here: hidden: this run needs" in (run.error or "")
    assert all(r.status == "queued" and t.state is None for t, r in narrow)

    unlimited = _create(db, tiny, mode)
    StudyDriver(db, settings.database_url).tick()
    with db.read() as s:
        assert all(r.status == "queued" for _, r in crud_studies.trials_of(s, unlimited))


def test_the_new_study_form_names_the_field_a_base_config_too_large_must_change(
    limited: TestClient,
) -> None:
    """The form calls the API's own function: the memory refusal comes back beside hidden."""
    fields = {
        "name": "too wide", "dataset": "spirals", "hidden": "4096, 4096", "optimizer": "adam",
        "lr": "0.01", "schedule": "constant", "batch_size": "32", "epochs": "1",
        "max_steps": "100", "seed": "0", "pace": "", "advanced": "", "search": ["lr"],
        "low.lr": "0.001", "high.lr": "0.1", "scale.lr": "log",
        "n_trials": "2", "parallel": "1", "sampler": "random", "pruner": "", "mode": "search",
    }  # fmt: skip
    response = limited.post("/studies", data=fields, headers={"HX-Request": "true"})
    assert response.status_code == 422, response.text
    error = re.search(r'<span class="field-error" id="error-hidden">([^<]*)</span>', response.text)
    assert error is not None and "more than the" in error.group(1), response.text[:3000]
    assert limited.get("/api/studies").json() == []
