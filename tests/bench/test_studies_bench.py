"""bench/studies.py runs end to end, tiny (2 trials of 20 steps on 1 and 2 workers), and prints
every figure: trials per minute for each, the speedup with the load average, the best trial's
and the default run's validation accuracy. It checks the script, not the speed: the figures
come from running it in full (docs/studies.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_runs_tiny_and_prints_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, "bench/studies.py", "--trials", "2", "--steps", "20", "--workers", "1,2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "study: 2 trials x 20 steps on digits" in out
    for workers in (1, 2):
        line = rf"{workers} worker\(s\): 2 trials in [\d.]+ s = [\d.]+ trials/min \(2 complete; "
        assert re.search(line + r"load average [\d.]+ before, [\d.]+ after\)", out), out
    assert re.search(r"speedup 2 workers over 1: [\d.]+x", out), out
    assert re.search(r"best trial \(lowest val loss\): #\d+ \(lr [^)]*\): val acc 0\.\d+", out)
    assert re.search(r"default config, 20 steps: val acc 0\.\d+", out), out
