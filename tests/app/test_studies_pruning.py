"""A study with the median pruner (issue 10): a hopeless trial is stopped early by an ordinary
``stop`` command that carries the reason, and Optuna is told it was pruned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.timeout(180)

BAD_LR = 1e-7  # Adam at this rate leaves the loss where it started
STEPS = 1000


def test_a_pruned_trial_stops_early_with_its_reason(
    client: TestClient,
    tiny: dict[str, Any],
    worker: Any,
    wait: Callable[..., Any],
) -> None:
    body = {
        "config": {**tiny, "max_steps": STEPS, "eval_every": 20},
        "space": {"lr": {"choices": [0.02, 0.03, 0.05, BAD_LR]}},
        "sampler": "grid",
        "parallel": 1,
        "pruner": "median",
        # The 3 good trials are the startup ones: a good trial compared with the median of the
        # others at one step could be pruned depending on which evaluations the driver's tick
        # saw together (it was, once, on a loaded machine); the hopeless 4th is compared with 3.
        "pruner_options": {"n_startup_trials": 3},
        "pace": 500,  # slow enough for the driver to see each evaluation as it comes
        "seed": 5,  # the grid's order: the hopeless rate comes last, after 3 good ones
    }
    created = client.post("/api/studies", json=body)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    assert created.json()["n_trials"] == 4

    def study() -> dict[str, Any]:
        return client.get(f"/api/studies/{sid}").json()

    wait(lambda: study()["status"] == "finished", timeout=150, what="study finished")
    trials = study()["trials"]
    assert [t["params"]["lr"] for t in trials][-1] == BAD_LR, "the seed fixes the grid order"
    good, bad = trials[:3], trials[3]
    assert all(t["state"] == "complete" and t["step"] == STEPS for t in good)
    assert bad["state"] == "pruned" and bad["status"] == "stopped"
    assert bad["step"] < STEPS / 2, "stopped early"
    assert bad["pruned_reason"].startswith("pruned by median: best val loss")
    assert "above the median" in bad["pruned_reason"]
    events = client.get(f"/api/runs/{bad['run_id']}/events").json()
    stops = [e for e in events if e["type"] == "stop"]
    assert len(stops) == 1 and stops[0]["state"] == "applied"
    assert stops[0]["reason"] == bad["pruned_reason"]
    assert stops[0]["study_id"] == sid and stops[0]["trial"] == 3
    paces = [e for e in events if e["type"] == "set_pace"]
    assert paces and paces[0]["steps_per_second"] == 500


def test_a_hyperband_study_ends_every_trial_complete_or_pruned(
    client: TestClient,
    tiny: dict[str, Any],
    start_worker: Callable[[str], Any],
    wait: Callable[..., Any],
) -> None:
    body = {
        "config": {**tiny, "max_steps": 300, "eval_every": 20},
        "space": {"lr": {"choices": [0.03, 0.05, BAD_LR]}},
        "sampler": "grid",
        "parallel": 2,
        "pruner": "hyperband",
        "pace": 600,
        "seed": 5,
    }
    created = client.post("/api/studies", json=body)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    start_worker("w1")
    start_worker("w2")

    def study() -> dict[str, Any]:
        return client.get(f"/api/studies/{sid}").json()

    wait(lambda: study()["status"] == "finished", timeout=150, what="study finished")
    trials = study()["trials"]
    assert len(trials) == 3
    for t in trials:
        assert (t["state"], t["status"]) in {("complete", "finished"), ("pruned", "stopped")}
        if t["state"] == "pruned":
            assert t["pruned_reason"].startswith("pruned by hyperband")
