"""What measuring the training split in evaluation mode costs the step loop (issue 8).

The worker evaluates every ``eval_every`` steps; at each evaluation it now also runs
``Trainer.evaluate_train()`` (as many training rows as the validation split has). On the default
digits run (BLAS pinned to 1 thread, as the worker runs) this times every step, every
``evaluate()`` and every ``evaluate_train()`` of the loop and prints their medians and what the
extra call adds to the loop's time at the default ``eval_every``. Medians of individual calls,
not end-to-end steps/s: on a shared 2-core machine the latter moves by more than 2% between
two identical runs.

Usage: ``.venv/bin/python bench/train_eval_cost.py [--steps 4000]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from threadpoolctl import threadpool_limits

from engine import RunConfig, Trainer


def timed(call: Callable[[], object], into: list[float]) -> None:
    start = time.perf_counter()
    call()
    into.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    args = parser.parse_args()
    steps: list[float] = []
    val: list[float] = []
    train: list[float] = []
    with threadpool_limits(1):
        t = Trainer(RunConfig(max_steps=args.steps))
        every = t.cfg.eval_every
        while not t.finished:
            timed(t.step, steps)
            if t.step_count % every == 0:
                timed(t.evaluate, val)
                timed(t.evaluate_train, train)
    step, ev, tr = (statistics.median(x) * 1e3 for x in (steps, val, train))
    rows = t.train_eval_rows()
    print(f"default digits run, {args.steps} steps, eval_every {every}, medians:")
    print(f"  {'step':34}{step:7.3f} ms")
    print(f"  {f'evaluate() ({t.data.x_val.shape[0]} val rows)':34}{ev:7.3f} ms")
    print(f"  {f'evaluate_train() ({rows} train rows)':34}{tr:7.3f} ms = {tr / step:.2f} steps")
    print(f"  added to the loop: {100 * tr / (every * step + ev):.1f}% of its time")


if __name__ == "__main__":
    main()
