"""What per-layer health costs a training run: steps/s with it at the default interval vs off.

Two measurements, each on digits (the default config) and spirals (the default config on the
spirals dataset), built so that load from other jobs on a shared machine cancels:

- the worker: its own ``RunSession`` trains in this process on a temporary SQLite database (BLAS
  pinned as a worker pins it), so the figure includes storing the ``layer_health`` rows; steps/s
  come from the metric rows' own timestamps; ``health_every`` is the only difference. Runs go in
  pairs (on then off, then off then on...); the cost is the median over pairs of 1 - on/off.
- the worker again, one run with health on, timing the health code itself (the snapshot and
  measurement in the step, the rows made and inserted): its share of the run's time, a figure
  that load changing between runs cannot swing.
- the engine alone: the ``Trainer`` loop the worker drives, two trainers of the same run (one
  measuring every ``health_every`` steps, one never) timed in alternating blocks of steps; the
  cost is the median over rounds.

Steps/s printed are the best of each kind. The target (issue 8) is at most 3% slower. Usage:
``.venv/bin/python bench/diagnostics_cost.py [--steps 3000] [--repeats 6] [--every N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # also when loaded by path (tests/bench)

from worker_run import worker_run  # noqa: E402

from app.crud import health as crud_health  # noqa: E402
from engine import RunConfig, Trainer  # noqa: E402
from engine import trainer as trainer_module  # noqa: E402

TARGET = 3.0
"""Percent of steps/s the diagnostics may cost."""
DATASETS = ("digits", "spirals")


def worker_steps_per_second(config: dict[str, Any]) -> float:
    """Steps/s of one run trained by the worker's RunSession to its end (temporary database)."""
    steps, seconds = worker_run(config)
    return steps / seconds


def worker_seconds(config: dict[str, Any]) -> float:
    """Seconds from the first step's row to the last of one worker run."""
    return worker_run(config)[1]


class Figures(NamedTuple):
    """Steps/s off and on (the best of each) and the cost in percent (median of the rounds)."""

    off: float
    on: float
    cost: float


@contextmanager
def _timed(owners: list[tuple[Any, str]], spent: list[float]) -> Iterator[None]:
    """Wrap each ``owner.name`` function so the time spent in it is added to ``spent[0]``."""
    originals = [(owner, name, getattr(owner, name)) for owner, name in owners]

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        return timed

    for owner, name, fn in originals:
        setattr(owner, name, wrap(fn))
    try:
        yield
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)


def attributed_cost(config: dict[str, Any], every: int) -> float:
    """Percent of one worker run's time spent in the health code itself (snapshot and measure
    in the step, the rows made and inserted): immune to load that changes between runs."""
    spent = [0.0]
    owners = [
        (trainer_module, "snapshot"),
        (trainer_module, "measure"),
        (crud_health, "to_rows"),
        (crud_health, "append_health"),
    ]
    with _timed(owners, spent):
        wall = worker_seconds({**config, "health_every": every})
    return 100.0 * spent[0] / (wall - spent[0])


def worker_cost(config: dict[str, Any], every: int, repeats: int) -> Figures:
    """Whole worker runs in pairs (on then off, off then on, ...): the cost is the median over
    pairs of 1 - on/off, so load that spans a pair cancels; steps/s are the best of each."""
    on_rates, off_rates, costs = [], [], []
    for i in range(repeats):
        pair = {}
        for on in (True, False) if i % 2 == 0 else (False, True):
            pair[on] = worker_steps_per_second({**config, "health_every": every if on else 0})
        on_rates.append(pair[True])
        off_rates.append(pair[False])
        costs.append(100.0 * (1.0 - pair[True] / pair[False]))
    return Figures(max(off_rates), max(on_rates), statistics.median(costs))


def engine_cost(
    config: dict[str, Any], every: int, rounds: int, block: int, blas_threads: int = 1
) -> Figures:
    """The bare Trainer loop the worker drives: two trainers of the same run, one measuring
    every ``every`` steps and one never, timed in alternating blocks of ``block`` steps; the
    cost is the median over rounds of 1 - (steps/s on) / (steps/s off)."""
    cfg = RunConfig(**{**config, "max_steps": rounds * block + 10})
    trainers = {True: Trainer(cfg), False: Trainer(cfg)}
    times: dict[bool, list[float]] = {True: [], False: []}
    with threadpool_limits(limits=blas_threads):
        for trainer in trainers.values():
            trainer.step()  # buffers allocated, caches warm
        for r in range(rounds):
            for on in (True, False) if r % 2 == 0 else (False, True):
                trainer = trainers[on]
                start = time.perf_counter()
                for _ in range(block):
                    due = on and every > 0 and (trainer.step_count + 1) % every == 0
                    trainer.step(health=due)
                times[on].append(time.perf_counter() - start)
    costs = [100.0 * (1.0 - off / on) for on, off in zip(times[True], times[False], strict=True)]
    return Figures(block / min(times[False]), block / min(times[True]), statistics.median(costs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="steps per run")
    parser.add_argument("--repeats", type=int, default=6, help="worker run pairs")
    parser.add_argument(
        "--every", type=int, default=RunConfig().health_every, help="health_every when on"
    )
    parser.add_argument("--rounds", type=int, default=40, help="engine: rounds of blocks")
    parser.add_argument("--block", type=int, default=200, help="engine: steps per block")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    args = parser.parse_args()
    print(
        f"steps/s with per-layer health every {args.every} steps vs off (best of each); cost: "
        f"median over {args.repeats} worker run pairs of {args.steps} steps, over {args.rounds} "
        f"engine rounds of {args.block}-step blocks (target: at most {TARGET:g}%); one run of "
        "bench/diagnostics_cost.py:"
    )
    for dataset in args.datasets:
        config = RunConfig(dataset=dataset).model_dump(mode="json")
        figures = {
            "worker": worker_cost({**config, "max_steps": args.steps}, args.every, args.repeats),
            "engine": engine_cost(config, args.every, args.rounds, args.block),
        }
        attributed = attributed_cost({**config, "max_steps": args.steps}, args.every)
        for label, f in figures.items():
            verdict = "ok" if f.cost <= TARGET else "OVER"
            print(
                f"  {label:6s} {dataset:8s} off {f.off:7.0f}  on {f.on:7.0f}  "
                f"cost {f.cost:+5.1f}%  {verdict}"
            )
        print(f"  worker {dataset:8s} time spent in the health code itself: {attributed:.1f}%")


if __name__ == "__main__":
    main()
