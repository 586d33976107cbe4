"""Forking a run with "train N more steps": the child trains exactly N steps after the fork step,
at the parent's rate there unless a new lr is given, and the schedule goes on relative to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.schedules import LrAnchor, Schedule

pytestmark = pytest.mark.timeout(60)

Wait = Callable[..., Any]


def _run(client: TestClient, rid: int) -> dict[str, Any]:
    return client.get(f"/api/runs/{rid}").json()


def _finished(client: TestClient, wait: Wait, config: dict[str, Any]) -> int:
    rid = client.post("/api/runs", json={"config": config}).json()["id"]
    wait(lambda: _run(client, rid)["status"] == "finished", what="the parent finishes")
    return rid


def _fork(client: TestClient, rid: int, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/runs/{rid}/fork", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_finished_cosine_run_trains_n_more_steps_from_its_last_rate(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any]
) -> None:
    """At the end of a cosine with floor 0 the next rate would be 0: the child goes on at the
    rate the parent's last step trained at, and its longer cosine decays from there."""
    parent = _finished(client, wait, {**tiny, "schedule": "cosine", "max_steps": 60})
    last_lr = client.get(f"/api/runs/{parent}/metrics").json()["lr"][-1]
    child = _fork(client, parent, step=60, more_steps=40, name="more")
    assert child["parent_step"] == 60 and child["config"]["max_steps"] == 100
    assert child["total_steps"] == 100 and child["lr"] == last_lr
    wait(lambda: _run(client, child["id"])["status"] == "finished", what="the 40 more steps")
    assert _run(client, child["id"])["step"] == 100
    rows = client.get(f"/api/runs/{child['id']}/metrics", params={"after": 60}).json()
    assert rows["step"] == list(range(61, 101)), "exactly N more steps"
    assert rows["lr"][0] == last_lr, "goes on at the parent's rate"
    schedule = Schedule("cosine", total=100)
    expected = [schedule.rate(LrAnchor(60, last_lr), t) for t in range(60, 100)]
    assert rows["lr"] == expected, "the stretched cosine, relative to that rate"
    set_lr = [e for e in client.get(f"/api/runs/{child['id']}/events").json()
              if e["type"] == "set_lr"]  # fmt: skip
    assert [(e["step"], e["lr"], e["state"]) for e in set_lr] == [(60, last_lr, "applied")]


def test_more_steps_with_a_new_lr_and_on_a_constant_schedule(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any]
) -> None:
    parent = _finished(client, wait, {**tiny, "max_steps": 50})  # constant 0.01
    same = _fork(client, parent, step=50, more_steps=20)
    faster = _fork(client, parent, step=50, more_steps=30, overrides={"lr": 0.02})
    for child, end in ((same, 70), (faster, 80)):
        wait(lambda c=child: _run(client, c["id"])["status"] == "finished", what="trained")
        assert _run(client, child["id"])["step"] == end
    same_rows = client.get(f"/api/runs/{same['id']}/metrics", params={"after": 50}).json()
    assert same_rows["lr"] == [0.01] * 20, "a constant schedule simply goes on"
    events = client.get(f"/api/runs/{same['id']}/events").json()
    assert [e for e in events if e["type"] == "set_lr"] == [], "nothing to change"
    fast_rows = client.get(f"/api/runs/{faster['id']}/metrics", params={"after": 50}).json()
    assert fast_rows["lr"] == [0.02] * 30


def test_more_steps_is_checked(client: TestClient, worker: object, wait: Wait, tiny: dict) -> None:
    parent = _finished(client, wait, {**tiny, "max_steps": 40})
    count = len(client.get("/api/runs").json())
    for body, field in (
        ({"step": 40, "more_steps": 0}, "more_steps"),
        ({"step": 40, "more_steps": 10_000_001}, "more_steps"),
        ({"step": 40, "more_steps": "many"}, "more_steps"),
        ({"step": 40, "more_steps": True}, "more_steps"),
        ({"step": 40, "more_steps": 10, "overrides": {"max_steps": 45}}, "more_steps"),
    ):
        response = client.post(f"/api/runs/{parent}/fork", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["loc"][-1] == field
    assert len(client.get("/api/runs").json()) == count, "nothing created"
    agreeing = {"step": 40, "more_steps": 10, "overrides": {"max_steps": 50}}
    assert client.post(f"/api/runs/{parent}/fork", json=agreeing).status_code == 201
