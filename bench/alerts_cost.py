"""What watching a run for alerts costs: the Watch's time per step against a training step's.

Trains the default config (``--steps`` steps, health every 10 as the default asks) and records
its losses, health samples and evaluations; then feeds them to ``app.worker.watch.Watch`` with
every autopilot policy on, ``--repeats`` times, and prints the best time per step of the watch
beside the best time per training step (BLAS pinned to one thread, as the worker runs). The
watch runs in the worker between steps, so its share of a step is its cost in steps/s.

Usage: ``.venv/bin/python bench/alerts_cost.py [--steps 2000] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.worker.watch import POLICIES, Watch  # noqa: E402
from engine import RunConfig, Trainer  # noqa: E402


def record(steps: int) -> tuple[list[Any], list[tuple[int, float, float]], float]:
    """The run's step records, its evaluations, and the best seconds per training step."""
    trainer = Trainer(RunConfig(max_steps=steps))
    every, recs, evals, best = trainer.cfg.health_every, [], [], float("inf")
    while not trainer.finished:
        health = bool(every) and (trainer.step_count + 1) % every == 0
        start = time.perf_counter()
        rec = trainer.step(health=health)
        best = min(best, time.perf_counter() - start) if not health else best
        recs.append(rec)
        if rec.step % trainer.cfg.eval_every == 0:
            ev, tr = trainer.evaluate(), trainer.evaluate_train()
            evals.append((rec.step, ev["loss"], tr["loss"]))
    return recs, evals, best


def feed(recs: list[Any], evals: list[tuple[int, float, float]]) -> float:
    """Seconds to feed the whole run to a Watch with every policy on."""
    watch = Watch()
    for policy in POLICIES:
        watch.switch(policy, True)
    at = {step: (val, train) for step, val, train in evals}
    start = time.perf_counter()
    for rec in recs:
        watch.step(rec.step, rec.loss, rec.health)
        if rec.step in at:
            watch.evaluated(rec.step, at[rec.step][0], at[rec.step][1], rec.lr)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with threadpool_limits(limits=1):
        recs, evals, step_s = record(args.steps)
    watch_s = min(feed(recs, evals) for _ in range(args.repeats)) / len(recs)
    print(f"default config, {len(recs)} steps, {len(evals)} evaluations")
    print(f"training step (fastest, no health): {step_s * 1e6:8.1f} us")
    print(f"watch per step (all policies on):   {watch_s * 1e6:8.1f} us")
    print(f"watch / step: {watch_s / step_s:.2%}")


if __name__ == "__main__":
    main()
