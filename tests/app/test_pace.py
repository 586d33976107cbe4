"""Pace: a run trains at most N steps a second, changes live, and keeps its pace when a worker
hands it back and another picks it up, and in a fork."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.worker.control import Control, apply_command

pytestmark = pytest.mark.timeout(60)

Wait = Callable[..., Any]


def run(client: TestClient, run_id: int) -> dict[str, Any]:
    return client.get(f"/api/runs/{run_id}").json()


def events(client: TestClient, run_id: int, type_: str) -> list[dict[str, Any]]:
    return [e for e in client.get(f"/api/runs/{run_id}/events").json() if e["type"] == type_]


def rate(client: TestClient, run_id: int, seconds: float = 1.0) -> float:
    """Steps a second over a window, measured on the run's committed step."""
    start_step, start = run(client, run_id)["step"], time.monotonic()
    time.sleep(seconds)
    return (run(client, run_id)["step"] - start_step) / (time.monotonic() - start)


def test_pace_from_creation_then_lifted(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any]
) -> None:
    created = client.post("/api/runs", json={"config": tiny, "pace": 20})
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    first = wait(lambda: [e for e in events(client, rid, "set_pace") if e["step"] is not None])
    assert first[0]["step"] == 0 and first[0]["steps_per_second"] == 20
    wait(lambda: run(client, rid)["step"] >= 3, what="paced steps")
    assert rate(client, rid) <= 20 * 1.15 + 2, "never faster than the pace"

    lifted = client.post(
        f"/api/runs/{rid}/commands", json={"type": "set_pace", "steps_per_second": None}
    )
    assert lifted.status_code == 202, lifted.text
    wait(lambda: events(client, rid, "set_pace")[-1]["step"] is not None, what="applied")
    assert rate(client, rid, 0.5) > 200, "full speed again (a tiny model does thousands a second)"


def test_pace_survives_a_worker_restart_and_goes_to_a_fork(
    client: TestClient, start_worker: Callable[[str], Any], wait: Wait, tiny: dict[str, Any]
) -> None:
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]
    first, thread = start_worker("first")
    wait(lambda: run(client, rid)["step"] > 150, what="a checkpoint at step 100")
    client.post(f"/api/runs/{rid}/commands", json={"type": "set_pace", "steps_per_second": 10})
    wait(lambda: events(client, rid, "set_pace")[-1]["step"] is not None, what="applied")
    first.stopping.set()  # a clean shutdown checkpoints and releases the lease
    thread.join(timeout=10)

    start_worker("second")
    wait(lambda: len(events(client, rid, "started")) == 2, what="claimed by the second")
    assert events(client, rid, "started")[-1]["worker"] == "second"
    assert rate(client, rid) <= 10 * 1.15 + 2, "the new session restored the pace"

    fork = client.post(f"/api/runs/{rid}/fork", json={"step": 100}).json()
    queued = events(client, fork["id"], "set_pace")
    assert [e["steps_per_second"] for e in queued] == [10]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"type": "set_pace", "steps_per_second": 0}, ["body", "set_pace", "steps_per_second"]),
        ({"type": "set_pace", "steps_per_second": -5}, ["body", "set_pace", "steps_per_second"]),
        (
            {"type": "set_pace", "steps_per_second": "fast"},
            ["body", "set_pace", "steps_per_second"],
        ),
        ({"type": "set_pace"}, ["body", "set_pace", "steps_per_second"]),
    ],
)
def test_bad_pace_is_422_and_changes_nothing(
    client: TestClient, tiny: dict[str, Any], body: dict[str, Any], loc: list[str]
) -> None:
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]
    response = client.post(f"/api/runs/{rid}/commands", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][: len(loc)] == loc
    assert client.get(f"/api/runs/{rid}/events").json() == []


@pytest.mark.parametrize("pace", [0, -1, 1e9, "slow"])
def test_bad_pace_on_create_is_422_and_creates_nothing(
    client: TestClient, tiny: dict[str, Any], pace: Any
) -> None:
    response = client.post("/api/runs", json={"config": tiny, "pace": pace})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "pace"]
    assert client.get("/api/runs").json() == []


def test_control_applies_pace_and_rejects_nonsense() -> None:
    control = Control()

    class NoLr:
        def set_lr(self, lr: float) -> None:
            raise AssertionError("not an lr command")

    assert apply_command(control, NoLr(), "set_pace", {"steps_per_second": 12.5}) is None
    assert control.pace == 12.5
    assert apply_command(control, NoLr(), "set_pace", {"steps_per_second": None}) is None
    assert control.pace is None
    for bad in (0, -3, float("nan"), float("inf"), "x"):
        assert "set_pace rejected" in (
            apply_command(control, NoLr(), "set_pace", {"steps_per_second": bad}) or ""
        )
        assert control.pace is None


def test_run_page_shows_the_pace_control(client: TestClient, tiny: dict[str, Any]) -> None:
    rid = client.post("/api/runs", json={"config": tiny, "pace": 20}).json()["id"]
    page = client.get(f"/runs/{rid}").text
    assert 'id="pace-select"' in page and 'id="apply-pace"' in page
    assert '<option value="20" selected>20 steps/s</option>' in page
    custom = client.post("/api/runs", json={"config": tiny, "pace": 40}).json()["id"]
    assert '<option value="40.0" selected>40 steps/s</option>' in client.get(f"/runs/{custom}").text
    form = client.get("/").text
    assert '<option value="50" selected>50 steps/s</option>' in form
