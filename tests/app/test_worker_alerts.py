"""Alerts and autopilot on real tiny runs, trained in this thread by a RunSession (every step
is deterministic, so each alert and each autopilot command is expected at an exact step)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import crud
from app.crud import alerts as crud_alerts
from app.db import Database
from app.settings import Settings
from app.worker.session import RunSession
from app.worker.watch import (
    EARLY_STOP_PATIENCE,
    REDUCE_PATIENCE,
    SPIKE_MIN_RISE,
    SPIKE_SHORT,
    SPIKE_WINDOW,
)
from engine import StepRecord

pytestmark = pytest.mark.timeout(120)

# A run that learns nothing: weights move by 1e-12 of a gradient (below float32's resolution)
# and there is no BN (whose running statistics would still move): the validation loss is the
# same at every evaluation, a plateau from the first one.
FLAT: dict[str, Any] = {
    "dataset": "spirals",
    "n_samples": 200,
    "hidden": [16],
    "batch_size": 32,
    "batchnorm": False,
    "dropout": 0.0,
    "eval_every": 5,
    "lr": 1e-12,
    "schedule": "constant",
    "optimizer": "sgd",
}


class Crash(BaseException):
    """Raised from on_step: leaves the session as a SIGKILL would (buffered rows lost, lease
    held), since RunSession records only ``Exception``s."""


def create(client: TestClient, config: dict[str, Any], **body: Any) -> int:
    response = client.post("/api/runs", json={"config": config, **body})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def train(
    db: Database,
    settings: Settings,
    rid: int,
    worker: str = "w1",
    on_step: Callable[[StepRecord], None] | None = None,
) -> str:
    """Claim the run and train it in this thread until it ends."""
    with db.write() as s:
        assert crud.claim_run(s, worker, settings.lease_seconds, run_id=rid) is not None
    return RunSession(db, settings, worker, rid, on_step=on_step, allow_release=False).run()


def events(client: TestClient, rid: int) -> list[dict[str, Any]]:
    return client.get(f"/api/runs/{rid}/events").json()


def test_divergence_alert_at_the_first_step_the_loss_doubles(
    client: TestClient, db: Database, settings: Settings
) -> None:
    """A run that trained well is forked with a rate 300x too high: the alert lands on the first
    step whose 5-step mean loss is above 2x the mean of the 50 steps before (and 0.1 nats above
    it), as the rows show, and suggests dividing the rate by 3."""
    parent = create(client, {**FLAT, "lr": 0.01, "optimizer": "adam", "max_steps": 200})
    assert train(db, settings, parent) == "finished"
    fork = client.post(
        f"/api/runs/{parent}/fork",
        json={"step": 200, "overrides": {"lr": 3.0, "max_steps": 320}},
    )
    child = fork.json()["id"]
    train(db, settings, child)
    losses = client.get(f"/api/runs/{child}/metrics").json()
    by_step = dict(zip(losses["step"], losses["train_loss"], strict=True))
    expected = None
    for k in range(201, 321):
        window = [by_step[j] for j in range(k - SPIKE_SHORT - SPIKE_WINDOW + 1, k + 1)]
        if any(isinstance(v, str) for v in window):
            break
        before = sum(window[:SPIKE_WINDOW]) / SPIKE_WINDOW
        recent = sum(window[SPIKE_WINDOW:]) / SPIKE_SHORT
        if recent > 2 * before and recent - before > SPIKE_MIN_RISE:
            expected = k
            break
    assert expected is not None, "the rate did not make the loss jump"
    alerts = [e for e in events(client, child) if e["type"] == "alert"]
    spikes = [a for a in alerts if a["kind"] == "divergence"]
    assert spikes and spikes[0]["step"] == expected
    action = spikes[0]["action"]
    assert action["type"] == "set_lr" and action["label"].startswith("divide lr by 3")
    assert math.isclose(action["lr"], 1.0, rel_tol=1e-2)  # a third of 3.0
    assert len(spikes) <= 2, "no flood: one alert per rise (and cooldown)"


def test_reduce_lr_on_plateau_sets_a_tenth_after_patience(
    client: TestClient, db: Database, settings: Settings
) -> None:
    """Keras's ReduceLROnPlateau: the first evaluation sets the best, 10 more without
    improvement reduce the rate x0.1, as an ordinary set_lr with source autopilot, applied at
    that evaluation's step; the next 10 reduce it again. The plateau alert stays quiet: the
    policy handles it."""
    rid = create(client, {**FLAT, "max_steps": 120}, autopilot=["reduce_lr_on_plateau"])
    assert train(db, settings, rid) == "finished"
    evs = events(client, rid)
    switch = next(e for e in evs if e["type"] == "autopilot")
    assert switch["state"] == "applied" and switch["step"] == 0
    cuts = [e for e in evs if e["type"] == "set_lr" and e["source"] == "autopilot"]
    first = 5 * (1 + REDUCE_PATIENCE)
    assert [c["step"] for c in cuts] == [first, 2 * first - 5]
    assert math.isclose(cuts[0]["lr"], 1e-13) and math.isclose(cuts[1]["lr"], 1e-14)
    assert all(c["state"] == "applied" and c["policy"] == "reduce_lr_on_plateau" for c in cuts)
    assert "x 0.1" in cuts[0]["note"]
    rows = client.get(f"/api/runs/{rid}/metrics").json()
    assert rows["lr"][first] == pytest.approx(1e-13)  # step first + 1 trains at the new rate
    assert not [e for e in evs if e["type"] == "alert" and e["kind"] == "plateau"]


def test_without_the_policy_a_plateau_with_tiny_updates_is_a_too_low_rate(
    client: TestClient, db: Database, settings: Settings
) -> None:
    """No autopilot: the same flat run gets alerts, not commands; its updates are far below the
    healthy band, so the plateau is reported as a rate too low (multiply by 3), once."""
    rid = create(client, {**FLAT, "max_steps": 150})
    assert train(db, settings, rid) == "finished"
    evs = events(client, rid)
    assert not [e for e in evs if e["source"] == "autopilot"]
    alerts = [e for e in evs if e["type"] == "alert"]
    kinds = [a["kind"] for a in alerts]
    assert kinds.count("lr_too_low") == 1, kinds
    too_low = next(a for a in alerts if a["kind"] == "lr_too_low")
    assert too_low["step"] == 5 * (1 + 10)
    assert too_low["action"]["type"] == "set_lr" and too_low["action"]["lr"] == pytest.approx(3e-12)
    opened = client.get(f"/api/runs/{rid}/alerts").json()
    assert opened == [], "a finished run's set_lr cannot be taken: not open"


def test_early_stopping_stops_with_the_best_step_and_keeps_its_checkpoint(
    client: TestClient, db: Database, settings: Settings
) -> None:
    """Early stopping on a flat run: the best validation loss is the first evaluation's (step
    5); 10 evaluations later the autopilot queues a stop that names step 5, and a checkpoint of
    step 5 exists, although newer ones would have thinned it out."""
    tight = settings.model_copy(
        update={"checkpoint_every_steps": 5, "checkpoint_keep_recent": 2,
                "checkpoint_keep_every_steps": 1000}
    )  # fmt: skip
    rid = create(client, {**FLAT, "max_steps": 500}, autopilot=["early_stopping"])
    assert train(db, tight, rid) == "stopped"
    run = client.get(f"/api/runs/{rid}").json()
    stop_at = 5 * (1 + EARLY_STOP_PATIENCE)
    assert run["status"] == "stopped" and run["step"] == stop_at
    stop = next(e for e in events(client, rid) if e["type"] == "stop")
    assert stop["source"] == "autopilot" and stop["step"] == stop_at
    assert stop["best_step"] == 5 and "step 5" in stop["note"]
    steps = [c["step"] for c in client.get(f"/api/runs/{rid}/checkpoints").json()]
    assert 5 in steps and len(steps) <= 4, steps


def test_a_policy_switched_off_stops_acting(
    client: TestClient, db: Database, settings: Settings
) -> None:
    """Switched off after its first reduction, reduce-lr-on-plateau queues nothing more."""
    rid = create(client, {**FLAT, "max_steps": 200}, autopilot=["reduce_lr_on_plateau"])
    sent: list[int] = []

    def switch_off(rec: StepRecord) -> None:
        if rec.step == 60 and not sent:
            body = {"type": "autopilot", "policy": "reduce_lr_on_plateau", "on": False}
            sent.append(client.post(f"/api/runs/{rid}/commands", json=body).json()["id"])

    assert train(db, settings, rid, on_step=switch_off) == "finished"
    evs = events(client, rid)
    off = next(e for e in evs if e["id"] == sent[0])
    assert off["state"] == "applied" and off["step"] >= 60
    cuts = [e["step"] for e in evs if e["type"] == "set_lr" and e["source"] == "autopilot"]
    assert cuts == [55], "one reduction before the switch, none after"


def _story(evs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What alerts and autopilot did, without ids or times."""
    return [
        (e["type"], e["source"], e["step"], e.get("kind"), e.get("lr"), e["state"])
        for e in evs
        if e["type"] == "alert" or e["source"] == "autopilot"
    ]


def test_crash_and_restart_neither_refire_nor_forget(
    client: TestClient, db: Database, settings: Settings
) -> None:
    """A worker dies at step 83 (its unflushed rows lost); the next one rebuilds the watch from
    the stored rows and events: the run ends with exactly the alerts and autopilot commands of
    a twin that never crashed (the policy still on, its patience counted from the same best)."""
    fast = settings.model_copy(update={"lease_seconds": 0.5, "flush_rows": 7})
    config = {**FLAT, "max_steps": 130}
    twin = create(client, config, autopilot=["reduce_lr_on_plateau"])
    assert train(db, fast, twin) == "finished"
    rid = create(client, config, autopilot=["reduce_lr_on_plateau"])

    def die(rec: StepRecord) -> None:
        if rec.step == 83:
            raise Crash

    with pytest.raises(Crash):
        train(db, fast, rid, "w1", on_step=die)
    with db.read() as s:
        run = crud.get_run(s, rid)
        assert run is not None and 55 <= run.step < 83, "died with rows unflushed"
        assert run.status == "running"
    time.sleep(0.6)  # the dead worker's lease runs out
    assert train(db, fast, rid, "w2") == "finished"
    assert _story(events(client, rid)) == _story(events(client, twin))
    assert [e for e in events(client, rid) if e["source"] == "autopilot"]


def test_alerts_of_a_range_test_or_an_overfit_check_are_none(
    client: TestClient, db: Database, settings: Settings
) -> None:
    """The watch is off where an exploding or flat loss is the point."""
    rid = create(client, {**FLAT, "max_steps": 150, "train_subset": 20, "batch_size": 20})
    assert train(db, settings, rid) == "finished"
    with db.read() as s:
        assert crud_alerts.alert_events(s, rid) == []
