"""Forks: continue from the checkpoint at or before N, with a parent link and checked overrides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, update

from app import crud
from app.db import Database
from app.models import Checkpoint, Metric

pytestmark = pytest.mark.timeout(60)


def _paused_parent(client: TestClient, wait: Callable[..., Any], config: dict[str, Any]) -> int:
    rid = client.post("/api/runs", json={"config": config}).json()["id"]
    wait(lambda: client.get(f"/api/runs/{rid}").json()["step"] > 250)
    client.post(f"/api/runs/{rid}/commands", json={"type": "pause"})
    wait(lambda: client.get(f"/api/runs/{rid}").json()["status"] == "paused")
    return rid


def test_fork_continues_bit_for_bit_and_links_parent(
    client: TestClient, worker: object, wait: Callable[..., Any], tiny: dict[str, Any]
) -> None:
    parent = _paused_parent(client, wait, tiny)
    ckpts = [c["step"] for c in client.get(f"/api/runs/{parent}/checkpoints").json()]
    assert 100 in ckpts and 200 in ckpts
    exact = client.post(f"/api/runs/{parent}/fork", json={"step": 150, "name": "again"})
    assert exact.status_code == 409, "no checkpoint at 150: no silent fallback to another step"
    assert "nearest are at steps 100 and 200" in exact.json()["detail"]
    body = {"step": 150, "name": "again", "nearest": True}
    response = client.post(f"/api/runs/{parent}/fork", json=body)
    assert response.status_code == 201, response.text
    child = response.json()
    assert child["parent_id"] == parent and child["parent_step"] == 100
    assert child["name"] == "again" and child["step"] == 100 and child["status"] == "queued"
    rows = client.get("/_runs").text.split("<tr ")
    child_row = next(r for r in rows if f'data-run-id="{child["id"]}"' in r)
    assert f'from <a href="/runs/{parent}">#{parent}</a> at step 100' in child_row
    parent_row = next(r for r in rows if f'data-run-id="{parent}"' in r)
    assert "from <a" not in parent_row, "the runs list shows each fork's origin"
    wait(lambda: client.get(f"/api/runs/{child['id']}").json()["step"] > 200, what="fork trains")
    client.post(f"/api/runs/{child['id']}/commands", json={"type": "stop"})
    mine = client.get(f"/api/runs/{child['id']}/metrics").json()
    theirs = client.get(f"/api/runs/{parent}/metrics").json()
    assert mine["step"][:200] == list(range(1, 201))
    assert mine["train_loss"][:200] == theirs["train_loss"][:200], "same history and continuation"


def test_fork_with_new_lr_and_bad_overrides(
    client: TestClient, worker: object, wait: Callable[..., Any], tiny: dict[str, Any]
) -> None:
    parent = _paused_parent(client, wait, tiny)
    frozen = client.post(
        f"/api/runs/{parent}/fork", json={"step": 200, "overrides": {"hidden": [8]}}
    )
    assert frozen.status_code == 422
    assert frozen.json()["detail"][0]["loc"] == ["body", "overrides", "hidden"]
    bad = client.post(f"/api/runs/{parent}/fork", json={"step": 200, "overrides": {"lr": -1}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "lr"
    unknown = client.post(f"/api/runs/{parent}/fork", json={"step": 200, "overrides": {"zz": 1}})
    assert unknown.status_code == 422
    assert client.post(f"/api/runs/{parent}/fork", json={"step": -1}).status_code == 422
    count = len(client.get("/api/runs").json())

    ok = client.post(
        f"/api/runs/{parent}/fork",
        json={
            "step": 200,
            "overrides": {"lr": 0.002, "weight_decay": 0.01, "optimizer": "momentum"},
        },
    )
    assert ok.status_code == 201, ok.text
    child = ok.json()
    assert len(client.get("/api/runs").json()) == count + 1
    assert child["config"]["lr"] == 0.002 and child["config"]["weight_decay"] == 0.01
    assert child["config"]["optimizer"] == "momentum"
    wait(lambda: client.get(f"/api/runs/{child['id']}").json()["step"] > 210)
    events = client.get(f"/api/runs/{child['id']}/events").json()
    set_lr = next(e for e in events if e["type"] == "set_lr")
    assert set_lr["step"] == 200 and set_lr["lr"] == 0.002
    rows = client.get(f"/api/runs/{child['id']}/metrics", params={"after": 200}).json()
    assert rows["lr"][0] == pytest.approx(0.002)


def test_fork_before_any_checkpoint_is_409(client: TestClient, tiny: dict[str, Any]) -> None:
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]
    response = client.post(f"/api/runs/{rid}/fork", json={"step": 10})
    assert response.status_code == 409


def test_a_run_that_diverges_at_once_goes_back_to_its_start(
    client: TestClient, worker: object, wait: Callable[..., Any], tiny: dict[str, Any]
) -> None:
    """A worker checkpoints a run when it starts it, so a rate that blows up within the first
    steps (long before the first periodic checkpoint) can still be retried from step 0."""
    hot = {**tiny, "hidden": [64, 64], "optimizer": "sgd", "batchnorm": False, "lr": 100.0}
    rid = client.post("/api/runs", json={"config": hot}).json()["id"]
    wait(lambda: client.get(f"/api/runs/{rid}").json()["status"] == "diverged", what="diverged")
    assert client.get(f"/api/runs/{rid}").json()["step"] < 100, "before any periodic checkpoint"
    assert [c["step"] for c in client.get(f"/api/runs/{rid}/checkpoints").json()] == [0]

    response = client.post(f"/api/runs/{rid}/fork", json={"step": 0, "overrides": {"lr": 0.01}})
    assert response.status_code == 201, response.text
    child = response.json()
    assert child["parent_step"] == 0 and child["step"] == 0
    wait(lambda: client.get(f"/api/runs/{child['id']}").json()["step"] > 150, what="it trains")
    assert client.get(f"/api/runs/{child['id']}").json()["status"] == "running"
    client.post(f"/api/runs/{child['id']}/commands", json={"type": "stop"})


def _rows(first: int, last: int, loss: float) -> list[dict[str, Any]]:
    return [
        {"step": s, "time": float(s), "lr": 0.1, "train_loss": loss, "train_acc": 0.5,
         "val_loss": loss if s % 10 == 0 else None, "val_acc": 0.5 if s % 10 == 0 else None}
        for s in range(first, last + 1)
    ]  # fmt: skip


def test_a_fork_reads_its_history_through_its_lineage(db: Database, client: TestClient) -> None:
    """No row is copied: a fork's steps up to parent_step are its parent's, recursively for a
    fork of a fork; every read (rows, overview, CSV, last metrics, counts) agrees."""
    with db.write() as s:
        root = crud.create_run(s, config={}).id
        crud.append_metrics(s, root, _rows(1, 300, 1.0))
        crud.save_checkpoint(s, root, 200, b"state")
        child = crud.fork_run(s, crud.get_run(s, root), step=250, config={})
        assert child is not None and child.parent_step == 200 and child.step == 200
        child_id = child.id
        assert s.scalar(select(func.count()).where(Metric.run_id == child_id)) == 0, "no copy"
        assert crud.last_metrics(s, child_id)["step"] == 200
    with db.write() as s:
        crud.append_metrics(s, child_id, _rows(201, 400, 2.0))
        crud.save_checkpoint(s, child_id, 300, b"state")
        grandchild_id = crud.fork_run(s, crud.get_run(s, child_id), step=300, config={}).id
        crud.append_metrics(s, grandchild_id, _rows(301, 350, 3.0))
        crud.append_metrics(s, root, _rows(301, 320, 1.0))  # the parent goes on: not the fork's
    with db.read() as s:
        rows = crud.metric_rows(s, grandchild_id)
        assert [r[0] for r in rows] == list(range(1, 351))
        assert {r[3] for r in rows[:200]} == {1.0} and {r[3] for r in rows[200:300]} == {2.0}
        assert {r[3] for r in rows[300:]} == {3.0}
        assert [r[0] for r in crud.metric_rows(s, grandchild_id, after=195, limit=10)] == list(
            range(196, 206)
        )
        assert crud.count_metrics(s, grandchild_id) == 350
        assert crud.count_metrics(s, child_id) == 400 and crud.count_metrics(s, root) == 320
        last = crud.last_metrics(s, grandchild_id)
        assert last["step"] == 350 and last["val_step"] == 350
        overview = crud.metrics_overview(s, grandchild_id, max_points=2000)
        assert overview == rows
    csv_lines = client.get(f"/api/runs/{grandchild_id}/metrics.csv").text.splitlines()
    assert len(csv_lines) == 351 and csv_lines[201].startswith("201,")
    body = client.get(f"/api/runs/{grandchild_id}/metrics", params={"after": 290}).json()
    assert body["step"] == list(range(291, 351)) and body["train_loss"][10] == 3.0


def test_an_old_fork_with_copied_rows_reads_the_same(db: Database) -> None:
    """Forks made by an older version copied their parent's rows: those copies are ignored."""
    with db.write() as s:
        root = crud.create_run(s, config={}).id
        crud.append_metrics(s, root, _rows(1, 100, 1.0))
        child_id = crud.create_run(s, config={}, parent_id=root, parent_step=50).id
        crud.append_metrics(s, child_id, _rows(1, 50, 1.0) + _rows(51, 80, 2.0))
    with db.read() as s:
        rows = crud.metric_rows(s, child_id)
        assert [r[0] for r in rows] == list(range(1, 81))
        assert [r[3] for r in rows] == [1.0] * 50 + [2.0] * 30
        assert crud.count_metrics(s, child_id) == 80


def test_fork_of_a_checkpoint_thinned_since_the_list_was_shown_is_409(
    client: TestClient, worker: object, wait: Callable[..., Any], tiny: dict[str, Any], db: Database
) -> None:
    """The user picked step 200 from the list; thinning removed it meanwhile: 409, not a fork
    from 100 that the user never chose (and nothing is created)."""
    parent = _paused_parent(client, wait, tiny)
    listed = [c["step"] for c in client.get(f"/api/runs/{parent}/checkpoints").json()]
    assert 200 in listed
    runs_before = len(client.get("/api/runs").json())
    with db.write() as s:
        s.execute(delete(Checkpoint).where(Checkpoint.run_id == parent, Checkpoint.step == 200))
    response = client.post(f"/api/runs/{parent}/fork", json={"step": 200})
    assert response.status_code == 409 and "step 200" in response.json()["detail"]
    assert len(client.get("/api/runs").json()) == runs_before
    with db.write() as s:  # a damaged checkpoint at the step is no better than none
        s.execute(
            update(Checkpoint)
            .where(Checkpoint.run_id == parent, Checkpoint.step == 100)
            .values(state=b"flipped")
        )
    assert client.post(f"/api/runs/{parent}/fork", json={"step": 100}).status_code == 409
    assert len(client.get("/api/runs").json()) == runs_before
