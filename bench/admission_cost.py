"""What checking a config at creation costs (app/admission.py): data inspection + memory estimate.

A built-in dataset is checked from its config alone; a CSV up to 4 MiB is read and prepared in
full (every error found); a bigger one only from its header, first 1000 rows and a line count,
so the check stays cheap however big the file is. Prints the best of ``--repeats`` timings.

Usage: ``.venv/bin/python bench/admission_cost.py [--big-mib 100] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.admission import check_runnable  # noqa: E402
from engine import RunConfig  # noqa: E402


def _csv(path: Path, mib: float, features: int = 20) -> Path:
    rng = np.random.default_rng(0)
    block = rng.standard_normal((2000, features))
    rows = (",".join(f"{v:.5f}" for v in row) + f",{i % 3}\n" for i, row in enumerate(block))
    lines = "".join(rows)
    with path.open("w") as f:
        f.write(",".join(f"f{i}" for i in range(features)) + ",label\n")
        while f.tell() < mib * 2**20:
            f.write(lines)
    return path


def _best(cfg: RunConfig, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        check_runnable(cfg, None)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big-mib", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "digits (built-in)": RunConfig(),
            "spirals 1e6 samples": RunConfig(dataset="spirals", n_samples=1_000_000),
            "CSV 4 MiB (exact)": RunConfig(dataset=str(_csv(Path(tmp) / "s.csv", 3.9))),
            f"CSV {args.big_mib:g} MiB (peek)": RunConfig(
                dataset=str(_csv(Path(tmp) / "b.csv", args.big_mib))
            ),
        }
        for name, cfg in cases.items():
            print(f"{name:>24}: {_best(cfg, args.repeats) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
