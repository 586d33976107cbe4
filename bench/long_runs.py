"""What a long run costs: writing it, storing it, opening its overview, zooming, forking it.

Synthetic runs (a decaying noisy loss, an evaluation every 100 steps with its validation and
eval-mode training figures, a few NaN and loss spikes)
are written through ``crud.append_metrics`` in batches of 100 rows, one write transaction each,
as the worker's writer does, into a temp SQLite file. Printed, measured in one run:

- write rows/s, and database bytes per 1M stored steps (after a WAL checkpoint);
- ``/metrics?max_points=2000`` (the overview) through crud and through the real HTTP app
  (TestClient), median of several calls; a zoomed range of 5,000 exact rows the same way;
- peak Python memory (tracemalloc) of one overview request through HTTP;
- fork of the first (1M) run through ``POST /api/runs/{id}/fork``: its time, and whether a
  writer flushing 100 rows every 50 ms to another run failed (SQLITE_BUSY) meanwhile.

Usage: ``.venv/bin/python bench/long_runs.py [--steps 1000000 10000000] [--keep DIR]``.
``build_run(db, steps)`` is reusable: ``--keep DIR`` leaves the database there and prints its
path (and the run ids), for a browser figure on top of it.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from app import crud
from app.db import Database
from app.main import create_app
from app.settings import Settings
from engine import RunConfig, Trainer, state_to_bytes

BATCH = 100  # rows per flush, as the worker's writer (~50 ms of a fast run)
EVAL_EVERY = 100
CALLS = 7  # timed calls per figure; the median is printed
CONFIG: dict[str, Any] = {"dataset": "spirals", "n_samples": 200, "hidden": [16], "lr": 0.01}


def checkpoint_blob() -> bytes:
    """A real (tiny) Trainer state: a fork reads its checkpoint to settle its learning rate."""
    return state_to_bytes(Trainer(RunConfig(**CONFIG)).state_dict())


def synthetic_rows(first: int, last: int, *, total: int, rng: random.Random) -> list[dict]:
    """Rows ``first..last`` of a ``total``-step run: decaying noisy loss, evaluations, spikes."""
    rows = []
    for step in range(first, last + 1):
        progress = step / total
        loss = 0.05 + 2.3 * math.exp(-6 * progress) * (1 + 0.2 * rng.random())
        if step % 99_991 == 0:
            loss = math.nan  # a divergence the overview must keep
        elif step % 49_999 == 0:
            loss *= 40  # a spike
        evaluated = step % EVAL_EVERY == 0
        rows.append({
            "step": step,
            "time": 1.7e9 + step / 2000,
            "epoch": step / 50,
            "lr": 0.01 * 0.5 * (1 + math.cos(math.pi * progress)),
            "train_loss": loss,
            "train_acc": rng.randrange(65) / 64,
            "val_loss": loss * 1.1 if evaluated else None,
            "val_acc": 0.5 + 0.4 * progress if evaluated else None,
            "train_eval_loss": loss * 0.9 if evaluated else None,
            "train_eval_acc": 0.55 + 0.4 * progress if evaluated else None,
        })  # fmt: skip
    return rows


def build_run(db: Database, steps: int, *, seed: int = 0, name: str | None = None) -> int:
    """A finished run of ``steps`` steps written through crud in worker-sized flushes."""
    rng = random.Random(seed)
    with db.write() as s:
        run_id = crud.create_run(
            s, config=CONFIG, name=name or f"long-{steps}", status="running"
        ).id
        crud.save_checkpoint(s, run_id, 0, checkpoint_blob())
    for first in range(1, steps + 1, BATCH):
        rows = synthetic_rows(first, min(first + BATCH - 1, steps), total=steps, rng=rng)
        with db.write() as s:
            crud.append_metrics(s, run_id, rows)
    with db.write() as s:
        crud.save_checkpoint(s, run_id, steps, checkpoint_blob())
        crud.update_run(s, run_id, status="finished")
    return run_id


def db_bytes(path: Path, db: Database) -> int:
    """The file's size once the WAL is folded back into it."""
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def median_ms(call: Callable[[], object]) -> float:
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def overview_via_crud(db: Database, run_id: int, **params: Any) -> None:
    with db.read() as s:
        if "max_points" in params:
            rows, _ = crud.metrics_window(s, run_id, **params)
        else:
            rows = crud.metric_rows(s, run_id, **params)
        crud_columns(rows)


def crud_columns(rows: list[tuple]) -> dict[str, list[Any]]:
    from app.series import to_columns

    return to_columns(rows)


def fork_under_load(client: TestClient, db: Database, parent: int, step: int) -> tuple[float, int]:
    """Fork through HTTP while another run flushes 100 rows every 50 ms; (seconds, failures)."""
    with db.write() as s:
        other = crud.create_run(s, config=CONFIG, name="concurrent writer").id
    stop = threading.Event()
    failures = [0]

    def writer() -> None:
        step_no = 1
        rng = random.Random(1)
        while not stop.is_set():
            rows = synthetic_rows(step_no, step_no + BATCH - 1, total=10**6, rng=rng)
            try:
                with db.write() as s:
                    crud.append_metrics(s, other, rows)
                step_no += BATCH
            except OperationalError:
                failures[0] += 1
            time.sleep(0.05)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(0.2)
    start = time.perf_counter()
    response = client.post(f"/api/runs/{parent}/fork", json={"step": step, "name": "fork"})
    elapsed = time.perf_counter() - start
    time.sleep(0.2)
    stop.set()
    thread.join()
    assert response.status_code == 201, response.text
    return elapsed, failures[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--keep", type=Path, help="leave the database in this directory")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="pandamode-long-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "pandamode.db"
    if path.exists():
        raise SystemExit(f"{path} exists already; pick another --keep directory")
    settings = Settings(data_dir=workdir, workers=0)
    db = Database(settings.database_url)
    db.create_all()

    print("bench/long_runs.py, one run:", " ".join(f"--steps {n}" for n in args.steps))
    runs: dict[int, int] = {}
    for steps in args.steps:
        before = db_bytes(path, db)
        start = time.perf_counter()
        runs[steps] = build_run(db, steps)
        elapsed = time.perf_counter() - start
        grown = db_bytes(path, db) - before
        print(f"  run #{runs[steps]}: {steps:,} steps written in {elapsed:.1f} s")
        print(f"    write rate            {steps / elapsed:10,.0f} rows/s (batches of {BATCH})")
        print(f"    database bytes        {grown / steps * 1e6 / 1e6:10.1f} MB per 1M steps")

    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        for steps, run_id in runs.items():
            url = f"/api/runs/{run_id}/metrics"
            body = client.get(url, params={"max_points": 2000}).json()
            assert len(body["step"]) <= 2000 and not body["exact"]
            assert "NaN" in body["train_loss"] or steps < 99_991, "the divergence is kept"
            http = median_ms(lambda u=url: client.get(u, params={"max_points": 2000}))
            via = median_ms(lambda r=run_id: overview_via_crud(db, r, max_points=2000))
            mid = steps // 2
            zoom = {"after": mid, "before": mid + 5001}
            zoomed = client.get(url, params=zoom).json()
            assert len(zoomed["step"]) == 5000 and zoomed["exact"]
            zoom_http = median_ms(lambda u=url, z=zoom: client.get(u, params=z))
            zoom_crud = median_ms(lambda r=run_id, z=zoom: overview_via_crud(db, r, **z))
            tracemalloc.start()
            client.get(url, params={"max_points": 2000})
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"  run #{run_id} ({steps:,} steps), median of {CALLS}:")
            print(f"    overview max_points=2000  HTTP {http:7.1f} ms   crud {via:7.1f} ms")
            print(f"      ({len(body['step'])} rows; peak Python memory {peak / 1e6:.1f} MB)")
            print(
                f"    zoom 5,000 exact rows     HTTP {zoom_http:7.1f} ms   crud {zoom_crud:7.1f} ms"
            )

        first_steps, first_run = next(iter(runs.items()))
        seconds, failures = fork_under_load(client, db, first_run, first_steps)
        print(f"  fork of run #{first_run} ({first_steps:,} steps) at its last step:")
        print(
            f"    POST /fork {seconds * 1e3:.1f} ms; concurrent writer flushes failed: {failures}"
        )

    db.dispose()
    if args.keep:
        ids = ", ".join(f"{steps:,} steps: run #{rid}" for steps, rid in runs.items())
        print(f"database kept: {path} ({ids})")
    else:
        for leftover in workdir.iterdir():
            leftover.unlink()
        os.rmdir(workdir)


if __name__ == "__main__":
    main()
