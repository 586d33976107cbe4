"""``POST /api/runs/{id}/overfit-check``: a fresh network of the run's model on 20 examples
(201), its 409s and 422s, the result read from its rows (reached 100% or not), the parent
untouched, and ``train_subset`` frozen on a fork."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import crud
from app.db import Database

pytestmark = pytest.mark.timeout(60)

Wait = Callable[..., Any]


def _run(client: TestClient, rid: int) -> dict[str, Any]:
    return client.get(f"/api/runs/{rid}").json()


def _finished(client: TestClient, wait: Wait, config: dict[str, Any]) -> int:
    rid = client.post("/api/runs", json={"config": {**config, "max_steps": 30}}).json()["id"]
    wait(lambda: _run(client, rid)["status"] == "finished", what="the parent finishes")
    return rid


def test_overfit_check_reaches_100_percent_on_20_examples(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any], db: Database
) -> None:
    parent = _finished(client, wait, {**tiny, "hidden": [32, 32]})  # [16] stops at 95%
    before = client.get(f"/api/runs/{parent}/metrics").json()
    response = client.post(f"/api/runs/{parent}/overfit-check")
    assert response.status_code == 201, response.text
    child = response.json()
    assert child["parent_id"] == parent and child["parent_step"] == 0
    cfg = child["config"]
    assert (cfg["train_subset"], cfg["batch_size"], cfg["max_steps"]) == (20, 20, 300)
    assert (cfg["dropout"], cfg["weight_decay"], cfg["label_smoothing"]) == (0.0, 0.0, 0.0)
    assert cfg["hidden"] == [32, 32] and cfg["lr"] == tiny["lr"]

    wait(lambda: _run(client, child["id"])["status"] == "finished", what="the check ends")
    result = client.get(f"/api/runs/{child['id']}/overfit-check").json()
    rows = client.get(f"/api/runs/{child['id']}/metrics").json()
    assert rows["step"] == list(range(1, 301)), "a fresh start: its own steps from 1"
    first = rows["train_acc"].index(1.0) + 1
    assert result["passed"] is True and result["reached_at"] == first
    expected = f"reached 100% training accuracy on 20 examples at step {first}: the model can learn"
    assert result["verdict"] == expected
    assert client.get(f"/api/runs/{parent}/metrics").json() == before, "parent untouched"
    with db.read() as s:
        kinds = [e.type for e in crud.list_events(s, child["id"])]
    assert kinds.count("initial_loss") == 1, "a fresh initialization: its own initial loss"


def test_a_model_that_cannot_learn_is_reported_broken(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any]
) -> None:
    parent = _finished(client, wait, {**tiny, "lr": 1e-9})
    child = client.post(f"/api/runs/{parent}/overfit-check", json={"steps": 30}).json()
    wait(lambda: _run(client, child["id"])["status"] == "finished", what="the check ends")
    result = client.get(f"/api/runs/{child['id']}/overfit-check").json()
    assert result["passed"] is False and result["reached_at"] is None
    assert result["verdict"] == (
        "did not reach 100% on 20 examples in 30 steps: something is broken (lr, init, a bug)"
    )


def test_refusals_change_nothing(client: TestClient, tiny: dict[str, Any], db: Database) -> None:
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]  # queued: no checkpoint
    response = client.post(f"/api/runs/{rid}/overfit-check")
    assert response.status_code == 409 and "no checkpoint" in response.json()["detail"]
    assert client.post("/api/runs/999/overfit-check").status_code == 404
    for body, field in [({"subset": 1}, "subset"), ({"steps": 5}, "steps"), ({"x": 1}, "x")]:
        response = client.post(f"/api/runs/{rid}/overfit-check", json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"][-1] == field
    assert client.get(f"/api/runs/{rid}/overfit-check").status_code == 409
    with db.read() as s:
        assert len(crud.list_runs(s)) == 1, "nothing created"


def test_a_check_is_not_checked_again_and_train_subset_is_frozen_on_fork(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any]
) -> None:
    parent = _finished(client, wait, tiny)
    child = client.post(f"/api/runs/{parent}/overfit-check", json={"steps": 20}).json()
    wait(lambda: _run(client, child["id"])["status"] == "finished", what="the check ends")
    response = client.post(f"/api/runs/{child['id']}/overfit-check")
    assert response.status_code == 409 and "is a check itself" in response.json()["detail"]
    body = {"step": 30, "overrides": {"train_subset": 20}}
    response = client.post(f"/api/runs/{parent}/fork", json=body)
    assert response.status_code == 422, response.text
    assert "train_subset" in response.text
