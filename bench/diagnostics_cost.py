"""What per-layer health costs a training run: steps/s with it at the default interval vs off.

Two measurements, each on digits (the default config) and spirals (the default config on the
spirals dataset), runs alternating (on, off, on, off...) so a busy machine slows both alike, and
the best of ``--repeats`` runs of each compared:

- the worker: its own ``RunSession`` trains in this process on a temporary SQLite database (BLAS
  pinned as a worker pins it), so the figure includes storing the ``layer_health`` rows; steps/s
  come from the metric rows' own timestamps. ``health_every`` is the only difference.
- the engine alone: the ``Trainer`` loop the worker drives, ``step(health=...)`` every
  ``health_every`` steps vs never, timed with ``perf_counter``.

The target (issue 8) is at most 3% slower. Usage:
``.venv/bin/python bench/diagnostics_cost.py [--steps 3000] [--repeats 5] [--every N]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app import crud  # noqa: E402
from app.db import Database  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.worker.session import RunSession  # noqa: E402
from engine import RunConfig, Trainer  # noqa: E402

TARGET = 3.0
"""Percent of steps/s the diagnostics may cost."""
DATASETS = ("digits", "spirals")


def worker_steps_per_second(config: dict[str, Any]) -> float:
    """Steps/s of one run trained by the worker's RunSession to its end (temporary database)."""
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir), workers=0)
        db = Database(settings.database_url, wal=settings.sqlite_wal)
        db.create_all()
        with db.write() as s:
            run_id = crud.create_run(
                s,
                config=config,
                status="running",
                worker_id="bench",
                lease_until=crud.now() + settings.lease_seconds,
            ).id
        with threadpool_limits(limits=settings.blas_threads):
            outcome = RunSession(db, settings, "bench", run_id, allow_release=False).run()
        assert outcome == "finished", outcome
        with db.read() as s:
            rows = crud.metric_rows(s, run_id)
        db.dispose()
    times = [r[1] for r in rows]
    return (len(times) - 1) / (times[-1] - times[0])


def engine_steps_per_second(config: dict[str, Any], blas_threads: int = 1) -> float:
    """Steps/s of the bare Trainer loop, measuring every ``health_every`` steps (0: never)."""
    trainer = Trainer(RunConfig(**config))
    every = trainer.cfg.health_every
    with threadpool_limits(limits=blas_threads):
        trainer.step()  # buffers allocated, caches warm
        start, first = time.perf_counter(), trainer.step_count
        while not trainer.finished:
            trainer.step(health=every > 0 and (trainer.step_count + 1) % every == 0)
        elapsed = time.perf_counter() - start
    return (trainer.step_count - first) / elapsed


def compare(
    measure: Any, config: dict[str, Any], every: int, repeats: int
) -> tuple[float, float, float]:
    """(best steps/s off, best on, cost in percent), runs alternating on and off."""
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for on in (True, False):
            rates[on].append(measure({**config, "health_every": every if on else 0}))
    best_on, best_off = max(rates[True]), max(rates[False])
    return best_off, best_on, 100.0 * (1.0 - best_on / best_off)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each kind")
    parser.add_argument(
        "--every", type=int, default=RunConfig().health_every, help="health_every when on"
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    args = parser.parse_args()
    print(
        f"steps/s with per-layer health every {args.every} steps vs off, best of "
        f"{args.repeats} alternating runs of {args.steps} steps (target: at most {TARGET:g}% "
        "slower), one run of bench/diagnostics_cost.py:"
    )
    for label, measure in (
        ("worker", worker_steps_per_second),
        ("engine", engine_steps_per_second),
    ):
        for dataset in args.datasets:
            config = RunConfig(dataset=dataset, max_steps=args.steps).model_dump(mode="json")
            off, on, cost = compare(measure, config, args.every, args.repeats)
            verdict = "ok" if cost <= TARGET else "OVER"
            print(
                f"  {label:6s} {dataset:8s} off {off:7.0f}  on {on:7.0f}  "
                f"cost {cost:+5.1f}%  {verdict}"
            )


if __name__ == "__main__":
    main()
