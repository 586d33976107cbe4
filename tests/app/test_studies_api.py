"""``/api/studies`` (issue 10): a study's trials are ordinary runs that the driver in the server
creates, ``parallel`` at a time, until ``n_trials`` have ended; a trial is nursed like any run;
bad bodies are 422 naming the field and store nothing. Runs on SQLite, and on PostgreSQL with
PANDAMODE_TEST_DB=postgresql (tests/app/conftest.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import crud
from app.db import Database
from app.models import Metric

pytestmark = pytest.mark.timeout(180)


def _create(client: TestClient, tiny: dict[str, Any], **body: Any) -> dict[str, Any]:
    payload = {
        "config": {**tiny, "max_steps": 200, "eval_every": 20},
        "space": {"lr": {"low": 1e-3, "high": 1e-1, "log": True}},
        "n_trials": 4,
        "parallel": 2,
        "seed": 7,
        **body,
    }
    response = client.post("/api/studies", json=payload)
    assert response.status_code == 201, response.text
    return response.json()


def _get(client: TestClient, sid: int) -> dict[str, Any]:
    response = client.get(f"/api/studies/{sid}")
    assert response.status_code == 200, response.text
    return response.json()


def _spans(db: Database, run_ids: list[int]) -> dict[int, tuple[float, float]]:
    """(first, last) time a step of each run ended."""
    with db.read() as s:
        out = {}
        for rid in run_ids:
            times = [t for (t,) in s.query(Metric.time).filter(Metric.run_id == rid)]
            out[rid] = (min(times), max(times))
        return out


def test_a_study_with_two_workers_runs_two_trials_at_once_and_finishes_every_trial(
    client: TestClient,
    db: Database,
    tiny: dict[str, Any],
    start_worker: Callable[[str], Any],
    wait: Callable[..., Any],
) -> None:
    study = _create(client, tiny, config={**tiny, "max_steps": 1500, "eval_every": 100})
    sid = study["id"]
    assert study["status"] == "running" and study["trials"] == []
    wait(lambda: len(_get(client, sid)["trials"]) == 2, what="two trials created")
    assert len(_get(client, sid)["trials"]) == 2, "no more than parallel=2 unfinished trials"
    start_worker("w1")
    start_worker("w2")
    wait(lambda: _get(client, sid)["status"] == "finished", timeout=120, what="study finished")
    done = _get(client, sid)
    trials = done["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    assert all(t["status"] == "finished" and t["state"] == "complete" for t in trials)
    assert all(t["step"] == 1500 for t in trials)
    for t in trials:
        assert t["value"] == t["best_val_loss"], "Optuna was told the best validation loss"
        assert 1e-3 <= t["params"]["lr"] <= 1e-1
        run = client.get(f"/api/runs/{t['run_id']}").json()
        assert (run["study_id"], run["trial"]) == (sid, t["number"])
        assert run["config"]["lr"] == t["params"]["lr"], "config = base + sampled values"
        assert run["name"] == f"study {sid} · trial {t['number']}"
    spans = _spans(db, [t["run_id"] for t in trials])
    overlapping = [
        (a, b)
        for a, b in itertools.combinations(spans, 2)
        if spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]
    ]
    assert overlapping, f"two trials trained at the same time: {spans}"
    assert done["best"]["best_val_loss"] == min(t["best_val_loss"] for t in trials)
    listed = client.get("/api/studies").json()
    assert [s["id"] for s in listed] == [sid] and listed[0]["trials"] is None
    assert listed[0]["counts"] == {"finished": 4}


def test_a_trial_is_an_ordinary_run_pause_it_and_set_its_lr(
    client: TestClient,
    tiny: dict[str, Any],
    worker: Any,
    wait: Callable[..., Any],
) -> None:
    study = _create(client, tiny, config={**tiny, "max_steps": 1_000_000}, n_trials=1, parallel=1)
    sid = study["id"]
    trial = wait(lambda: (_get(client, sid)["trials"] or [None])[0], what="trial created")
    rid = trial["run_id"]
    run = lambda: client.get(f"/api/runs/{rid}").json()  # noqa: E731
    wait(lambda: run()["step"] > 20, what="the trial trains")
    assert client.post(f"/api/runs/{rid}/commands", json={"type": "pause"}).status_code == 202
    wait(lambda: run()["status"] == "paused", what="paused")
    answer = client.post(f"/api/runs/{rid}/commands", json={"type": "set_lr", "lr": 0.0123})
    assert answer.status_code == 202
    assert client.post(f"/api/runs/{rid}/commands", json={"type": "resume"}).status_code == 202
    wait(
        lambda: run()["status"] == "running" and run()["lr"] == pytest.approx(0.0123),
        what="resumed at the new rate",
    )
    assert _get(client, sid)["trials"][0]["status"] == "running"
    events = client.get(f"/api/runs/{rid}/events").json()
    assert [e["type"] for e in events if e["source"] == "user"][:3] == ["pause", "set_lr", "resume"]
    page = client.get(f"/runs/{rid}")
    assert page.status_code == 200 and f"study {sid} · trial 0" in page.text, "the run page"
    checkpoints = client.get(f"/api/runs/{rid}/checkpoints").json()
    assert checkpoints, "checkpoints as any run"
    assert checkpoints[0]["step"] == 0, "a run's first checkpoint, never thinned out"
    fork = client.post(f"/api/runs/{rid}/fork", json={"step": 0})
    assert fork.status_code == 201, fork.text
    assert fork.json()["study_id"] is None, "a fork of a trial is no trial of the study"


def test_study_commands_pause_resume_and_stop_every_trial(
    client: TestClient,
    tiny: dict[str, Any],
    start_worker: Callable[[str], Any],
    wait: Callable[..., Any],
) -> None:
    study = _create(client, tiny, config={**tiny, "max_steps": 1_000_000}, n_trials=5)
    sid = study["id"]
    start_worker("w1")
    start_worker("w2")
    running = lambda: [t for t in _get(client, sid)["trials"] if t["status"] == "running"]  # noqa: E731
    wait(lambda: len(running()) == 2, what="two trials run")
    paused = client.post(f"/api/studies/{sid}/commands", json={"type": "pause"})
    assert paused.status_code == 202 and paused.json()["status"] == "paused"
    wait(
        lambda: all(t["status"] == "paused" for t in _get(client, sid)["trials"]),
        what="every trial paused",
    )
    resumed = client.post(f"/api/studies/{sid}/commands", json={"type": "resume"})
    assert resumed.json()["status"] == "running"
    wait(lambda: len(running()) == 2, what="trials run again")
    stopped = client.post(f"/api/studies/{sid}/commands", json={"type": "stop"})
    assert stopped.status_code == 202
    wait(lambda: _get(client, sid)["status"] == "stopped", timeout=30, what="study stopped")
    trials = _get(client, sid)["trials"]
    assert len(trials) == 2, "a stopped study creates no more trials"
    assert all(t["status"] == "stopped" and t["state"] == "pruned" for t in trials)
    assert all(t["pruned_reason"] == "the study was stopped" for t in trials)
    again = client.post(f"/api/studies/{sid}/commands", json={"type": "resume"})
    assert again.status_code == 409


def test_continue_best_forks_the_best_trials_checkpoint_at_or_before_its_best_step(
    client: TestClient,
    db: Database,
    tiny: dict[str, Any],
    worker: Any,
    wait: Callable[..., Any],
) -> None:
    study = _create(
        client, tiny, config={**tiny, "max_steps": 400, "eval_every": 20}, n_trials=3, parallel=1
    )
    sid = study["id"]
    wait(lambda: _get(client, sid)["status"] == "finished", timeout=120, what="finished")
    trials = _get(client, sid)["trials"]
    best = min(trials, key=lambda t: t["best_val_loss"])
    with db.read() as s:
        evals = [
            (loss, step)
            for step, loss in s.query(Metric.step, Metric.val_loss).filter(
                Metric.run_id == best["run_id"], Metric.val_acc.is_not(None)
            )
        ]
        best_step = min(evals)[1]
        expected = crud.checkpoint_step_at_or_before(s, best["run_id"], best_step)
    answer = client.post(f"/api/studies/{sid}/continue-best", json={})
    assert answer.status_code == 201, answer.text
    child = answer.json()
    assert child["parent_id"] == best["run_id"]
    assert child["parent_step"] == expected and expected <= best_step
    assert child["study_id"] is None, "a free-standing run"
    parent_config = client.get(f"/api/runs/{best['run_id']}").json()["config"]
    # On to the trial's max_steps; from its last step (a best at the end), as many again.
    steps = 400 if expected < 400 else 800
    assert child["config"] == {**parent_config, "max_steps": steps}
    assert child["status"] == "queued"


def test_narrow_makes_a_linked_study_inside_the_parents_ranges(
    client: TestClient,
    tiny: dict[str, Any],
    start_worker: Callable[[str], Any],
    wait: Callable[..., Any],
) -> None:
    space = {
        "lr": {"low": 1e-4, "high": 1.0, "log": True},
        "beta1": {"low": 0.5, "high": 0.999, "log_one_minus": True},
        "batch_size": {"low": 8, "high": 64},
        "activation": {"choices": ["relu", "tanh"]},
    }
    study = _create(
        client,
        tiny,
        space=space,
        n_trials=6,
        parallel=2,
        config={**tiny, "max_steps": 60, "eval_every": 20},
    )
    sid = study["id"]
    early = client.post(f"/api/studies/{sid}/narrow", json={"k": 2})
    assert early.status_code == 409, "nothing to narrow around before a trial has a val loss"
    start_worker("w1")
    start_worker("w2")
    wait(lambda: _get(client, sid)["status"] == "finished", timeout=120, what="finished")
    parent = _get(client, sid)
    answer = client.post(f"/api/studies/{sid}/narrow", json={"k": 3, "n_trials": 2})
    assert answer.status_code == 201, answer.text
    child = answer.json()
    assert child["parent_study_id"] == sid and child["n_trials"] == 2
    assert child["sampler"] == parent["sampler"] and child["config"] == parent["config"]
    best = sorted(parent["trials"], key=lambda t: t["best_val_loss"])[:3]
    new, old = child["space"], parent["space"]
    for field in ("lr", "beta1", "batch_size"):
        assert old[field]["low"] <= new[field]["low"] < new[field]["high"] <= old[field]["high"]
        for t in best:  # the best trials' values stay inside the narrowed range
            assert new[field]["low"] <= t["params"][field] <= new[field]["high"]
    assert new["lr"]["log"] is True and new["beta1"]["log_one_minus"] is True
    assert set(new["activation"]["choices"]) == {t["params"]["activation"] for t in best}
    assert isinstance(new["batch_size"]["low"], int)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"surprise": 1}, ["body", "surprise"]),
        ({"name": "a\x00b"}, ["body", "name"]),
        ({"space": {"nope": {"low": 0, "high": 1}}}, ["body", "space", "nope"]),
        ({"space": {"lr": {"low": 0.1, "high": 0.01}}}, ["body", "space", "lr", "high"]),
        ({"space": {"lr": {"low": 0.0, "high": 0.1, "log": True}}}, ["body", "space", "lr", "low"]),
        ({"space": {"lr": {"low": 0.1}}}, ["body", "space", "lr"]),
        ({"space": {"lr": {"low": 0.1, "high": 0.2, "step": 2}}}, ["body", "space", "lr", "step"]),
        ({"space": {}}, ["body", "space"]),
        ({"sampler": "annealing"}, ["body", "sampler"]),
        ({"pruner": "percentile"}, ["body", "pruner"]),
        ({"n_trials": 0}, ["body", "n_trials"]),
        ({"n_trials": 100_000}, ["body", "n_trials"]),
        ({"parallel": 0}, ["body", "parallel"]),
        ({"parallel": 65}, ["body", "parallel"]),
        ({"mode": "annealing"}, ["body", "mode"]),
        ({"mode": "pbt", "parallel": 1}, ["body", "parallel"]),
        ({"mode": "pbt", "n_trials": 8}, ["body", "n_trials"]),
        ({"mode": "pbt", "sampler": "tpe"}, ["body", "sampler"]),
        ({"mode": "pbt", "pruner": "median"}, ["body", "pruner"]),
        ({"mode": "pbt", "perturbation_interval": 10}, ["body", "perturbation_interval"]),
        ({"mode": "pbt", "config": {"max_steps": 50}}, ["body", "perturbation_interval"]),
        ({"mode": "pbt", "config": {"max_steps": None}}, ["body", "config", "max_steps"]),
        ({"mode": "pbt", "space": {"hidden": {"choices": [[8], [16]]}}}, ["body", "space"]),
        ({"perturbation_interval": 100}, ["body", "perturbation_interval"]),
        ({"seed": 2**31}, ["body", "seed"]),
        ({"config": {"lr": -1}}, ["body", "config", "lr"]),
    ],
)
def test_bad_bodies_are_422_naming_the_field_and_store_nothing(
    client: TestClient, tiny: dict[str, Any], body: dict[str, Any], loc: list[Any]
) -> None:
    payload = {"config": tiny, "space": {"lr": {"low": 1e-3, "high": 1e-1, "log": True}}, **body}
    response = client.post("/api/studies", json=payload)
    assert response.status_code == 422, response.text
    assert any(e["loc"][: len(loc)] == loc for e in response.json()["detail"]), response.json()
    assert client.get("/api/studies").json() == []
    assert client.get("/api/runs").json() == []


def test_a_grid_too_large_is_refused_and_a_grid_caps_n_trials(
    client: TestClient, tiny: dict[str, Any]
) -> None:
    fields = ["lr", "dropout", "weight_decay", "label_smoothing", "beta1", "beta2"]
    space = {f: {"low": 0.01, "high": 0.5} for f in fields}
    huge = client.post(
        "/api/studies", json={"config": tiny, "space": space, "sampler": "grid", "grid_points": 10}
    )
    assert huge.status_code == 422 and huge.json()["detail"][0]["loc"] == ["body", "space"]
    small = _create(
        client,
        tiny,
        sampler="grid",
        n_trials=50,
        grid_points=3,
        space={
            "lr": {"low": 1e-3, "high": 1e-1, "log": True},
            "optimizer": {"choices": ["adam", "sgd"]},
        },
    )
    assert small["n_trials"] == 6, "each grid point once"


def test_unknown_study_is_404(client: TestClient) -> None:
    for method, path in [
        ("get", "/api/studies/99"),
        ("post", "/api/studies/99/commands"),
        ("post", "/api/studies/99/narrow"),
        ("post", "/api/studies/99/continue-best"),
        ("get", "/api/studies/0"),
        ("get", f"/api/studies/{2**63}"),
    ]:
        body = {"type": "stop"} if path.endswith("commands") else {}
        response = getattr(client, method)(path, **({"json": body} if method == "post" else {}))
        assert response.status_code == 404, (path, response.text)
