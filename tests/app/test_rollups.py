"""Rollups agree with a brute-force min/max over the rows; overviews built on them keep extremes."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from sqlalchemy import select

from app import crud
from app.crud import rollups
from app.db import Database
from app.models import MetricRollup
from app.series import STEP, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Row

pytestmark = pytest.mark.timeout(60)

NAN_STEPS = (1_234, 7_777)
SPIKE_STEP = 4_321


def _row(step: int, rng: random.Random) -> dict[str, Any]:
    loss = 2.0 / math.sqrt(step) + 0.05 * rng.random()
    if step in NAN_STEPS:
        loss = math.nan
    elif step == SPIKE_STEP:
        loss = 80.0
    evaluated = step % 50 == 0
    val = loss * 1.2 if evaluated else None
    if step == 3_000:
        val = math.inf  # a non-finite validation loss is the high of its buckets
    return {
        "step": step, "time": 1000.0 + step, "epoch": step / 10, "lr": 0.1,
        "train_loss": loss, "train_acc": 0.5,
        "val_loss": val, "val_acc": 0.6 if evaluated else None,
    }  # fmt: skip


def _write(db: Database, run_id: int, first: int, last: int, seed: int = 0) -> None:
    """Rows first..last in uneven flushes, with every flush's rows sent twice now and then."""
    rng = random.Random(seed)
    step = first
    while step <= last:
        size = rng.choice((1, 7, 100, 333))
        rows = [_row(s, rng) for s in range(step, min(step + size, last + 1))]
        with db.write() as s:
            crud.append_metrics(s, run_id, rows)
            if rng.random() < 0.2:  # a replay after a crash: nothing may count twice
                crud.append_metrics(s, run_id, rows)
        step += size


def _new_run(db: Database, **kwargs: Any) -> int:
    with db.write() as s:
        return crud.create_run(s, config={"lr": 0.1}, **kwargs).id


def _brute(rows: list[Row], width: int) -> dict[int, tuple[Any, ...]]:
    """What each bucket's rollup must say, computed the slow and obvious way."""
    out: dict[int, tuple[Any, ...]] = {}
    for bucket in sorted({(int(r[STEP]) - 1) // width for r in rows}):
        mine = [r for r in rows if (int(r[STEP]) - 1) // width == bucket]
        finite = [r for r in mine if math.isfinite(r[TRAIN_LOSS])]
        lo = min(finite, key=lambda r: (r[TRAIN_LOSS], r[STEP])) if finite else None
        hi = min(mine, key=lambda r: (-_high(r[TRAIN_LOSS]), r[STEP]))
        evals = [r for r in mine if r[VAL_ACC] is not None]
        vfinite = [r for r in evals if math.isfinite(r[VAL_LOSS])]
        vlo = min(vfinite, key=lambda r: (r[VAL_LOSS], r[STEP])) if vfinite else None
        vhi = min(evals, key=lambda r: (-_high(r[VAL_LOSS]), r[STEP])) if evals else None
        out[bucket] = (
            len(mine),
            lo and lo[STEP],
            hi[STEP],
            len(evals),
            vlo and vlo[STEP],
            vhi and vhi[STEP],
        )
    return out


def _high(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def _stored(db: Database, run_id: int, width: int) -> dict[int, tuple[Any, ...]]:
    t = MetricRollup
    with db.read() as s:
        found = s.execute(
            select(t.bucket, t.n, t.lo_step, t.hi_step, t.val_n, t.val_lo_step, t.val_hi_step)
            .where(t.run_id == run_id, t.width == width)
            .order_by(t.bucket)
        )
        return {int(r[0]): tuple(r[1:]) for r in found}


def test_rollups_match_brute_force_min_max(db: Database) -> None:
    run_id = _new_run(db)
    _write(db, run_id, 1, 9_000)
    with db.read() as s:
        rows = crud.metric_rows(s, run_id)
        assert len(rows) == 9_000
        assert crud.count_metrics(s, run_id) == 9_000
    for width in rollups.WIDTHS:
        assert _stored(db, run_id, width) == _brute(rows, width), f"width {width}"
    nan_bucket = (NAN_STEPS[0] - 1) // 64
    assert _stored(db, run_id, 64)[nan_bucket][2] == NAN_STEPS[0], "NaN is the bucket's high"


def test_a_forks_rollups_cover_its_own_rows(db: Database) -> None:
    parent = _new_run(db)
    _write(db, parent, 1, 3_000)
    with db.write() as s:
        crud.save_checkpoint(s, parent, 2_000, b"state")
        child = crud.fork_run(s, crud.get_run(s, parent), step=2_500, config={"lr": 0.1})
        assert child is not None and child.parent_step == 2_000
        child_id = child.id
    _write(db, child_id, 2_001, 5_000, seed=1)
    with db.read() as s:
        rows = crud.metric_rows(s, child_id)
        assert [int(r[STEP]) for r in rows] == list(range(1, 5_001))
        assert crud.count_metrics(s, child_id) == 5_000
    own = [r for r in rows if r[STEP] > 2_000]
    for width in rollups.WIDTHS:
        assert _stored(db, child_id, width) == _brute(own, width), f"width {width}"


@pytest.fixture
def long_run(db: Database) -> int:
    run_id = _new_run(db)
    _write(db, run_id, 1, 20_000)
    return run_id


def test_overview_keeps_first_last_spikes_and_nan(db: Database, long_run: int) -> None:
    with db.read() as s:
        rows, exact = crud.metrics_window(s, long_run, max_points=100)
        every = crud.metric_rows(s, long_run)
    steps = [int(r[STEP]) for r in rows]
    assert not exact and len(rows) <= 100
    assert steps == sorted(set(steps))
    assert steps[0] == 1 and steps[-1] == 20_000
    assert set(NAN_STEPS) <= set(steps), "every divergence survives"
    assert SPIKE_STEP in steps
    assert 3_000 in steps, "the non-finite validation loss survives"
    finite = [r for r in every if math.isfinite(r[TRAIN_LOSS])]
    assert min(finite, key=lambda r: r[TRAIN_LOSS])[STEP] in steps, "the lowest loss survives"
    by_step = {int(r[STEP]): r for r in every}
    assert all(repr(r) == repr(by_step[int(r[STEP])]) for r in rows), "whole, unchanged rows"


def test_overview_buckets_hold_their_extremes(db: Database, long_run: int) -> None:
    """Steps 1..16384 with max_points=258: 256 rows of budget, the 327 evaluations are too many
    to keep all, so half of it goes to 64 validation buckets and half to 64 training buckets,
    each of 256 steps; each keeps its true lowest and highest loss."""
    with db.read() as s:
        rows, exact = crud.metrics_window(s, long_run, before=16_385, max_points=258)
        every = crud.metric_rows(s, long_run, before=16_385)
    kept = {int(r[STEP]) for r in rows}
    assert not exact and len(rows) <= 258
    for block in range(64):
        part = [r for r in every if block * 256 < r[STEP] <= (block + 1) * 256]
        finite = [r for r in part if math.isfinite(r[TRAIN_LOSS])]
        assert min(finite, key=lambda r: r[TRAIN_LOSS])[STEP] in kept, f"block {block}"
        assert min(part, key=lambda r: -_high(r[TRAIN_LOSS]))[STEP] in kept, f"block {block}"
        evals = [r for r in part if r[VAL_ACC] is not None]
        vfinite = [r for r in evals if math.isfinite(r[VAL_LOSS])]
        assert min(vfinite, key=lambda r: r[VAL_LOSS])[STEP] in kept, f"block {block}"
        assert min(evals, key=lambda r: -_high(r[VAL_LOSS]))[STEP] in kept, f"block {block}"


def test_overview_is_exact_for_small_ranges(db: Database, long_run: int) -> None:
    with db.read() as s:
        rows, exact = crud.metrics_window(s, long_run, after=5_000, before=6_001, max_points=2000)
        assert exact and [r[STEP] for r in rows] == list(range(5_001, 6_001))
        assert crud.metrics_overview(s, long_run, after=5_000, before=6_001) == rows
        few, exact = crud.metrics_window(s, long_run, after=100, before=108, max_points=8)
        assert exact and len(few) == 7
        none, exact = crud.metrics_window(s, long_run, after=20_000, max_points=8)
        assert none == [] and exact


def test_overview_keeps_every_evaluation_while_they_are_few(db: Database, long_run: int) -> None:
    with db.read() as s:
        rows, exact = crud.metrics_window(s, long_run, after=0, before=5_001, max_points=500)
    evaluated = [int(r[STEP]) for r in rows if r[VAL_ACC] is not None]
    assert not exact and evaluated == list(range(50, 5_001, 50)), "all 100 evaluations"


def test_overview_of_a_fork_spans_its_lineage(db: Database) -> None:
    parent = _new_run(db)
    _write(db, parent, 1, 12_000)
    with db.write() as s:
        crud.save_checkpoint(s, parent, 8_000, b"state")
        child_id = crud.fork_run(s, crud.get_run(s, parent), step=8_000, config={}).id
    rng = random.Random(5)
    rows = [
        {**_row(s, rng), "train_loss": 9.0 if s == 8_500 else 0.01} for s in range(8_001, 16_001)
    ]
    with db.write() as s:
        crud.append_metrics(s, child_id, rows)
    with db.read() as s:
        kept, exact = crud.metrics_window(s, child_id, max_points=200)
        window = crud.metric_rows(s, child_id, after=7_990, before=8_011)
    steps = [int(r[STEP]) for r in kept]
    assert not exact and steps[0] == 1 and steps[-1] == 16_000
    assert NAN_STEPS[1] in steps, "the parent's divergence is part of the fork's history"
    assert 8_500 in steps, "the fork's own spike"
    assert [r[STEP] for r in window] == list(range(7_991, 8_011))
    assert [r[TRAIN_LOSS] for r in window[10:]] == [0.01] * 10, "the fork's own rows after 8000"


def test_overview_stays_within_any_budget(db: Database, long_run: int) -> None:
    with db.read() as s:
        for budget in (8, 9, 20, 101, 1999):
            for after, before in ((0, None), (3, 19_990), (64, 8_193)):
                rows, exact = crud.metrics_window(
                    s, long_run, after=after, before=before, max_points=budget
                )
                steps = [int(r[STEP]) for r in rows]
                assert not exact and len(rows) <= budget, (budget, after, before)
                end = 20_000 if before is None else before - 1
                assert steps[0] == after + 1 and steps[-1] == end
