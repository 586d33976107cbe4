"""Worker behaviour: divergence, failures recorded, step N while running and across a change of
worker, releasing a paused run for a queued one, clean shutdown hand-over, and a lost lease."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import crud
from app.db import Database
from app.settings import Settings
from app.worker.loading import _lease_kept
from app.worker.loop import Worker
from app.worker.session import RunSession

pytestmark = pytest.mark.timeout(60)

Wait = Callable[..., Any]


def _run(client: TestClient, rid: int) -> dict[str, Any]:
    return client.get(f"/api/runs/{rid}").json()


def _create(client: TestClient, config: dict[str, Any]) -> int:
    response = client.post("/api/runs", json={"config": config})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_divergence_is_recorded_and_last_good_checkpoint_kept(
    client: TestClient, worker: Worker, wait: Wait, tiny: dict[str, Any]
) -> None:
    config = {**tiny, "hidden": [64, 64], "optimizer": "sgd", "batchnorm": False}
    rid = _create(client, config)
    wait(lambda: _run(client, rid)["step"] > 150, what="past the first checkpoint")
    client.post(f"/api/runs/{rid}/commands", json={"type": "set_lr", "lr": 100.0})
    wait(lambda: _run(client, rid)["status"] == "diverged", what="diverged")
    run = _run(client, rid)
    assert "non-finite loss" in run["error"]
    metrics = client.get(f"/api/runs/{rid}/metrics").json()
    assert metrics["step"] == list(range(1, run["step"] + 1))
    assert metrics["train_loss"][-1] in ("NaN", "Infinity")
    events = client.get(f"/api/runs/{rid}/events").json()
    assert events[-1]["type"] == "diverged" and events[-1]["step"] == run["step"]
    ckpts = [c["step"] for c in client.get(f"/api/runs/{rid}/checkpoints").json()]
    assert 100 in ckpts and max(ckpts) < run["step"], "the last good state is the latest"


def test_failure_is_recorded_not_swallowed(
    client: TestClient, worker: Worker, wait: Wait, settings: Settings
) -> None:
    bad = Path(settings.data_dir) / "broken.csv"
    bad.write_text("a,b,label\n1,2\n")
    rid = _create(client, {"dataset": "broken.csv", "max_steps": 10})
    wait(lambda: _run(client, rid)["status"] == "failed", what="failed")
    run = _run(client, rid)
    assert run["error"] and "ValueError" in run["error"]
    events = client.get(f"/api/runs/{rid}/events").json()
    assert events[-1]["type"] == "failed" and events[-1]["error"] == run["error"]


def test_step_while_running_pauses_after_exactly_n(
    client: TestClient, worker: Worker, wait: Wait, tiny: dict[str, Any]
) -> None:
    rid = _create(client, tiny)
    wait(lambda: _run(client, rid)["step"] > 10)
    cmd = client.post(f"/api/runs/{rid}/commands", json={"type": "step", "n": 25}).json()
    wait(lambda: _run(client, rid)["status"] == "paused", what="paused after the budget")
    events = client.get(f"/api/runs/{rid}/events").json()
    applied = next(e for e in events if e["id"] == cmd["id"])["step"]
    assert _run(client, rid)["step"] == applied + 25
    assert events[-1]["type"] == "paused" and events[-1]["source"] == "worker"


@pytest.mark.parametrize("paused_first", [True, False], ids=["from-paused", "while-running"])
def test_step_budget_survives_a_shutdown_and_a_new_worker(
    client: TestClient,
    start_worker: Callable[[str], Any],
    wait: Wait,
    holds: Callable[..., None],
    tiny: dict[str, Any],
    paused_first: bool,
) -> None:
    created = client.post("/api/runs", json={"config": tiny, "pace": 100})
    rid = created.json()["id"]
    first, thread = start_worker("first")
    wait(lambda: _run(client, rid)["step"] > 5)
    if paused_first:
        client.post(f"/api/runs/{rid}/commands", json={"type": "pause"})
        wait(lambda: _run(client, rid)["status"] == "paused")
    cmd = client.post(f"/api/runs/{rid}/commands", json={"type": "step", "n": 150}).json()

    def applied_at() -> int | None:
        events = client.get(f"/api/runs/{rid}/events").json()
        return next(e for e in events if e["id"] == cmd["id"])["step"]

    applied = wait(applied_at, what="step 150 applied")
    wait(lambda: _run(client, rid)["step"] >= applied + 20, what="part of the budget")
    first.stopping.set()
    thread.join(timeout=10)
    stopped_at = _run(client, rid)["step"]
    assert applied < stopped_at < applied + 150, "shut down in the middle of the budget"

    start_worker("second")  # takes the run over once the first worker's lease runs out
    end = applied + 150
    wait(lambda: _run(client, rid)["step"] == end, timeout=20, what="the rest of the budget")
    holds(lambda: _run(client, rid)["step"] == end, 0.5, what="paused again at exactly N")
    assert _run(client, rid)["status"] == "paused"
    started = [e for e in client.get(f"/api/runs/{rid}/events").json() if e["type"] == "started"]
    assert started[-1]["worker"] == "second"
    assert started[-1]["steps_left"] == end - stopped_at
    steps = client.get(f"/api/runs/{rid}/metrics").json()["step"]
    assert steps == list(range(1, end + 1))


def test_paused_run_makes_room_for_a_queued_one_and_comes_back(
    client: TestClient, worker: Worker, wait: Wait, tiny: dict[str, Any], db: Database
) -> None:
    first = _create(client, tiny)
    wait(lambda: _run(client, first)["step"] > 10)
    client.post(f"/api/runs/{first}/commands", json={"type": "pause"})
    wait(lambda: _run(client, first)["status"] == "paused")
    paused_at = _run(client, first)["step"]
    second = _create(client, tiny)
    wait(lambda: _run(client, second)["step"] > 10, what="queued run starts on the one worker")
    with db.read() as s:
        assert crud.get_run(s, first).worker_id is None, "paused run released"
    client.post(f"/api/runs/{first}/commands", json={"type": "resume"})
    client.post(f"/api/runs/{second}/commands", json={"type": "stop"})
    wait(lambda: _run(client, first)["step"] > paused_at + 20, what="resumed run trains again")
    steps = client.get(f"/api/runs/{first}/metrics").json()["step"]
    assert steps == list(range(1, len(steps) + 1))


def test_clean_shutdown_hands_the_run_over(
    db: Database, settings: Settings, wait: Wait, tiny: dict[str, Any]
) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config=tiny).id
    step = lambda: _step(db, rid)  # noqa: E731
    one = Worker(db, settings, worker_id="one")
    thread = threading.Thread(target=one.run_forever)
    thread.start()
    wait(lambda: step() > 20)
    one.stopping.set()
    thread.join(timeout=10)
    with db.read() as s:
        run = crud.get_run(s, rid)
        assert run.worker_id is None and run.status == "running"
        assert crud.latest_checkpoint(s, rid).step == run.step
    two = Worker(db, settings, worker_id="two")
    assert two.claim() == rid, "claimable at once, no lease to wait out"


def test_lost_lease_writes_nothing(db: Database, settings: Settings, tiny: dict[str, Any]) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config=tiny).id
        crud.claim_run(s, "mine", 60)
        crud.update_run(s, rid, worker_id="thief")
    outcome = RunSession(db, settings, "mine", rid).run()
    assert outcome == "lease-lost"
    with db.read() as s:
        assert crud.get_run(s, rid).status == "queued"
        assert crud.count_metrics(s, rid) == 0


def _step(db: Database, rid: int) -> int:
    with db.read() as s:
        return crud.get_run(s, rid).step


def test_lease_is_renewed_while_a_slow_dataset_loads() -> None:
    beats: list[int] = []
    with _lease_kept(lambda: beats.append(1), every=0.02):
        threading.Event().wait(0.3)  # stands in for a slow Trainer(...) construction
    count = len(beats)
    assert count >= 3
    threading.Event().wait(0.1)
    assert len(beats) == count, "no heartbeats after loading"
