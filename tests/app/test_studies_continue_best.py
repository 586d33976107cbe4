"""``POST /api/studies/{id}/continue-best`` makes a run that trains: a finished trial whose best
evaluation is its last step is forked at that step, so without more steps the new run would
open at 200/200 and end at once. By default it trains as many steps again; ``more_steps`` N
trains N (as the fork API's), and a bad N is a 422 that creates nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app import crud
from app.api.studies import default_more_steps
from app.db import Database
from app.models import Metric, Run

pytestmark = pytest.mark.timeout(180)

STEPS = 200


@pytest.fixture
def finished(
    client: TestClient,
    tiny: dict[str, Any],
    start_worker: Callable[[str], Any],
    wait: Callable[..., Any],
) -> dict[str, Any]:
    """A 2-trial study trained to the end; the worker stays up to train what comes next."""
    body = {
        "config": {**tiny, "max_steps": STEPS, "eval_every": 20},
        "space": {"lr": {"low": 1e-3, "high": 1e-1, "log": True}},
        "n_trials": 2,
        "parallel": 1,
        "seed": 7,
    }
    sid = client.post("/api/studies", json=body).json()["id"]
    start_worker("w1")
    wait(
        lambda: client.get(f"/api/studies/{sid}").json()["status"] == "finished",
        timeout=120,
        what="the study finishes",
    )
    return client.get(f"/api/studies/{sid}").json()


def _best_at_the_last_step(db: Database, run_id: int) -> None:
    """Make the trial's last evaluation its best (as it is for many finished trials)."""
    with db.write() as s:
        s.execute(
            update(Metric)
            .where(Metric.run_id == run_id, Metric.step == STEPS)
            .values(val_loss=1e-6, val_acc=1.0)
        )
        s.execute(update(Run).where(Run.id == run_id).values(best_val_loss=1e-6))


def test_the_best_of_a_finished_trial_trains_as_many_steps_again(
    client: TestClient, db: Database, finished: dict[str, Any], wait: Callable[..., Any]
) -> None:
    best = finished["trials"][0]
    _best_at_the_last_step(db, best["run_id"])
    with db.read() as s:
        assert crud.checkpoint_step_at_or_before(s, best["run_id"], STEPS) == STEPS
    answer = client.post(f"/api/studies/{finished['id']}/continue-best", json={})
    assert answer.status_code == 201, answer.text
    child = answer.json()
    assert (child["parent_id"], child["parent_step"]) == (best["run_id"], STEPS)
    assert child["config"]["max_steps"] == 2 * STEPS, "as many steps as the trial trained"
    wait(
        lambda: client.get(f"/api/runs/{child['id']}").json()["status"] == "finished",
        timeout=60,
        what="the continued run trains to its end",
    )
    assert client.get(f"/api/runs/{child['id']}").json()["step"] == 2 * STEPS


def test_more_steps_trains_that_many_and_a_bad_value_creates_nothing(
    client: TestClient, db: Database, finished: dict[str, Any], wait: Callable[..., Any]
) -> None:
    sid, best = finished["id"], finished["trials"][1]
    _best_at_the_last_step(db, best["run_id"])
    runs_before = len(client.get("/api/runs").json())
    for bad in (0, -5, 2.5, "10", 10**8):
        response = client.post(f"/api/studies/{sid}/continue-best", json={"more_steps": bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["detail"][0]["loc"] == ["body", "more_steps"]
    assert len(client.get("/api/runs").json()) == runs_before, "nothing created"
    answer = client.post(f"/api/studies/{sid}/continue-best", json={"more_steps": 60})
    assert answer.status_code == 201, answer.text
    child = answer.json()
    assert child["parent_step"] == STEPS and child["config"]["max_steps"] == STEPS + 60
    wait(
        lambda: client.get(f"/api/runs/{child['id']}").json()["step"] == STEPS + 60,
        timeout=60,
        what="60 more steps",
    )


def test_the_default_goes_on_to_max_steps_unless_the_fork_is_there_already() -> None:
    assert default_more_steps(300, 120, 300) is None, "on to the trial's max_steps"
    assert default_more_steps(300, 300, 300) == 300, "as many steps again"
    assert default_more_steps(None, 500, 500) is None, "a trial without an end goes on"
