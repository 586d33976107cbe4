"""bench/pictures_cost.py runs end to end on a short run and leaves the worker as it found it
(this checks the script, not the speed: the figures come from running it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from app.worker import writer
from app.worker.pictures import PictureTaker

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    path = ROOT / "bench" / "pictures_cost.py"
    spec = importlib.util.spec_from_file_location("bench_pictures_cost", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_both_kinds_of_run_train_and_the_worker_is_restored() -> None:
    bench = _bench()
    config = {"dataset": "spirals", "max_steps": 120, "eval_every": 20, "hidden": [8]}
    for pictures in (True, False):
        assert bench.steps_per_second(config, pictures) > 0
        assert writer.PictureTaker is PictureTaker
