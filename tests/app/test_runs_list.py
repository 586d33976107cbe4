"""/ and /_runs: what the runs list says about each run."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from app import crud
from app.db import Database
from app.models import Study, StudyTrial


def row(page: str, run_id: int) -> str:
    return next(r for r in page.split("<tr ") if f'data-run-id="{run_id}"' in r)


def test_runs_list_shows_the_settings_a_babysitter_looks_for(
    client: TestClient, tiny: dict[str, Any]
) -> None:
    config = {**tiny, "hidden": [16, 8], "optimizer": "sgd", "lr": 1.5e-4, "batch_size": 32}
    rid = client.post("/api/runs", json={"name": "x" * 150, "config": config}).json()["id"]
    page = client.get("/_runs").text
    cells = row(page, rid)
    assert "<td>spirals</td>" in cells
    assert '<td class="layers">2-16-8-3</td>' in cells
    assert "<td>sgd</td>" in cells
    assert ">1.5e-4</td>" in cells, "a small rate reads as itself, never 0"
    assert '<td class="num">32</td>' in cells
    assert f'title="{"x" * 150}"' in cells, "a long name keeps its full text in the title"
    assert f'id="pick-{rid}" hx-preserve' in cells, "a tick survives the table's refresh"
    assert 'hx-trigger="every 2s"' in page, "a queued run keeps the list refreshing"


def test_best_val_acc_and_status_filter(
    client: TestClient, db: Database, tiny: dict[str, Any]
) -> None:
    done = client.post("/api/runs", json={"config": tiny}).json()["id"]
    queued = client.post("/api/runs", json={"config": tiny}).json()["id"]
    with db.write() as s:
        crud.update_run(s, done, status="finished", best_val_acc=0.9375)
    page = client.get("/").text
    assert ">0.9375</td>" in row(page, done)
    assert 'href="/?status=finished">finished (1)</a>' in page
    assert 'href="/?status=queued">queued (1)</a>' in page
    only = client.get("/?status=finished").text
    assert f'data-run-id="{done}"' in only and f'data-run-id="{queued}"' not in only
    assert 'hx-get="/_runs?status=finished"' in only, "the refresh keeps the filter"
    assert client.get("/_runs?status=bogus").status_code == 422


def test_idle_list_does_not_poll(client: TestClient, db: Database, tiny: dict[str, Any]) -> None:
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]
    with db.write() as s:
        crud.update_run(s, rid, status="stopped")
    assert "hx-trigger" not in client.get("/_runs").text


def test_study_trials_link_to_their_study_and_can_be_hidden(
    client: TestClient, db: Database, tiny: dict[str, Any]
) -> None:
    """Caviar mode fills the list with trials: each names its study, and one click hides them
    (the filter is kept by the status links and by the table's own refresh)."""
    mine = client.post("/api/runs", json={"name": "nursed", "config": tiny}).json()["id"]
    trial = client.post("/api/runs", json={"config": tiny}).json()["id"]
    with db.write() as s:
        study = Study(name="s", status="running", mode="search", config="{}", space="{}",
                      n_trials=1, parallel=1, sampler="random", seed=0, optuna_name="t",
                      created_at=0.0, updated_at=0.0)  # fmt: skip
        s.add(study)
        s.flush()
        s.add(StudyTrial(study_id=study.id, run_id=trial, number=0, optuna_trial_id=0,
                         params="{}", sampled="{}", created_at=0.0))  # fmt: skip
        sid = study.id
    page = client.get("/").text
    assert f'in <a href="/studies/{sid}">study {sid}</a>' in row(page, trial)
    assert "in <a" not in row(page, mine)
    assert '<a href="/?trials=hide">hide the 1 study trial</a>' in page
    hidden = client.get("/", params={"trials": "hide"}).text
    assert f'data-run-id="{trial}"' not in hidden and f'data-run-id="{mine}"' in hidden
    assert 'href="/?status=queued&amp;trials=hide"' in hidden, "the status links keep it"
    assert 'hx-get="/_runs?trials=hide"' in hidden, "and so does the table's refresh"
    assert f'data-run-id="{trial}"' not in client.get("/_runs?trials=hide").text
    assert client.get("/", params={"trials": "maybe"}).status_code == 422
