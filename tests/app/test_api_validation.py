"""Bad input is refused at the edge (422 naming the field, 404, 409) and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.timeout(60)

BAD_COMMANDS = [
    ({"type": "set_lr", "lr": -0.1}, "lr"),
    ({"type": "set_lr", "lr": 0}, "lr"),
    ({"type": "set_lr", "lr": "nan"}, "lr"),
    ({"type": "set_lr", "lr": "Infinity"}, "lr"),
    ({"type": "set_lr", "lr": 1e300}, "lr"),
    ({"type": "set_lr"}, "lr"),
    ({"type": "step", "n": 0}, "n"),
    ({"type": "frobnicate"}, "type"),
    ({}, "type"),
    ({"type": "pause", "extra": 1}, "extra"),
]


def test_bad_commands_change_nothing_and_training_goes_on(
    client: TestClient, worker: object, wait: Callable[..., Any], tiny: dict[str, Any]
) -> None:
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]
    wait(lambda: client.get(f"/api/runs/{rid}").json()["step"] > 5)
    for body, field in BAD_COMMANDS:
        response = client.post(f"/api/runs/{rid}/commands", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["loc"][-1] == field, body
    assert client.get(f"/api/runs/{rid}/events").json()[-1]["type"] == "initial_loss"
    before = client.get(f"/api/runs/{rid}").json()
    assert before["status"] == "running" and before["lr"] == pytest.approx(0.01)
    wait(lambda: client.get(f"/api/runs/{rid}").json()["step"] > before["step"] + 20)


def test_nonexistent_run_is_404(client: TestClient) -> None:
    assert client.post("/api/runs/999/commands", json={"type": "pause"}).status_code == 404
    assert client.get("/api/runs/999").status_code == 404
    for path in ("events", "checkpoints", "metrics", "metrics.csv", "stream"):
        assert client.get(f"/api/runs/999/{path}").status_code == 404, path
    assert client.post("/api/runs/999/fork", json={"step": 1}).status_code == 404


@pytest.mark.parametrize(
    ("config", "loc"),
    [
        ({"lr": 0}, ["body", "config", "lr"]),
        ({"lr": "nan"}, ["body", "config", "lr"]),
        ({"hidden": [0]}, ["body", "config", "hidden"]),
        ({"optimizer": "magic"}, ["body", "config", "optimizer"]),
        ({"no_such_field": 1}, ["body", "config", "no_such_field"]),
        ({"dataset": "../outside.csv"}, ["body", "config", "dataset"]),
        ({"dataset": "/etc/passwd.csv"}, ["body", "config", "dataset"]),
        ({"dataset": "missing.csv"}, ["body", "config", "dataset"]),
    ],
)
def test_bad_config_is_422_naming_the_field(
    client: TestClient, config: dict[str, Any], loc: list[str]
) -> None:
    response = client.post("/api/runs", json={"config": config})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][: len(loc)] == loc
    assert client.get("/api/runs").json() == []


def test_dataset_inside_data_dir_is_stored_resolved(client: TestClient, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "xor.csv").write_text("a,b,label\n" + "0,0,0\n0,1,1\n1,0,1\n1,1,0\n" * 5)
    response = client.post("/api/runs", json={"config": {"dataset": "d/xor.csv", "batch_size": 8}})
    assert response.status_code == 201, response.text
    assert response.json()["config"]["dataset"] == str((tmp_path / "d" / "xor.csv").resolve())


def test_name_defaults_and_unknown_body_fields(client: TestClient) -> None:
    created = client.post("/api/runs", json={"config": {"max_steps": 5}}).json()
    assert created["name"] == f"run-{created['id']}"
    assert client.post("/api/runs", json={"config": {}, "colour": "red"}).status_code == 422


def test_stop_of_an_unclaimed_run_needs_no_worker(client: TestClient) -> None:
    rid = client.post("/api/runs", json={"config": {"max_steps": 5}}).json()["id"]
    response = client.post(f"/api/runs/{rid}/commands", json={"type": "stop"})
    assert response.status_code == 202
    assert response.json()["step"] == 0
    assert client.get(f"/api/runs/{rid}").json()["status"] == "stopped"
    pause = client.post(f"/api/runs/{rid}/commands", json={"type": "pause"})
    assert pause.status_code == 409


def test_openapi_documents_the_api(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {
        "/healthz", "/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/commands",
        "/api/runs/{run_id}/events", "/api/runs/{run_id}/checkpoints", "/api/runs/{run_id}/fork",
        "/api/runs/{run_id}/metrics", "/api/runs/{run_id}/metrics.csv", "/api/runs/{run_id}/stream",
    } <= paths  # fmt: skip
    names = set(schema["components"]["schemas"])
    assert {"SetLr", "Pause", "Resume", "Step", "Stop", "CheckpointNow", "RunOut"} <= names
    assert client.get("/docs").status_code == 200
