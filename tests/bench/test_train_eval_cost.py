"""bench/train_eval_cost.py runs end to end on a short run and prints its figures (this checks
the script, not the speed: the figures come from running it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_prints_the_cost_of_the_eval_mode_training_figures() -> None:
    script = ROOT / "bench" / "train_eval_cost.py"
    out = subprocess.run(
        [sys.executable, str(script), "--steps", "120"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "evaluate_train() (360 train rows)" in out
    assert "added to the loop:" in out and "% of its time" in out
