"""bench/run_page.py runs end to end on a short run and prints every figure it promises (this
checks the script, not the speed: the figures come from running it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_bench_prints_draw_time_heap_and_zoom(tmp_path: Path) -> None:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("no /usr/bin/chromium")
    args = ["--steps", "20000", "--data-dir", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "bench/run_page.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"whole run drawn [\d.]+ s after navigation; [\d,]+ rows held", out), out
    assert re.search(r"JS heap once drawn: [\d.]+ MB", out), out
    assert re.search(r"zoom to [\d,]+ rows \(exact\) in 1 drag\(s\): [\d.]+ s", out), out
