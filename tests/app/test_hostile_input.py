"""Issue 9, "Configs that can take a machine down": hostile ids, numbers, paths, data and configs
are clean 4xx (422 naming the field, 404 for an id no run can have) and change nothing.

Every request here answered 500, or was accepted and left for a worker to fail on, before.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.db import Database
from app.settings import Settings

pytestmark = pytest.mark.timeout(60)

BIG = 2**63  # one past what a 64-bit database integer holds


def _runs(client: TestClient) -> list[dict[str, Any]]:
    return client.get("/api/runs").json()


def _loc(response: Any) -> list[Any]:
    assert response.status_code == 422, response.text
    return response.json()["detail"][0]["loc"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/api/runs/{BIG}", None),
        ("GET", f"/api/runs/{BIG}/events", None),
        ("GET", f"/api/runs/{BIG}/checkpoints", None),
        ("GET", f"/api/runs/{BIG}/metrics", None),
        ("GET", f"/api/runs/{BIG}/metrics.csv", None),
        ("GET", f"/api/runs/{BIG}/stream", None),
        ("POST", f"/api/runs/{BIG}/commands", {"type": "pause"}),
        ("POST", f"/api/runs/{BIG}/fork", {"step": 0}),
        ("POST", f"/api/runs/{BIG}/alerts/1/act", None),
        ("POST", f"/api/runs/1/alerts/{BIG}/act", None),
        ("POST", f"/api/runs/1/alerts/{BIG}/dismiss", None),
        ("GET", f"/api/runs/{10**30}", None),
        ("GET", "/api/runs/0", None),
        ("GET", "/api/runs/-1", None),
    ],
)
def test_a_run_id_no_run_can_have_is_404(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == 404, response.text


def test_steps_beyond_a_64_bit_integer_are_422(client: TestClient, tiny: dict[str, Any]) -> None:
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]
    assert _loc(client.get(f"/api/runs/{rid}/metrics?after={BIG}")) == ["query", "after"]
    assert _loc(client.get(f"/api/runs/{rid}/metrics?before={BIG}")) == ["query", "before"]
    assert _loc(client.post(f"/api/runs/{rid}/fork", json={"step": BIG})) == ["body", "step"]
    assert len(_runs(client)) == 1


def test_a_raw_non_ascii_last_event_id_is_ignored(client: TestClient, tiny: dict[str, Any]) -> None:
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]
    client.post(f"/api/runs/{rid}/commands", json={"type": "stop"})  # ended: the stream ends
    response = client.get(f"/api/runs/{rid}/stream", headers={"Last-Event-ID": b"\xb2"})
    assert response.status_code == 200, response.text
    assert "event: status" in response.text


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"dataset": "~nosuchuser/x.csv"}, "dataset"),
        ({"dataset": "x" * 5000}, "dataset"),
        ({"dataset": "a\x00b.csv"}, "dataset"),
        ({"max_steps": 10**30}, "max_steps"),
        ({"max_steps": BIG}, "max_steps"),
        ({"eval_every": BIG}, "eval_every"),
        ({"lr_step_size": 10**30}, "lr_step_size"),
        ({"seed": BIG}, "seed"),
        ({"data_seed": 2**32}, "data_seed"),
        ({"batch_size": 5000}, "batch_size"),
        ({"dataset": "spirals", "n_samples": 100, "batch_size": 81}, "batch_size"),
        ({"dataset": "spirals", "n_samples": 100, "train_subset": 81}, "train_subset"),
        ({"hidden": [16384] * 6}, "hidden"),
        ({"hidden": [65536] * 32, "batch_size": 1000}, "hidden"),
    ],
)
def test_configs_that_cannot_run_are_422_at_the_field(
    client: TestClient, config: dict[str, Any], field: str
) -> None:
    assert _loc(client.post("/api/runs", json={"config": config})) == ["body", "config", field]
    assert _runs(client) == []


def test_a_non_finite_number_anywhere_in_the_body_is_422_not_500(client: TestClient) -> None:
    for body, loc in (
        (b'{"lr": 1e999}', ["body", "lr"]),
        (b'{"config": {"lr": 1e999}}', ["body", "config", "lr"]),
        (b'{"pace": -1e999}', ["body", "pace"]),
    ):
        response = client.post(
            "/api/runs", content=body, headers={"content-type": "application/json"}
        )
        assert _loc(response) == loc
        assert response.json()["detail"][0]["input"] in ("Infinity", "-Infinity")
    assert _runs(client) == []


def test_the_memory_refusal_names_the_estimate_and_the_limit(client: TestClient) -> None:
    response = client.post("/api/runs", json={"config": {"hidden": [16384] * 6}})
    message = response.json()["detail"][0]["msg"]
    assert "needs about" in message and "GiB" in message and "PANDAMODE_MAX_RUN_MEMORY" in message


def _write_csv(path: Path, rows: int, *, text_at: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    lines = ["f1,f2,f3,label"]
    for i in range(rows):
        a, b, c = rng.standard_normal(3)
        first = "red" if i == text_at else f"{a:.4f}"
        lines.append(f"{first},{b:.4f},{c:.4f},{i % 2}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_data_that_cannot_train_is_refused_at_creation(
    client: TestClient, settings: Settings, db: Database
) -> None:
    data = settings.data_dir
    _write_csv(data / "text.csv", 50, text_at=7)
    _write_csv(data / "ok.csv", 50)
    (data / "notes.txt").write_text("1,2,3\n")
    (data / "fake.npz").write_bytes(b"not a zip")
    if not (data / "pandamode.db").exists():  # on PostgreSQL: a stand-in for the SQLite file
        (data / "pandamode.db").write_bytes(b"SQLite format 3\x00")
    refused = {
        "text.csv": "non-numeric feature 'red'",
        "notes.txt": "not a dataset",
        "fake.npz": "not a readable npz",
        "pandamode.db": "not a dataset",  # the database itself, always in the data directory
    }
    for name, reason in refused.items():
        response = client.post("/api/runs", json={"config": {"dataset": name, "batch_size": 8}})
        assert _loc(response) == ["body", "config", "dataset"], name
        assert reason in response.json()["detail"][0]["msg"], response.text
    big_batch = {"dataset": "ok.csv", "batch_size": 41}  # 50 rows: 40 train, 10 validation
    assert _loc(client.post("/api/runs", json={"config": big_batch})) == [
        "body", "config", "batch_size",
    ]  # fmt: skip
    assert _runs(client) == []
    ok = client.post("/api/runs", json={"config": {"dataset": "ok.csv", "batch_size": 40}})
    assert ok.status_code == 201, ok.text


def test_a_big_csv_is_checked_from_its_first_rows(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.data

    monkeypatch.setattr(engine.data, "EXACT_CHECK_BYTES", 0)  # every file counts as big
    _write_csv(settings.data_dir / "text.csv", 2000, text_at=500)
    _write_csv(settings.data_dir / "ok.csv", 2000)
    response = client.post("/api/runs", json={"config": {"dataset": "text.csv"}})
    assert "non-numeric feature 'red'" in response.json()["detail"][0]["msg"]
    big_batch = {"dataset": "ok.csv", "batch_size": 1601}  # 2000 rows: 1600 train
    assert _loc(client.post("/api/runs", json={"config": big_batch}))[-1] == "batch_size"
    fits = client.post("/api/runs", json={"config": {"dataset": "ok.csv", "batch_size": 1600}})
    assert fits.status_code == 201, fits.text


def test_fork_range_test_and_check_refuse_what_no_longer_fits(
    client: TestClient, worker: object, wait: Callable[..., Any], tiny: dict[str, Any]
) -> None:
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]
    wait(lambda: client.get(f"/api/runs/{rid}/checkpoints").json(), what="a checkpoint")
    client.post(f"/api/runs/{rid}/commands", json={"type": "pause"})
    app = client.app
    app.state.settings = app.state.settings.model_copy(update={"max_run_memory": 10_000})
    before = len(_runs(client))
    for path, body in (
        ("fork", {"step": 0}),
        ("lr-find", None),
        ("overfit-check", None),
    ):
        response = client.post(f"/api/runs/{rid}/{path}", json=body)
        assert response.status_code == 422, (path, response.text)
        assert "PANDAMODE_MAX_RUN_MEMORY" in response.json()["detail"][0]["msg"], path
    assert len(_runs(client)) == before
