"""Runs API with a live worker: create, read, list, and commands changing what the worker does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import crud
from app.db import Database

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
    assert types == ["started", "initial_loss", "finished"]  # initial_loss: checks.py


def test_set_lr_on_a_cosine_run_is_the_next_steps_rate_and_says_how_it_is_made(
    client: TestClient, worker: object, wait: Wait, tiny: dict
) -> None:
    """The number sent is the number the next step trains at, in the metrics and the run object;
    the run object says how it is made (lr = lr_base x lr_factor); the event says it applied."""
    created = client.post(
        "/api/runs",
        json={"config": {**tiny, "schedule": "cosine", "max_steps": 400}, "pace": 400},
    ).json()
    rid = created["id"]
    assert created["lr_base"] == 0.01 and created["lr_factor"] == 1.0
    wait(lambda: run(client, rid)["step"] > 60, what="the cosine has decayed a little")
    cmd = command(client, rid, type="set_lr", lr=0.003)
    assert cmd["state"] == "pending" and cmd["note"] == "waiting for the worker's next poll"
    ev = wait(lambda: applied(client, rid, cmd["id"]), what="set_lr applied")
    k = ev["step"]
    assert ev["state"] == "applied" and ev["note"] == f"applied at step {k}"
    assert ev["lr_rule"] == "exact" and ev["checkpoint_id"] is not None
    wait(lambda: run(client, rid)["step"] > k + 1)
    rows = client.get(f"/api/runs/{rid}/metrics", params={"after": k - 1}).json()
    assert rows["step"][:2] == [k, k + 1]
    assert rows["lr"][0] < 0.01 and rows["lr"][1] == 0.003, "exactly 0.003 at step k + 1"
    assert rows["lr"][2] < 0.003, "then the cosine goes on relative to it"
    client.post(f"/api/runs/{rid}/commands", json={"type": "pause"})
    wait(lambda: run(client, rid)["status"] == "paused")
    body = run(client, rid)
    assert body["lr_factor"] < 1.0
    assert body["lr_base"] * body["lr_factor"] == pytest.approx(body["lr"], rel=1e-12)
    assert body["lr_base"] > 0.003, "the rate at factor 1 that makes 0.003 at step k"


def test_a_run_that_is_not_held_says_what_its_commands_wait_for(
    client: TestClient, db: Database, tiny: dict
) -> None:
    holder = create(client, tiny)["id"]
    waiting = create(client, tiny)["id"]
    first = command(client, waiting, type="set_lr", lr=0.002)
    assert first["state"] == "pending" and first["note"] == "waiting for a worker"
    with db.write() as s:
        assert crud.claim_run(s, "busy-worker", 60, run_id=holder) is not None
    second = command(client, waiting, type="pause")
    assert second["note"] == f"waiting for a worker: run #{holder} holds it"
    notes = {e["id"]: e["note"] for e in client.get(f"/api/runs/{waiting}/events").json()}
    assert notes[first["id"]] == f"waiting for a worker: run #{holder} holds it"
    held = command(client, holder, type="checkpoint")
    assert held["note"] == "waiting for the worker's next poll"


def test_stopping_a_run_no_worker_holds_closes_its_pending_commands(
    client: TestClient, tiny: dict
) -> None:
    rid = create(client, tiny)["id"]
    lr = command(client, rid, type="set_lr", lr=0.002)
    stop = command(client, rid, type="stop")
    assert stop["state"] == "applied" and run(client, rid)["status"] == "stopped"
    events = {e["id"]: e for e in client.get(f"/api/runs/{rid}/events").json()}
    assert events[lr["id"]]["state"] == "error"
    assert events[lr["id"]]["note"] == "run stopped before it applied"
    assert events[lr["id"]]["step"] == 0


def test_commands_an_older_version_left_pending_on_an_ended_run_are_closed_when_read(
    client: TestClient, db: Database, tiny: dict
) -> None:
    rid = create(client, tiny)["id"]
    with db.write() as s:
        crud.update_run(s, rid, status="finished", step=12)
        old = crud.record_command(s, rid, "set_lr", {"lr": 0.5}).id
    events = client.get(f"/api/runs/{rid}/events").json()
    ev = next(e for e in events if e["id"] == old)
    assert ev["state"] == "error" and ev["note"] == "run finished before it applied"
    assert ev["step"] == 12
    with db.read() as s:
        assert crud.pending_commands(s, rid) == [], "closed in the database, not only shown so"
    assert client.post(f"/api/runs/{rid}/commands", json={"type": "pause"}).status_code == 409


def test_lr_parts_say_how_a_rate_is_made() -> None:
    cosine = {"schedule": "cosine", "lr_min_factor": 0.0}
    base, factor = crud.lr_parts(0.005, cosine, 50, 100)
    assert factor == pytest.approx(0.5) and base == pytest.approx(0.01)
    assert crud.lr_parts(0.01, cosine, 0, None) == (0.01, 1.0), "a queued run: factor 1"
    assert crud.lr_parts(0.01, cosine, 10, None) == (None, None), "length not known yet"
    assert crud.lr_parts(0.004, cosine, 100, 100) == (None, None), "set where the factor is 0"
    assert crud.lr_parts(0.004, {"schedule": "constant"}, 7, 100) == (0.004, 1.0)
    assert crud.lr_parts(None, cosine, 7, 100) == (None, None)
