"""crud rules the worker relies on: which runs are claimable, in what order, and checkpoints
that fail their hash check are skipped."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import event, update

from app import crud
from app.db import Database
from app.models import Checkpoint, Study, StudyTrial

pytestmark = pytest.mark.timeout(30)


def _claim(db: Database, worker: str, lease: float = 60.0) -> int | None:
    with db.write() as s:
        run = crud.claim_run(s, worker, lease)
        return run.id if run is not None else None


def test_claim_order_and_leases(db: Database) -> None:
    with db.write() as s:
        queued = crud.create_run(s, config={}).id
        crashed = crud.create_run(
            s, config={}, status="running", worker_id="dead", lease_until=1.0
        ).id
        held = crud.create_run(
            s, config={}, status="running", worker_id="alive", lease_until=crud.now() + 60
        ).id
    assert _claim(db, "a") == crashed, "a run whose worker died comes back first"
    assert _claim(db, "b") == queued
    assert _claim(db, "c") is None, "a run with a live lease is not taken"
    with db.read() as s:
        assert crud.get_run(s, held).worker_id == "alive"
        assert crud.get_run(s, crashed).worker_id == "a"


def test_released_paused_run_needs_a_command(db: Database) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config={}, status="paused").id
        assert not crud.has_queued_runs(s)
    assert _claim(db, "w") is None
    with db.write() as s:
        crud.record_command(s, rid, "resume")
    assert _claim(db, "w") == rid


def test_renew_and_release_only_by_the_holder(db: Database) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config={}).id
        assert crud.has_queued_runs(s)
    assert _claim(db, "owner") == rid
    with db.write() as s:
        assert not crud.renew_lease(s, rid, "other", 10)
        assert not crud.release_run(s, rid, "other")
        assert crud.renew_lease(s, rid, "owner", 10, lr=0.5)
        assert crud.release_run(s, rid, "owner")
        assert crud.get_run(s, rid).worker_id is None


def test_corrupt_checkpoint_is_skipped(db: Database) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config={}).id
        crud.save_checkpoint(s, rid, 10, b"good state")
        bad = crud.save_checkpoint(s, rid, 20, b"other state").id
        s.execute(update(Checkpoint).where(Checkpoint.id == bad).values(state=b"flipped bits"))
    with db.read() as s:
        assert crud.latest_checkpoint(s, rid).step == 10
        assert crud.latest_checkpoint(s, rid, at_or_before=9) is None
        assert [c["step"] for c in crud.list_checkpoints(s, rid)] == [10, 20]


def test_latest_checkpoint_loads_one_state(db: Database) -> None:
    """Finding the newest checkpoint reads one blob (two when the newest is damaged), not every
    candidate's: a big model's 20 checkpoints would be 100 MB inside a fork's transaction."""
    with db.write() as s:
        rid = crud.create_run(s, config={}).id
        for step in (10, 20, 30, 40, 50):
            crud.save_checkpoint(s, rid, step, f"state {step}".encode())
    loaded: list[int] = []

    def count(target: Checkpoint, _context: object) -> None:
        loaded.append(target.step)

    event.listen(Checkpoint, "load", count)
    try:
        with db.read() as s:
            assert crud.latest_checkpoint(s, rid).step == 50
            assert loaded == [50]
            assert crud.latest_checkpoint(s, rid, at_or_before=35).step == 30
            assert loaded == [50, 30]
        with db.write() as s:
            s.execute(update(Checkpoint).where(Checkpoint.step == 50).values(state=b"flipped"))
        loaded.clear()
        with db.read() as s:
            assert crud.latest_checkpoint(s, rid).step == 40
            assert loaded == [50, 40]
    finally:
        event.remove(Checkpoint, "load", count)


def test_commands_pending_until_applied_once(db: Database) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config={}).id
        first = crud.record_command(s, rid, "set_lr", {"lr": 0.1}).id
        crud.record_command(s, rid, "pause")
        assert [e.type for e in crud.pending_commands(s, rid)] == ["set_lr", "pause"]
        assert crud.mark_applied(s, first, 5)
        assert not crud.mark_applied(s, first, 6), "applied once"
        assert [e.type for e in crud.pending_commands(s, rid)] == ["pause"]
        assert [e.step for e in crud.applied_set_lr_since(s, rid, 5)] == [5]
        assert crud.applied_set_lr_since(s, rid, 6) == []


def test_old_checkpoints_are_thinned(db: Database) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config={}).id
        for step in range(10, 210, 10):
            crud.save_checkpoint(s, rid, step, f"state {step}".encode())
            crud.prune_checkpoints(s, rid, keep_recent=3, keep_every=50)
        assert [c["step"] for c in crud.list_checkpoints(s, rid)] == [50, 100, 150, 180, 190, 200]
        assert crud.prune_checkpoints(s, rid, keep_recent=1, keep_every=0) == 0


def test_steps_left_of_a_step_budget(db: Database) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config={}).id

    def command(type_: str, at: int, error: str | None = None, **payload: int) -> None:
        with db.write() as s:
            ev = crud.record_command(s, rid, type_, payload)
            crud.mark_applied(s, ev.id, at, error)

    def left(committed: int) -> int | None:
        with db.read() as s:
            return crud.steps_left(s, rid, committed)

    assert left(0) is None, "no step command"
    command("step", 10, n=100)
    assert (left(10), left(40), left(109), left(110)) == (100, 70, 1, None)
    command("set_lr", 20, lr=1)
    assert left(40) == 70, "other commands leave the budget alone"
    command("step", 50, error="step needs n >= 1, got 0", n=0)
    assert left(60) == 50, "a rejected step changes nothing"
    command("pause", 60)
    assert left(60) is None, "pause cancels the budget"
    command("step", 60, n=5)
    command("resume", 62)
    assert left(62) is None, "resume cancels it too"


def test_serialize_runs_reads_the_study_links_in_one_query(db: Database) -> None:
    """The runs list serializes many runs: their study links come from one query, and every
    run object is the one serialize_run makes alone (trials keep study_id and trial)."""
    with db.write() as s:
        ids = [crud.create_run(s, config={}).id for _ in range(5)]
        study = Study(name="s", status="running", mode="search", config="{}", space="{}",
                      n_trials=2, parallel=1, sampler="random", seed=0, optuna_name="t",
                      created_at=0.0, updated_at=0.0)  # fmt: skip
        s.add(study)
        s.flush()
        s.add(StudyTrial(study_id=study.id, run_id=ids[3], number=7, optuna_trial_id=0,
                         params="{}", sampled="{}", created_at=0.0))  # fmt: skip
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.read() as s:
            runs = crud.list_runs(s)
            statements.clear()
            batch = crud.serialize_runs(s, runs)
            links = [st for st in statements if "trials" in st]
            alone = [crud.serialize_run(r) for r in runs]
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(links) == 1, links
    assert batch == alone
    trial = next(r for r in batch if r["id"] == ids[3])
    assert (trial["study_id"], trial["trial"]) == (study.id, 7)
    assert [r["study_id"] for r in batch].count(None) == 4


def test_evaluations_at_reads_through_the_lineage(db: Database) -> None:
    """The fork list's labels: the evaluations at given steps, a fork's early ones from its
    parent, a non-finite loss as NaN, steps without an evaluation left out."""

    def row(step: int, val: float | None) -> dict[str, object]:
        return {"step": step, "time": 1.0, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5,
                "val_loss": val, "val_acc": 0.5 if step % 10 == 0 else None}  # fmt: skip

    with db.write() as s:
        parent = crud.create_run(s, config={}).id
        crud.append_metrics(s, parent, [row(k, {10: 0.9, 20: 0.4}.get(k)) for k in range(1, 26)])
        child = crud.create_run(s, config={}, parent_id=parent, parent_step=20).id
        crud.append_metrics(s, child, [row(k, float("nan")) for k in range(21, 31)])
    with db.read() as s:
        found = crud.evaluations_at(s, child, [10, 20, 25, 30, 40])
        assert crud.evaluations_at(s, child, []) == {}
    assert sorted(found) == [10, 20, 30]
    assert found[10] == (0.9, 0.5) and found[20] == (0.4, 0.5)
    assert math.isnan(found[30][0]) and found[30][1] == 0.5
