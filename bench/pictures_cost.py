"""What the evaluation pictures cost a training run: steps/s of the worker with and without them.

The worker's own ``RunSession`` trains the default config (max_steps below) in this process on
a temporary SQLite database, once with the pictures (app/worker/pictures.py: the confusion
matrix at every evaluation, a 100x100 decision-regions grid at most every 2 s on a 2-D dataset,
both written with the evaluation's rows) and once with a stand-in that only calls
``trainer.evaluate()`` and writes nothing: the worker as it was before the pictures. Runs
alternate (on, off, on, off...) so a busy machine slows both alike; steps/s come from the rows'
own timestamps, and the best of ``--repeats`` runs of each is compared.

Usage: ``.venv/bin/python bench/pictures_cost.py [--steps 4000] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # also when loaded by path (tests/bench)

from worker_run import worker_run  # noqa: E402

from app.worker import writer as writer_module  # noqa: E402
from app.worker.pictures import PictureTaker  # noqa: E402
from engine import RunConfig, Trainer  # noqa: E402


class NoPictures:
    """The worker before the pictures: a plain evaluation, nothing more written."""

    def evaluate(self, trainer: Trainer) -> dict[str, float]:
        return trainer.evaluate()

    def write(self, session: Any, run_id: int) -> None:
        return None


def steps_per_second(config: dict[str, Any], pictures: bool) -> float:
    writer_module.PictureTaker = PictureTaker if pictures else NoPictures  # type: ignore[misc]
    try:
        return _measure(config)
    finally:
        writer_module.PictureTaker = PictureTaker  # type: ignore[misc]


def _measure(config: dict[str, Any]) -> float:
    steps, seconds = worker_run(config)
    return steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each kind")
    args = parser.parse_args()
    print(f"worker steps/s, best of {args.repeats} alternating runs of {args.steps} steps each")
    print("(default config, eval_every 50), one run of bench/pictures_cost.py:")
    for dataset in ("spirals", "digits"):
        config = RunConfig(dataset=dataset, max_steps=args.steps).model_dump(mode="json")
        rates: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for pictures in (True, False):
                rates[pictures].append(steps_per_second(config, pictures))
        on, off = max(rates[True]), max(rates[False])
        print(
            f"  {dataset:8s} without pictures {off:7.0f}  with {on:7.0f}  "
            f"cost {100 * (1 - on / off):+5.1f}%"
        )


if __name__ == "__main__":
    main()
