"""``POST /api/runs/{id}/lr-find``: a range test on a fork (201), its 422s and 409s, the early
stop that ends it as finished, ``suggested_lr`` once it ends, the parent untouched, and the
worker's watch rebuilt from the stored rows after a restart."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.db import Database
from app.worker.lr_find import range_watch
from engine import RunConfig, Trainer
from engine.lr_find import LossWatch, suggest_lr

pytestmark = pytest.mark.timeout(60)

Wait = Callable[..., Any]


def _run(client: TestClient, rid: int) -> dict[str, Any]:
    return client.get(f"/api/runs/{rid}").json()


def _finished_parent(client: TestClient, wait: Wait, tiny: dict[str, Any], steps: int = 60) -> int:
    """A finished run that has learned next to nothing (blobs at lr 1e-6), so the range test has
    a descent to find (on a trained model the curve is flat and there is no suggestion)."""
    config = {**tiny, "dataset": "blobs", "lr": 1e-6, "max_steps": steps}
    rid = client.post("/api/runs", json={"config": config}).json()["id"]
    wait(lambda: _run(client, rid)["status"] == "finished", what="the parent finishes")
    return rid


def _events(client: TestClient, rid: int) -> list[dict[str, Any]]:
    return client.get(f"/api/runs/{rid}/events").json()


def test_range_test_runs_on_a_fork_and_suggests_a_rate(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any]
) -> None:
    parent = _finished_parent(client, wait, tiny)
    before = client.get(f"/api/runs/{parent}/metrics").json()
    parent_events = _events(client, parent)

    response = client.post(f"/api/runs/{parent}/lr-find", json={"steps": 100})
    assert response.status_code == 201, response.text
    child = response.json()
    assert child["parent_id"] == parent and child["parent_step"] == 60
    assert child["suggested_lr"] is None, "null while it has not ended"
    cfg = child["config"]
    assert (cfg["schedule"], cfg["lr"], cfg["lr_range_max"]) == ("range_test", 1e-7, 10.0)
    assert (cfg["lr_range_start"], cfg["max_steps"]) == (60, 160)
    assert child["lr"] == 1e-7

    wait(lambda: _run(client, child["id"])["status"] == "finished", what="the range test ends")
    done = _run(client, child["id"])
    rows = client.get(f"/api/runs/{child['id']}/metrics", params={"after": 60}).json()
    assert rows["lr"][0] == 1e-7, "the first step trains at min_lr"
    ratios = [b / a for a, b in zip(rows["lr"], rows["lr"][1:], strict=False)]
    assert ratios == pytest.approx([1e8 ** (1 / 99)] * len(ratios)), "exponential growth"
    assert done["suggested_lr"] == suggest_lr(rows["lr"], rows["train_loss"])
    assert done["suggested_lr"] is not None and 1e-7 < done["suggested_lr"] < 10.0

    assert client.get(f"/api/runs/{parent}/metrics").json() == before, "parent rows untouched"
    assert _events(client, parent) == parent_events, "no event on the parent"
    assert _run(client, parent)["suggested_lr"] is None


def test_the_loss_explodes_and_the_test_ends_finished_not_diverged(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any]
) -> None:
    parent = _finished_parent(client, wait, {**tiny, "optimizer": "sgd"})
    body = {"min_lr": 1e-3, "max_lr": 100.0, "steps": 400}
    child = client.post(f"/api/runs/{parent}/lr-find", json=body).json()
    wait(lambda: _run(client, child["id"])["status"] == "finished", what="the range test ends")
    done = _run(client, child["id"])
    assert done["step"] < 60 + 400, "stopped before the end of the range"
    assert done["error"] is None
    kinds = [e["type"] for e in _events(client, child["id"])]
    assert "diverged" not in kinds and "finished" in kinds
    finished = next(e for e in _events(client, child["id"]) if e["type"] == "finished")
    reason = finished["payload"]["range_test"]
    assert "above 4 x the best" in reason or "non-finite" in reason
    rows = client.get(f"/api/runs/{child['id']}/metrics", params={"after": 60}).json()
    assert len(rows["step"]) == done["step"] - 60
    watch = LossWatch.replay([x if isinstance(x, float) else math.nan for x in rows["train_loss"]])
    assert watch.done and watch.n == len(rows["step"]) - ("non-finite" in reason)


def test_body_is_optional_and_validated(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any]
) -> None:
    parent = _finished_parent(client, wait, tiny)
    count = len(client.get("/api/runs").json())
    cases = [
        ({"min_lr": 0}, "min_lr"),
        ({"min_lr": "nan"}, "min_lr"),
        ({"max_lr": 1e-8}, "max_lr"),  # below the default min_lr
        ({"min_lr": 0.1, "max_lr": 0.1}, "max_lr"),
        ({"max_lr": 1000.0}, "max_lr"),
        ({"steps": 5}, "steps"),
        ({"steps": "200"}, "steps"),
        ({"steps": 200.5}, "steps"),
        ({"colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = client.post(f"/api/runs/{parent}/lr-find", json=body)
        assert response.status_code == 422, (body, response.text)
        locs = [e["loc"] for e in response.json()["detail"]]
        assert any(field in loc for loc in locs), (body, locs)
    assert len(client.get("/api/runs").json()) == count, "a refused request creates nothing"
    response = client.post(f"/api/runs/{parent}/lr-find")
    assert response.status_code == 201, response.text
    cfg = response.json()["config"]
    assert (cfg["lr"], cfg["lr_range_max"], cfg["max_steps"] - cfg["lr_range_start"]) == (
        1e-7, 10.0, 200,
    )  # fmt: skip


def test_404_and_409s(client: TestClient, tiny: dict[str, Any]) -> None:
    """No worker here: a queued run has no checkpoint yet."""
    assert client.post("/api/runs/999/lr-find").status_code == 404
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]
    response = client.post(f"/api/runs/{rid}/lr-find")
    assert response.status_code == 409 and "no checkpoint" in response.json()["detail"]


def test_a_range_test_is_not_range_tested_again(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any]
) -> None:
    parent = _finished_parent(client, wait, tiny)
    child = client.post(f"/api/runs/{parent}/lr-find", json={"steps": 30}).json()
    wait(lambda: _run(client, child["id"])["status"] == "finished", what="the range test ends")
    response = client.post(f"/api/runs/{child['id']}/lr-find")
    assert response.status_code == 409 and "range test" in response.json()["detail"]


def test_a_restarted_worker_rebuilds_the_watch_from_the_rows(
    client: TestClient, worker: object, wait: Wait, db: Database, tiny: dict[str, Any]
) -> None:
    """The early stop survives a restart: the watch a worker builds at step k from the stored
    rows is the one an uninterrupted worker had after k steps."""
    parent = _finished_parent(client, wait, {**tiny, "optimizer": "sgd"})
    body = {"min_lr": 1e-3, "max_lr": 100.0, "steps": 400}
    child = client.post(f"/api/runs/{parent}/lr-find", json=body).json()
    wait(lambda: _run(client, child["id"])["status"] == "finished", what="the range test ends")
    rows = client.get(f"/api/runs/{child['id']}/metrics", params={"after": 60}).json()
    losses = [x if isinstance(x, float) else math.nan for x in rows["train_loss"]]
    trainer = Trainer(RunConfig(**child["config"]))
    for k in (0, 10, len(losses) - 1, len(losses)):
        trainer.step_count = 60 + k
        watch = range_watch(db, child["id"], trainer)
        expected = LossWatch.replay(losses[:k])
        assert watch is not None
        assert (watch.n, watch.avg, watch.best, watch.done) == (
            expected.n, expected.avg, expected.best, expected.done,
        )  # fmt: skip
    plain = Trainer(RunConfig(**_run(client, parent)["config"]))
    assert range_watch(db, parent, plain) is None, "not a range test: no watch"
