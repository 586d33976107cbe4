"""The engine/torch benchmark still runs end to end and prints every figure the README quotes
(a few steps only: this checks the script, not the speed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_bench_prints_ratios_gflops_and_the_breakdown() -> None:
    quick = ["--steps", "2", "--warmup", "1", "--threads", "1"]
    result = subprocess.run(
        [sys.executable, "bench/engine_vs_torch.py", *quick],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "threads 1 (BLAS = torch)" in out
    rows = re.findall(r"^(\S+)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+<=", out, re.MULTILINE)
    assert [(name, int(batch)) for name, batch, _ in rows] == [
        ("64-128-128-10", 64),
        ("784-256-256-10", 128),
        ("784-1024-1024-10", 256),
    ]
    assert all(float(ratio) > 0 for *_, ratio in rows)
    assert re.search(r"fraction \d+% \(aim >= 70%\)", out)
    assert re.search(r"matrix products [\d.]+ ms engine, [\d.]+ ms torch; the rest", out)
