"""Runs API with a live worker: create, read, list, and commands changing what the worker does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.timeout(60)

Wait = Callable[..., Any]


def create(client: TestClient, tiny: dict[str, Any], **config: Any) -> dict[str, Any]:
    response = client.post("/api/runs", json={"name": "t", "config": {**tiny, **config}})
    assert response.status_code == 201, response.text
    return response.json()


def run(client: TestClient, run_id: int) -> dict[str, Any]:
    return client.get(f"/api/runs/{run_id}").json()


def command(client: TestClient, run_id: int, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/runs/{run_id}/commands", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def applied(client: TestClient, run_id: int, event_id: int) -> dict[str, Any] | None:
    for ev in client.get(f"/api/runs/{run_id}/events").json():
        if ev["id"] == event_id and ev["step"] is not None:
            return ev
    return None


def test_create_and_train(client: TestClient, worker: object, wait: Wait, tiny: dict) -> None:
    created = create(client, tiny)
    assert created["status"] == "queued"
    assert set(created) >= {
        "id", "name", "status", "step", "lr", "config", "parent_id", "parent_step",
        "created_at", "total_steps", "best_val_loss", "best_val_acc", "error",
    }  # fmt: skip
    rid = created["id"]
    wait(lambda: run(client, rid)["step"] > 50, what="steps advance")
    current = run(client, rid)
    assert current["status"] == "running"
    assert current["config"]["hidden"] == [16]
    assert client.get("/api/runs").json()[0]["id"] == rid
    events = client.get(f"/api/runs/{rid}/events").json()
    assert events[0]["type"] == "started" and events[0]["source"] == "worker"


def test_set_lr_takes_effect_at_recorded_step(
    client: TestClient, worker: object, wait: Wait, tiny: dict
) -> None:
    rid = create(client, tiny)["id"]
    wait(lambda: run(client, rid)["step"] > 20)
    cmd = command(client, rid, type="set_lr", lr=0.003)
    assert cmd["step"] is None and cmd["type"] == "set_lr"
    k = wait(lambda: applied(client, rid, cmd["id"]), what="set_lr applied")["step"]
    wait(lambda: run(client, rid)["step"] > k + 1)
    metrics = client.get(f"/api/runs/{rid}/metrics", params={"after": k - 1}).json()
    assert metrics["step"][:2] == [k, k + 1]
    assert metrics["lr"][0] == pytest.approx(0.01)
    assert metrics["lr"][1] == pytest.approx(0.003)
    assert run(client, rid)["lr"] == pytest.approx(0.003)


def test_pause_step_resume_stop(
    client: TestClient, worker: object, wait: Wait, holds: Wait, tiny: dict
) -> None:
    rid = create(client, tiny)["id"]
    wait(lambda: run(client, rid)["step"] > 10)
    pause = command(client, rid, type="pause")
    k = wait(lambda: applied(client, rid, pause["id"]))["step"]
    wait(lambda: run(client, rid)["status"] == "paused")
    holds(lambda: run(client, rid)["step"] == k, what="no steps while paused")
    assert client.get(f"/api/runs/{rid}/metrics").json()["step"] == list(range(1, k + 1))
    assert k in [c["step"] for c in client.get(f"/api/runs/{rid}/checkpoints").json()]

    single = command(client, rid, type="step", n=7)
    assert wait(lambda: applied(client, rid, single["id"]))["step"] == k
    wait(lambda: run(client, rid)["step"] == k + 7, what="exactly 7 steps")
    holds(lambda: run(client, rid)["step"] == k + 7, what="then paused again")
    assert run(client, rid)["status"] == "paused"
    assert client.get(f"/api/runs/{rid}/metrics").json()["step"][-1] == k + 7

    command(client, rid, type="resume")
    wait(lambda: run(client, rid)["step"] > k + 30, what="resumed")
    stop = command(client, rid, type="stop")
    s = wait(lambda: applied(client, rid, stop["id"]))["step"]
    wait(lambda: run(client, rid)["status"] == "stopped")
    holds(lambda: run(client, rid)["step"] == s, what="no steps after stop")
    assert client.get(f"/api/runs/{rid}/metrics").json()["step"][-1] == s
    late = client.post(f"/api/runs/{rid}/commands", json={"type": "resume"})
    assert late.status_code == 409


def test_finishes_with_evaluation(
    client: TestClient, worker: object, wait: Wait, tiny: dict
) -> None:
    rid = create(client, tiny, max_steps=45, eval_every=20)["id"]
    wait(lambda: run(client, rid)["status"] == "finished", what="finished")
    body = run(client, rid)
    assert body["step"] == 45 and body["total_steps"] == 45
    assert body["best_val_acc"] is not None
    metrics = client.get(f"/api/runs/{rid}/metrics").json()
    pairs = zip(metrics["step"], metrics["val_loss"], strict=True)
    assert [s for s, v in pairs if v is not None] == [20, 40, 45]
    types = [e["type"] for e in client.get(f"/api/runs/{rid}/events").json()]
    assert types == ["started", "finished"]
