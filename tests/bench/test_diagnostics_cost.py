"""bench/diagnostics_cost.py runs end to end on tiny runs and prints its figures (this checks
the script, not the speed: the figures come from running it)."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from app.crud import health as crud_health
from engine import health, trainer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "diagnostics_cost.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_diagnostics_cost", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_worker_and_the_engine_loop_train_with_and_without_health() -> None:
    bench = _bench()
    config = {"dataset": "spirals", "max_steps": 60, "eval_every": 20, "hidden": [8]}
    for figures in (
        bench.worker_cost(config, every=5, repeats=2),
        bench.engine_cost(config, every=5, rounds=2, block=10),
    ):
        assert figures.off > 0 and figures.on > 0 and math.isfinite(figures.cost)


def test_the_script_prints_the_slowdown_of_each_dataset() -> None:
    tiny = ["--steps", "40", "--repeats", "1", "--every", "5", "--rounds", "2", "--block", "10"]
    out = subprocess.run(
        [sys.executable, str(SCRIPT), *tiny],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    lines = [line for line in out.splitlines() if line.split()[:1] in (["worker"], ["engine"])]
    costs = [line for line in lines if " cost " in line]
    assert len(costs) == 4, out  # worker and engine, digits and spirals
    assert all("%" in line and ("ok" in line or "OVER" in line) for line in costs)
    assert sum("health code itself" in line for line in lines) == 2, out


def test_the_time_in_the_health_code_is_attributed_and_the_code_restored() -> None:
    bench = _bench()
    config = {"dataset": "spirals", "max_steps": 60, "eval_every": 20, "hidden": [8]}
    assert bench.attributed_cost(config, every=5) > 0
    assert bench.attributed_cost(config, every=0) >= 0
    assert trainer.measure is health.measure and crud_health.to_rows.__name__ == "to_rows"
