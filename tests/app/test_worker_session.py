"""Worker behaviour: divergence, failures recorded, step N while running and across a change of
worker, releasing a paused run for a queued one, clean shutdown hand-over, and a lost lease."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import create_run
from fastapi.testclient import TestClient

from app import crud
from app.db import Database
from app.models import Event
from app.settings import Settings
from app.worker.loading import LrChange
from app.worker.loop import Worker
from app.worker.session import RunSession
from engine import RunConfig, Trainer, state_from_bytes
from engine.schedules import LrAnchor

pytestmark = pytest.mark.timeout(60)

Wait = Callable[..., Any]


def _run(client: TestClient, rid: int) -> dict[str, Any]:
    return client.get(f"/api/runs/{rid}").json()


def test_divergence_is_recorded_and_last_good_checkpoint_kept(
    client: TestClient, worker: Worker, wait: Wait, tiny: dict[str, Any]
) -> None:
    config = {**tiny, "hidden": [64, 64], "optimizer": "sgd", "batchnorm": False}
    rid = create_run(client, config)
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
    client: TestClient, worker: Worker, wait: Wait, settings: Settings, db: Database
) -> None:
    bad = Path(settings.data_dir) / "broken.csv"
    bad.write_text("a,b,label\n1,2\n")
    # The API refuses such data at creation now: store the run as an older version would have.
    config = RunConfig(dataset=str(bad.resolve()), max_steps=10).model_dump(mode="json")
    with db.write() as s:
        rid = crud.create_run(s, config=config).id
    wait(lambda: _run(client, rid)["status"] == "failed", what="failed")
    run = _run(client, rid)
    assert run["error"] and "ValueError" in run["error"]
    events = client.get(f"/api/runs/{rid}/events").json()
    assert events[-1]["type"] == "failed" and events[-1]["error"] == run["error"]


def test_step_while_running_pauses_after_exactly_n(
    client: TestClient, worker: Worker, wait: Wait, tiny: dict[str, Any]
) -> None:
    rid = create_run(client, tiny)
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
    first = create_run(client, tiny)
    wait(lambda: _run(client, first)["step"] > 10)
    client.post(f"/api/runs/{first}/commands", json={"type": "pause"})
    wait(lambda: _run(client, first)["status"] == "paused")
    paused_at = _run(client, first)["step"]
    second = create_run(client, tiny)
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


def _events(client: TestClient, rid: int) -> list[dict[str, Any]]:
    return client.get(f"/api/runs/{rid}/events").json()


def test_a_set_lr_checkpoints_the_state_before_it_and_going_back_undoes_it(
    client: TestClient, worker: Worker, wait: Wait, tiny: dict[str, Any], db: Database
) -> None:
    """set_lr writes a checkpoint at the step it applies holding the old rate, labelled "before
    lr X", that thinning never removes; a fork from that step goes on at the old rate."""
    rid = create_run(client, tiny)  # constant 0.01
    wait(lambda: _run(client, rid)["step"] > 150, what="past a periodic checkpoint")
    cmd = client.post(f"/api/runs/{rid}/commands", json={"type": "set_lr", "lr": 0.003}).json()
    ev = wait(lambda: next((e for e in _events(client, rid) if e["id"] == cmd["id"] and
                            e["step"] is not None), None), what="set_lr applied")  # fmt: skip
    k = ev["step"]
    labelled = [c for c in client.get(f"/api/runs/{rid}/checkpoints").json() if c["label"]]
    assert [(c["step"], c["label"], c["id"]) for c in labelled] == [
        (k, "before lr 0.003", ev["checkpoint_id"])
    ]
    with db.read() as s:
        state = state_from_bytes(crud.latest_checkpoint(s, rid, at_or_before=k).state)
    before = Trainer(RunConfig(**tiny))
    before.load_state_dict(state)
    assert before.step_count == k and before.lr == 0.01, "the state before the change"

    same = client.post(f"/api/runs/{rid}/commands", json={"type": "set_lr", "lr": 0.003}).json()
    unchanged = wait(lambda: next((e for e in _events(client, rid) if e["id"] == same["id"] and
                                   e["step"] is not None), None))  # fmt: skip
    assert unchanged["checkpoint_id"] is None, "the rate it already has: nothing to undo"

    every = 100  # tests' checkpoint_every_steps; 10 newest are kept, older ones at 5000s only
    wait(lambda: _run(client, rid)["step"] > k + 12 * every, what="thinning has run")
    ckpts = client.get(f"/api/runs/{rid}/checkpoints").json()
    assert 100 not in [c["step"] for c in ckpts], "older unlabelled checkpoints are thinned out"
    assert [c["step"] for c in ckpts if c["label"]] == [k], "the labelled one stays"

    client.post(f"/api/runs/{rid}/commands", json={"type": "stop"})
    wait(lambda: _run(client, rid)["status"] == "stopped")
    child = client.post(f"/api/runs/{rid}/fork", json={"step": k}).json()
    assert child["parent_step"] == k and child["lr"] == 0.01
    wait(lambda: _run(client, child["id"])["step"] > k + 5, what="the fork trains")
    rows = client.get(f"/api/runs/{child['id']}/metrics", params={"after": k}).json()
    assert rows["lr"][:5] == [0.01] * 5, "the fork goes on at the rate before the change"
    assert [e for e in _events(client, child["id"]) if e["type"] == "set_lr"] == []
    client.post(f"/api/runs/{child['id']}/commands", json={"type": "stop"})


def test_a_command_left_when_the_run_finishes_is_closed(
    db: Database, settings: Settings, tiny: dict[str, Any]
) -> None:
    """A command that arrives as the last step is trained never waits for a worker again."""
    with db.write() as s:
        rid = crud.create_run(s, config={**tiny, "max_steps": 30}).id
        crud.claim_run(s, "w", 60, run_id=rid)
    late: list[int] = []

    def on_step(rec: Any) -> None:
        if rec.step == 30:
            with db.write() as s:
                late.append(crud.record_command(s, rid, "set_lr", {"lr": 0.5}).id)

    assert RunSession(db, settings, "w", rid, on_step=on_step).run() == "finished"
    with db.read() as s:
        ev = crud.events_by_ids(s, late)[0]
        assert ev.step == 30 and ev.error == "run finished before it applied"
        assert crud.serialize_event(ev)["state"] == "error"
        assert crud.pending_commands(s, rid) == []


def test_a_set_lr_recorded_by_an_older_worker_replays_as_a_base_rate() -> None:
    """Crash replay applies each set_lr under the rule it was applied with."""
    old = Event(type="set_lr", payload=json.dumps({"lr": 0.02}))
    new = Event(type="set_lr", payload=json.dumps({"lr": 0.02, "lr_rule": "exact"}))
    assert LrChange.of(old) == LrChange(0.02, exact=False)
    assert LrChange.of(new) == LrChange(0.02, exact=True)
    t = Trainer(RunConfig(schedule="cosine", max_steps=10, hidden=[4], dataset="moons"))
    for _ in range(5):
        t.step()
    LrChange.of(old).apply(t)
    assert t.lr_anchor == LrAnchor(0, 0.02)
    LrChange.of(new).apply(t)
    assert t.lr_anchor == LrAnchor(5, 0.02) and t.lr == 0.02
