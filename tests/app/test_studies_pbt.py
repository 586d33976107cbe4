"""Population-based training as a study mode (issue 10, app/studies/pbt.py): Ray Tune's quarter
rule on synthetic rankings, explore's perturbation, a decision keyed by (member, step) that a
restarted driver does not repeat, and, with real workers, an exploit that forks a better member
and an explore that changes the lr, both as events; the same moves asked for by hand."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app import crud
from app.crud import studies as crud_studies
from app.crud import study_moves
from app.db import Database
from app.models import Event, StudyMove
from app.settings import Settings
from app.studies import StudyDriver, pbt_rules
from app.studies.space import Param

pytestmark = pytest.mark.timeout(180)

LR = Param("lr", "float", low=1e-4, high=1.0, log=True)


# -- the rules, on synthetic input ---------------------------------------------------------------


@pytest.mark.parametrize(("n", "k"), [(1, 0), (2, 1), (3, 1), (4, 1), (5, 2), (8, 2), (9, 3)])
def test_bottom_and_top_quarters_as_ray_tune_splits_them(n: int, k: int) -> None:
    ranked = list(range(n))  # best first
    bottom, top = pbt_rules.quartiles(ranked)
    assert top == ranked[:k] and bottom == ranked[n - k :]
    assert not set(top) & set(bottom)


def test_a_seeded_decision_picks_a_member_of_the_top_quarter_the_same_way_twice() -> None:
    losses = {11: 0.9, 12: 0.2, 13: 1.5, 14: 0.4, 15: 0.7, 16: 2.0, 17: 0.3, 18: 1.1}
    ranking = sorted(losses, key=lambda r: (losses[r], r))
    bottom, top = pbt_rules.quartiles(ranking)
    assert bottom == [13, 16] and top == [12, 17]
    picks = {int(pbt_rules.rng_for(7, 16, step).integers(len(top))) for step in range(0, 4000, 100)}
    assert picks == {0, 1}, "over many steps, both top members get picked"
    again = [int(pbt_rules.rng_for(7, 16, 400).integers(2)) for _ in range(3)]
    assert len(set(again)) == 1, "the same (seed, member, step) draws the same source"


def test_explore_multiplies_by_1_2_or_0_8_or_resamples_inside_the_range() -> None:
    rng = np.random.default_rng(0)
    outcomes = [pbt_rules.perturb(LR, 0.01, rng) for _ in range(2000)]
    scaled = [x for x in outcomes if math.isclose(x, 0.012) or math.isclose(x, 0.008)]
    resampled = len(outcomes) - len(scaled)
    assert 0.2 < resampled / len(outcomes) < 0.3, "resampled with probability 0.25"
    assert all(1e-4 <= x <= 1.0 for x in outcomes)
    assert pbt_rules.perturb(LR, 0.95, np.random.default_rng(3)) <= 1.0, "kept inside the range"
    beta = Param("beta1", "one_minus", low=0.8, high=0.999)
    for x in (pbt_rules.perturb(beta, 0.99, np.random.default_rng(s)) for s in range(50)):
        assert 0.8 <= x <= 0.999
    frozen = [Param("hidden", "choices", choices=([8], [16])), LR]
    assert [p.field for p in pbt_rules.explorable(frozen)] == ["lr"], "fields frozen on fork stay"


# -- the decision, from the database --------------------------------------------------------------


def _pbt_study(db: Database, tiny: dict[str, Any], **over: Any) -> int:
    values: dict[str, Any] = {
        "name": None,
        "config": {**tiny, "max_steps": 400, "eval_every": 20},
        "space": {"lr": {"low": 1e-3, "high": 1e-1, "log": True}},
        "n_trials": 2,
        "parallel": 2,
        "sampler": "random",
        "pruner": None,
        "mode": "pbt",
        "seed": 3,
        "options": {"perturbation_interval": 40},
        **over,
    }
    with db.write() as s:
        return crud_studies.create_study(s, **values).id


def _evaluate(db: Database, run_id: int, step: int, val_loss: float) -> None:
    with db.write() as s:
        crud.append_metrics(
            s,
            run_id,
            [{"step": step, "time": 0.0, "lr": 0.01, "train_loss": 1.0, "train_acc": 0.5,
              "val_loss": val_loss, "val_acc": 0.5}],
        )  # fmt: skip
        run = crud.get_run(s, run_id)
        assert run is not None
        run.status = "running"


def test_a_decision_is_keyed_by_member_and_step_and_survives_a_restart(
    db: Database, settings: Settings, tiny: dict[str, Any]
) -> None:
    sid = _pbt_study(db, tiny)
    StudyDriver(db, settings.database_url).tick()
    with db.read() as s:
        rows = crud_studies.trials_of(s, sid)
    assert [t.number for t, _ in rows] == [0, 1] and all(r.status == "queued" for _, r in rows)
    (_, good), (_, bad) = rows
    _evaluate(db, good.id, 40, 0.3)
    _evaluate(db, bad.id, 40, 0.9)
    for _ in range(3):  # a fresh driver each time: a server restarted between ticks
        StudyDriver(db, settings.database_url).tick()
    with db.read() as s:
        moves = s.query(StudyMove).all()
        checkpoints = [e for e in crud.list_events(s, good.id) if e.type == "checkpoint"]
        reported = {t.run_id: t.reported_step for t, _ in crud_studies.trials_of(s, sid)}
    assert len(moves) == 1, "one exploit of the bad member at step 40, not one per tick"
    move = moves[0]
    assert (move.member_run_id, move.source_run_id, move.round) == (bad.id, good.id, 40)
    assert (move.member_loss, move.source_loss, move.status) == (0.9, 0.3, "waiting")
    assert len(checkpoints) == 1 and move.checkpoint_event_id == checkpoints[0].id
    assert reported == {good.id: 40, bad.id: 40}, "both were ranked at step 40"
    _evaluate(db, good.id, 60, 0.2)
    StudyDriver(db, settings.database_url).tick()
    with db.read() as s:
        assert s.query(StudyMove).count() == 1, "no new round before step 80"


def test_a_diverged_member_is_replaced_at_its_last_step(
    db: Database, settings: Settings, tiny: dict[str, Any]
) -> None:
    sid = _pbt_study(db, tiny)
    StudyDriver(db, settings.database_url).tick()
    with db.read() as s:
        (_, good), (_, bad) = crud_studies.trials_of(s, sid)
    _evaluate(db, good.id, 20, 0.3)
    _evaluate(db, bad.id, 20, 0.9)
    with db.write() as s:
        run = crud.get_run(s, bad.id)
        assert run is not None
        run.status, run.step = "diverged", 27
    StudyDriver(db, settings.database_url).tick()
    StudyDriver(db, settings.database_url).tick()
    with db.read() as s:
        moves = s.query(StudyMove).all()
        trial = crud_studies.trial_of_run(s, bad.id)
    assert [(m.member_run_id, m.source_run_id, m.round) for m in moves] == [(bad.id, good.id, 27)]
    assert trial is not None and trial.state is None, "told only once its replacement is made"


def test_a_member_already_replaced_is_neither_ranked_nor_copied(
    db: Database, settings: Settings, tiny: dict[str, Any]
) -> None:
    sid = _pbt_study(db, tiny, parallel=3, n_trials=3)
    StudyDriver(db, settings.database_url).tick()
    with db.read() as s:
        (ta, a), (_, b), (_, c) = crud_studies.trials_of(s, sid)
    for run, loss in ((a, 0.2), (b, 0.5), (c, 0.9)):
        _evaluate(db, run.id, 40, loss)
    with db.write() as s:  # a's exploit is done, its stop not applied yet
        crud_studies.set_pruned(s, ta.id, "replaced by #99")
    StudyDriver(db, settings.database_url).tick()
    with db.read() as s:
        moves = s.query(StudyMove).all()
    assert [(m.member_run_id, m.source_run_id) for m in moves] == [(c.id, b.id)]


# -- with workers: the moves themselves -----------------------------------------------------------


def _study(client: TestClient, sid: int) -> dict[str, Any]:
    return client.get(f"/api/studies/{sid}").json()


def _events(client: TestClient, run_id: int) -> list[dict[str, Any]]:
    return client.get(f"/api/runs/{run_id}/events").json()


def test_pbt_exploits_a_better_member_and_explores_its_lr_as_events(
    client: TestClient,
    tiny: dict[str, Any],
    start_worker: Callable[[str], Any],
    wait: Callable[..., Any],
) -> None:
    body = {
        "mode": "pbt",
        "config": {**tiny, "max_steps": 300, "eval_every": 20},
        "space": {"lr": {"low": 1e-4, "high": 0.3, "log": True}},
        "parallel": 2,
        "perturbation_interval": 100,
        "pace": 150,  # slow enough that a member is still training when it is replaced
        "seed": 11,
    }
    created = client.post("/api/studies", json=body)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    assert created.json()["mode"] == "pbt" and created.json()["n_trials"] == 2
    assert created.json()["options"]["perturbation_interval"] == 100
    start_worker("w1")
    start_worker("w2")
    wait(lambda: _study(client, sid)["status"] == "finished", timeout=150, what="study finished")
    study = _study(client, sid)
    done = [m for m in study["moves"] if m["status"] == "done"]
    assert done, study["moves"]
    trials = {t["run_id"]: t for t in study["trials"]}
    tree = {n["run_id"]: n for n in study["tree"]}
    assert set(tree) == set(trials)
    for move in done:
        member, source, child = move["member_run_id"], move["source_run_id"], move["child_run_id"]
        assert move["source_loss"] <= move["member_loss"], "the copy comes from a better member"
        assert tree[child]["parent_id"] == source, "the family tree is the fork tree"
        k = tree[child]["parent_step"]
        assert k > 0
        assert trials[member]["state"] == "pruned", "replaced (its stop may come after its end)"
        assert trials[member]["status"] in ("stopped", "finished")
        assert trials[member]["pruned_reason"].startswith(f"replaced by #{child}, a fork of")
        stops = [e for e in _events(client, member) if e["type"] == "stop"]
        assert stops and stops[0]["reason"] == trials[member]["pruned_reason"]
        child_events = _events(client, child)
        exploit = [e for e in child_events if e["type"] == "exploit"]
        assert exploit and exploit[0]["step"] == k
        assert exploit[0]["message"] == f"exploited #{source} at step {k}, replacing #{member}"
        set_lr = [e for e in child_events if e["type"] == "set_lr"]
        assert set_lr and set_lr[0]["reason"].startswith("explore: lr ")
        assert set_lr[0]["state"] == "applied" and set_lr[0]["step"] == k, (
            set_lr[0]["note"],
            k,
            set_lr[0]["step"],
            move,
        )
        old, new = (
            float(x) for x in set_lr[0]["reason"].removeprefix("explore: lr ").split(" -> ")
        )
        assert not math.isclose(old, new, rel_tol=1e-3), "explore changed the lr"
        assert math.isclose(set_lr[0]["lr"], new, rel_tol=1e-3)
        copied = [e for e in _events(client, source) if e["type"] == "exploited"]
        assert any(e["child_run_id"] == child and e["step"] == k for e in copied)
    finished = [t for t in study["trials"] if t["state"] == "complete"]
    assert len(finished) == 2 and all(t["step"] == 300 for t in finished), "population stays 2"


def test_exploit_and_explore_by_hand(
    client: TestClient,
    tiny: dict[str, Any],
    start_worker: Callable[[str], Any],
    wait: Callable[..., Any],
) -> None:
    body = {
        "mode": "pbt",
        "config": {**tiny, "max_steps": 100_000, "eval_every": 20},
        "space": {"lr": {"low": 1e-3, "high": 0.1, "log": True}},
        "parallel": 2,
        "perturbation_interval": 50_000,  # PBT itself stays out of the way
        "pace": 50,
    }
    sid = client.post("/api/studies", json=body).json()["id"]
    start_worker("w1")
    start_worker("w2")
    wait(lambda: [t["step"] > 5 for t in _study(client, sid)["trials"]] == [True, True])
    a, b = (t["run_id"] for t in _study(client, sid)["trials"])
    url = f"/api/studies/{sid}/members"

    explored = client.post(f"{url}/{b}/explore", json={"factor": 1.2})
    assert explored.status_code == 202, explored.text
    current = explored.json()["reason"].removeprefix("explore by hand: lr ").split(" -> ")[0]
    assert math.isclose(explored.json()["lr"], 1.2 * float(current), rel_tol=1e-3)
    wait(lambda: next(e for e in _events(client, b) if e["id"] == explored.json()["id"])["step"])
    assert client.post(f"{url}/{b}/explore", json={"lr": 0.02}).json()["lr"] == 0.02

    moved = client.post(f"{url}/{a}/exploit", json={"source": b})
    assert moved.status_code == 202, moved.text
    assert moved.json()["by"] == "user" and moved.json()["round"] is None
    again = client.post(f"{url}/{a}/exploit", json={"source": b})
    assert again.status_code == 409, "already being replaced"

    def move() -> dict[str, Any]:
        return next(m for m in _study(client, sid)["moves"] if m["id"] == moved.json()["id"])

    wait(lambda: move()["status"] == "done", timeout=30, what="exploit done")
    child = move()["child_run_id"]
    node = next(n for n in _study(client, sid)["tree"] if n["run_id"] == child)
    assert node["parent_id"] == b
    assert "exploit by hand" in move()["note"]
    wait(lambda: crud_status(client, a) == "stopped", what="member stopped")
    assert [e["type"] for e in _events(client, child)].count("exploit") == 1
    client.post(f"/api/studies/{sid}/commands", json={"type": "stop"})
    wait(lambda: _study(client, sid)["status"] == "stopped", timeout=30, what="study stopped")


def test_a_pbt_study_stopped_at_once_ends_stopped(
    client: TestClient, tiny: dict[str, Any], wait: Callable[..., Any]
) -> None:
    body = {"mode": "pbt", "config": tiny, "space": {"lr": {"low": 1e-3, "high": 0.1}}}
    sid = client.post("/api/studies", json=body).json()["id"]
    assert client.post(f"/api/studies/{sid}/commands", json={"type": "stop"}).status_code == 202
    wait(lambda: _study(client, sid)["status"] == "stopped", timeout=30, what="study stopped")
    assert all(t["status"] == "stopped" for t in _study(client, sid)["trials"])


def crud_status(client: TestClient, run_id: int) -> str:
    return str(client.get(f"/api/runs/{run_id}").json()["status"])


def test_moves_by_hand_refuse_bad_requests(
    client: TestClient, tiny: dict[str, Any], wait: Callable[..., Any]
) -> None:
    space = {"lr": {"low": 1e-3, "high": 0.1, "log": True}}
    search = client.post("/api/studies", json={"config": tiny, "space": space}).json()["id"]
    body = {"mode": "pbt", "config": tiny, "space": space, "parallel": 2}
    sid = client.post("/api/studies", json=body).json()["id"]
    wait(lambda: len(_study(client, sid)["trials"]) == 2, what="the population")
    a, b = (t["run_id"] for t in _study(client, sid)["trials"])
    url = f"/api/studies/{sid}/members"
    cases = [
        (f"{url}/{a}/explore", {}, 422),
        (f"{url}/{a}/explore", {"lr": 0.1, "factor": 2}, 422),
        (f"{url}/{a}/explore", {"lr": -1}, 422),
        (f"{url}/{a}/explore", {"factor": 1e9}, 422),
        (f"{url}/{a}/exploit", {}, 422),
        (f"{url}/{a}/exploit", {"source": a}, 422),
        (f"{url}/{a}/exploit", {"source": 999}, 422),
        (f"{url}/999/exploit", {"source": b}, 404),
        (f"/api/studies/{search}/members/{a}/exploit", {"source": b}, 409),
        (f"/api/studies/999/members/{a}/explore", {"lr": 0.1}, 404),
    ]
    for path, payload, status in cases:
        response = client.post(path, json=payload)
        assert response.status_code == status, (path, payload, response.text)
    assert _study(client, sid)["moves"] == []
    with client.app.state.study_driver.db.read() as s:  # type: ignore[attr-defined]
        assert s.query(Event).filter(Event.type == "set_lr").count() == 0, "nothing queued"


def test_a_database_without_study_moves_gets_the_table_and_keeps_its_studies(
    settings: Settings,
) -> None:
    from sqlalchemy import inspect, text

    from app.models import Base

    old = Database(settings.database_url)
    Base.metadata.create_all(
        old.engine, tables=[t for t in Base.metadata.sorted_tables if t.name != "study_moves"]
    )
    with old.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, name, status, config, created_at, updated_at, step) "
                "VALUES (1, 'main', 'finished', '{}', 0, 0, 300)"
            )
        )
    assert "study_moves" not in inspect(old.engine).get_table_names()
    old.dispose()
    db = Database(settings.database_url)
    db.create_all()
    assert "study_moves" in inspect(db.engine).get_table_names()
    with db.read() as s:
        assert study_moves.moves_of(s, 1) == []
        run = crud.get_run(s, 1)
        assert run is not None and run.step == 300
    db.dispose()
