"""GET /api/runs/{id}/health, fed by a real worker; rows through a fork's lineage, NaN kept
apart from "does not apply", idempotent inserts, paging by whole steps, and a database made
before the table existed."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import create_run, finished_run
from fastapi.testclient import TestClient

from app import crud
from app.crud.health import (
    append_health,
    health_columns,
    health_rows,
    latest_health,
    latest_health_step,
    to_rows,
)
from app.db import Database
from app.worker.loop import Worker
from engine import RunConfig, Trainer
from engine.health import LayerHealth

pytestmark = pytest.mark.timeout(90)

Wait = Callable[..., Any]


@pytest.fixture
def config(tiny: dict[str, Any]) -> dict[str, Any]:
    return {**tiny, "hidden": [16, 8], "max_steps": 60, "health_every": 10}


def test_health_of_a_trained_run_matches_the_engine(
    client: TestClient, worker: Worker, wait: Wait, config: dict[str, Any]
) -> None:
    rid = create_run(client, config)
    finished_run(client, rid)
    body = client.get(f"/api/runs/{rid}/health").json()
    assert body["step"] == [s for s in range(10, 61, 10) for _ in range(3)]
    assert body["layer"] == [0, 1, 2] * 6
    assert body["more"] is False
    # The same run trained here, measured at the same steps: the worker stored what it measured.
    trainer = Trainer(RunConfig(**config))
    expected: list[LayerHealth] = []
    while trainer.step_count < 60:
        rec = trainer.step(health=(trainer.step_count + 1) % 10 == 0)
        expected.extend(rec.health or ())
    for k, h in enumerate(expected):
        for name in ("grad_norm", "weight_norm", "update_ratio", "act_mean", "act_std"):
            assert body[name][k] == pytest.approx(getattr(h, name), rel=1e-5, abs=1e-9), name
    assert [v is None for v in body["dead_frac"]] == [False, False, True] * 6
    assert [v is None for v in body["bn_shift"]] == [False, False, True] * 6
    later = client.get(f"/api/runs/{rid}/health", params={"after": 40}).json()
    assert later["step"] == [50, 50, 50, 60, 60, 60]


def test_a_run_without_health_has_none(
    client: TestClient, worker: Worker, wait: Wait, config: dict[str, Any]
) -> None:
    rid = create_run(client, {**config, "health_every": 0})
    finished_run(client, rid)
    body = client.get(f"/api/runs/{rid}/health").json()
    assert body["step"] == [] and body["grad_norm"] == []


def test_a_fork_reads_its_parents_steps_then_its_own(
    client: TestClient, worker: Worker, wait: Wait, config: dict[str, Any], db: Database
) -> None:
    parent = create_run(client, config)
    finished_run(client, parent)
    ckpts = [c["step"] for c in client.get(f"/api/runs/{parent}/checkpoints").json()]
    fork_step = max(s for s in ckpts if s < 60)
    response = client.post(f"/api/runs/{parent}/fork", json={"step": fork_step})
    assert response.status_code == 201, response.text
    child = response.json()["id"]
    finished_run(client, child)
    body = client.get(f"/api/runs/{child}/health").json()
    steps = sorted(set(body["step"]))
    assert steps == list(range(10, 61, 10))  # no step twice, none missing
    assert body["layer"] == [0, 1, 2] * len(steps)
    with db.read() as s:  # the child stored only what it trained itself
        own = health_rows(s, child, after=fork_step)[0]
        assert {r[0] for r in own} == {s for s in steps if s > fork_step}
        assert latest_health_step(s, child) == 60
        assert [r[1] for r in latest_health(s, child)] == [0, 1, 2]


def test_bad_requests(client: TestClient, db: Database, tiny: dict[str, Any]) -> None:
    assert client.get("/api/runs/999/health").status_code == 404
    with db.write() as s:
        rid = crud.create_run(s, config=tiny, name="idle").id
    for params in ({"after": -1}, {"after": "x"}, {"limit": 5}, {"after": 2**63}):
        response = client.get(f"/api/runs/{rid}/health", params=params)
        assert response.status_code == 422, params
        field = next(iter(params))
        assert any(e["loc"][-1] == field for e in response.json()["detail"]), response.text
    assert client.get(f"/api/runs/{rid}/health").json()["step"] == []


def _layer(layer: int, **values: float | None) -> LayerHealth:
    base: dict[str, float | None] = {
        "grad_norm": 0.5,
        "weight_norm": 2.0,
        "update_ratio": 1e-3,
        "act_mean": 0.1,
        "act_std": 0.9,
        "dead_frac": None,
        "bn_shift": None,
    }
    return LayerHealth(layer, **{**base, **values})  # type: ignore[arg-type]


def test_nan_comes_back_as_nan_and_not_applicable_as_null(
    db: Database, tiny: dict[str, Any]
) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config=tiny, name="diverging").id
        rows = to_rows(7, [_layer(0, grad_norm=math.nan, bn_shift=math.nan), _layer(1)])
        rows += to_rows(8, [_layer(0, weight_norm=math.inf, act_mean=-math.inf), _layer(1)])
        append_health(s, rid, rows)
        append_health(s, rid, rows)  # a replay after a crash: nothing twice
    with db.read() as s:
        cols = health_columns(health_rows(s, rid)[0])
    assert cols["step"] == [7, 7, 8, 8]
    assert cols["grad_norm"][:2] == ["NaN", 0.5]
    assert cols["bn_shift"][:2] == ["NaN", None]
    assert cols["dead_frac"] == [None] * 4
    assert cols["weight_norm"][2] == "Infinity" and cols["act_mean"][2] == "-Infinity"


def test_pages_hold_whole_steps(db: Database, tiny: dict[str, Any]) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config=tiny, name="paged").id
        for step in (10, 20, 30):
            append_health(s, rid, to_rows(step, [_layer(k) for k in range(3)]))
    with db.read() as s:
        first, more = health_rows(s, rid, limit=5)  # step 20 would be cut: left for the next
        assert [r[0] for r in first] == [10, 10, 10] and more
        rest, more = health_rows(s, rid, after=10, limit=6)
        assert [r[0] for r in rest] == [20, 20, 20, 30, 30, 30] and not more


def test_a_database_without_the_health_table_gets_it_and_keeps_its_runs(
    tmp_path: Path, tiny: dict[str, Any]
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Database(url)
    old.create_all()
    with old.write() as s:
        rid = crud.create_run(s, config=tiny, name="made before health").id
    with old.engine.begin() as conn:  # as main left it before this table
        conn.exec_driver_sql("DROP TABLE layer_health")
    old.dispose()
    db = Database(url)
    db.create_all()
    with db.write() as s:
        run = crud.get_run(s, rid)
        assert run is not None and run.name == "made before health"
        append_health(s, rid, to_rows(10, [_layer(0)]))
    with db.read() as s:
        assert latest_health_step(s, rid) == 10
    db.dispose()
