"""The training split in evaluation mode, beside validation (issue 8): on the rows, in /metrics,
the CSV, the stream (metrics and overview), and through a fork's lineage."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from conftest import run_async
from fastapi.testclient import TestClient

from app import crud
from app.db import Database
from app.stream import StreamHub
from engine import RunConfig, Trainer, state_from_bytes

pytestmark = pytest.mark.timeout(60)


def test_evaluation_rows_carry_the_eval_mode_training_figures(
    client: TestClient, worker: object, wait: Callable[..., Any], tiny: dict[str, Any]
) -> None:
    """Set where val_* is and nowhere else, and exactly what Trainer.evaluate_train() gives on
    the state of that step (the checkpoint at step 100, an evaluation step)."""
    config = {**tiny, "dropout": 0.3}
    rid = client.post("/api/runs", json={"config": config}).json()["id"]
    wait(lambda: client.get(f"/api/runs/{rid}").json()["step"] >= 120, what="120 steps")
    client.post(f"/api/runs/{rid}/commands", json={"type": "stop"})
    wait(lambda: client.get(f"/api/runs/{rid}").json()["status"] == "stopped")
    body = client.get(f"/api/runs/{rid}/metrics").json()
    evaluated = [i for i, v in enumerate(body["val_acc"]) if v is not None]
    assert [body["step"][i] for i in evaluated][:6] == [20, 40, 60, 80, 100, 120]
    for i, step in enumerate(body["step"]):
        pair = (body["train_eval_loss"][i], body["train_eval_acc"][i])
        if i in evaluated:
            assert all(isinstance(v, float) for v in pair), step
            assert 0.0 <= pair[1] <= 1.0
        else:
            assert pair == (None, None), step
    run = client.get(f"/api/runs/{rid}").json()
    with client.app.state.db.read() as s:  # type: ignore[attr-defined]
        ckpt = crud.latest_checkpoint(s, rid, at_or_before=100)
        assert ckpt is not None and ckpt.step == 100
        state = state_from_bytes(ckpt.state)
    trainer = Trainer(RunConfig(**run["config"]))
    trainer.load_state_dict(state)
    expected = trainer.evaluate_train()
    i = body["step"].index(100)
    assert body["train_eval_loss"][i] == pytest.approx(expected["loss"], rel=1e-12)
    assert body["train_eval_acc"][i] == expected["acc"]


def _rows(first: int, last: int, base: float) -> list[dict[str, Any]]:
    """Rows with an evaluation every 10 steps; the eval-mode training loss is base + step/1e4."""
    return [
        {"step": s, "time": float(s), "lr": 0.1, "train_loss": base, "train_acc": 0.5,
         "val_loss": base if s % 10 == 0 else None, "val_acc": 0.5 if s % 10 == 0 else None,
         "train_eval_loss": base + s / 1e4 if s % 10 == 0 else None,
         "train_eval_acc": 0.75 if s % 10 == 0 else None}
        for s in range(first, last + 1)
    ]  # fmt: skip


def test_non_finite_values_follow_the_val_loss_rule(db: Database, client: TestClient) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config={}).id
        rows = _rows(1, 30, 1.0)
        rows[9]["train_eval_loss"] = math.nan  # step 10
        rows[19]["train_eval_loss"] = math.inf  # step 20
        crud.append_metrics(s, rid, rows)
    body = client.get(f"/api/runs/{rid}/metrics").json()
    assert body["train_eval_loss"][9] == "NaN" and body["train_eval_acc"][9] == 0.75
    assert body["train_eval_loss"][19] == "Infinity"
    assert body["train_eval_loss"][29] == pytest.approx(1.003)
    assert body["train_eval_loss"][8] is None, "no evaluation: null, not NaN"
    table = list(csv.reader(io.StringIO(client.get(f"/api/runs/{rid}/metrics.csv").text)))
    assert table[0][-2:] == ["train_eval_loss", "train_eval_acc"]
    assert table[10][-2:] == ["NaN", "0.75"] and table[9][-2:] == ["", ""]
    assert table[30][-2:] == ["1.003", "0.75"]


def test_a_fork_reads_its_parents_values(db: Database, client: TestClient) -> None:
    with db.write() as s:
        root = crud.create_run(s, config={}).id
        crud.append_metrics(s, root, _rows(1, 300, 1.0))
        crud.save_checkpoint(s, root, 200, b"state")
        child = crud.fork_run(s, crud.get_run(s, root), step=250, config={})
        assert child is not None and child.parent_step == 200
        child_id = child.id
        crud.append_metrics(s, child_id, _rows(201, 260, 2.0))
    body = client.get(f"/api/runs/{child_id}/metrics").json()
    by_step = dict(zip(body["step"], body["train_eval_loss"], strict=True))
    assert by_step[200] == pytest.approx(1.02), "the parent's value up to the fork step"
    assert by_step[210] == pytest.approx(2.021), "its own after"
    overview = client.get(f"/api/runs/{child_id}/metrics", params={"max_points": 40}).json()
    assert not overview["exact"]
    for step, loss, val in zip(
        overview["step"], overview["train_eval_loss"], overview["val_acc"], strict=True
    ):
        if val is not None:  # an evaluation row kept by the overview comes back whole
            assert loss == pytest.approx((1.0 if step <= 200 else 2.0) + step / 1e4)
    with db.read() as s:
        last = crud.last_metrics(s, child_id)
    assert last["val_step"] == 260 and last["train_eval_loss"] == pytest.approx(2.026)


def test_stream_metrics_and_overview_carry_the_columns(db: Database) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config={}, status="running").id
        crud.append_metrics(s, rid, _rows(1, 6000, 1.0))

    async def scenario() -> None:
        hub = StreamHub(db, poll=0.02)
        near = hub.viewer(rid, since=5900)
        far = hub.viewer(rid, since=0)
        assert json.loads((await anext(near)).decode().split("data: ", 1)[1])["status"]
        metrics = _parsed(await anext(near))
        assert metrics["step"][:10] == list(range(5901, 5911))
        assert metrics["train_eval_loss"][9] == pytest.approx(1.591)
        assert metrics["train_eval_loss"][:9] == [None] * 9
        await anext(far)  # status
        overview = _parsed(await anext(far))
        assert "train_eval_loss" in overview and len(overview["step"]) < 4000
        for step, loss in zip(overview["step"], overview["train_eval_loss"], strict=True):
            assert loss == (pytest.approx(1.0 + step / 1e4) if step % 10 == 0 else None)
        await near.aclose()
        await far.aclose()
        await hub.close()

    run_async(scenario())


def _parsed(raw: bytes) -> dict[str, Any]:
    lines = raw.decode().splitlines()
    return json.loads("\n".join(line[6:] for line in lines if line.startswith("data: ")))
