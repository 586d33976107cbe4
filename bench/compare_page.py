"""What the compare page costs with long runs: two synthetic runs, drawn on one chart.

The runs are written through crud as the worker does (``bench/long_runs.py``'s ``build_run``),
into a data directory that ``pandamode serve`` (no workers) then serves; headless Chromium opens
``/compare?ids=A,B`` at 1280x900. Printed, from one run of this script:

- the time from navigation until both charts are drawn (compare.js sets ``data-points`` once a
  chart holds its data), and the rows each chart got;
- the bytes of each run's overview (``/metrics?max_points=...`` as compare.js asks for it);
- the browser's JS heap once drawn.

Usage: ``.venv/bin/python bench/compare_page.py [--steps 1000000] [--data-dir DIR]
[--screenshot PNG]``; a DIR
that already holds the two runs (a previous ``--data-dir`` of this script) is reused.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from long_runs import build_run  # noqa: E402
from served import Served, launch_chromium  # noqa: E402

from app.db import Database  # noqa: E402
from app.settings import Settings  # noqa: E402


def runs_of(data_dir: Path, steps: int) -> list[int]:
    """The two runs of ``steps`` steps in this data dir, built when missing."""
    db = Database(Settings(data_dir=data_dir).database_url)
    db.create_all()
    from app import crud

    with db.read() as s:
        found = [r.id for r in crud.list_runs(s) if r.name.startswith(f"compare-{steps}-")]
    for seed in range(len(found), 2):
        started = time.perf_counter()
        found.append(build_run(db, steps, seed=seed, name=f"compare-{steps}-{seed}"))
        print(f"built run {found[-1]}: {steps:,} steps in {time.perf_counter() - started:.0f} s")
    db.dispose()
    return sorted(found)[:2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--screenshot", type=Path, default=None, help="save the page as PNG")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="pandamode-compare-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    ids = runs_of(data_dir, args.steps)
    with Served(data_dir, "--workers", "0") as server:
        url = server.base
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            fetched: list[str] = []
            page.on("request", lambda r: fetched.append(r.url) if "/metrics?" in r.url else None)
            page.goto(f"{url}/compare?ids={ids[0]},{ids[1]}")
            page.wait_for_function(
                "document.querySelectorAll('.chart[data-points]').length === 2", timeout=120_000
            )
            drawn_ms = page.evaluate("performance.now()")
            charts = ("#chart-val-loss", "#chart-val-acc")
            points = [page.get_attribute(chart, "data-points") for chart in charts]
            if args.screenshot:
                page.screenshot(path=str(args.screenshot), full_page=True)
            heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
            browser.close()
        print(f"compare page, 2 runs of {args.steps:,} steps (ids {ids[0]}, {ids[1]}):")
        print(f"  both charts drawn {drawn_ms / 1000:.2f} s after navigation; x points {points}")
        for address in sorted(fetched):  # the same requests again, for their size
            with urllib.request.urlopen(address, timeout=60) as resp:
                size = len(resp.read())
            print(f"  {address.removeprefix(url)}: {size / 1024:.0f} KiB")
        if heap:
            print(f"  JS heap once drawn: {heap / 2**20:.1f} MB")
        print(f"  data dir: {data_dir}")


if __name__ == "__main__":
    main()
