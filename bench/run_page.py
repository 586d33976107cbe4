"""What the run page costs with a long run: opening it, holding it, zooming into it.

Synthetic finished runs (``bench/long_runs.py``'s ``synthetic_rows``: a decaying noisy loss, an
evaluation every 100 steps, a few NaN and spikes) are written through ``crud.append_metrics`` in
batches of 50,000 rows (faster to build than the worker's 100-row flushes; the stored rows and
rollups are the same), into a data directory that ``pandamode serve`` (no workers) then serves.
Headless Chromium opens ``/runs/{id}`` at 1280x900. Printed, from one run of this script, per run:

- the time from navigation until the loss chart holds the whole run (its x range reaches the
  last step), and the rows the page holds for it (an overview, never every row);
- the browser's JS heap then (after a garbage collection);
- the time from dragging over about 4,000 steps until the exact rows of that range are held
  (two drags on a 10M-step run: the first range is wider than 5,000 rows, an overview again).

Usage: ``.venv/bin/python bench/run_page.py [--steps 1000000 10000000] [--data-dir DIR]
[--screenshot PNG]``; a DIR that already holds the runs (a previous ``--data-dir``) is reused.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from long_runs import CONFIG, synthetic_rows  # noqa: E402
from served import Served, launch_chromium  # noqa: E402

from app import crud  # noqa: E402
from app.db import Database  # noqa: E402
from app.settings import Settings  # noqa: E402

BATCH = 50_000


def run_of(db: Database, steps: int) -> int:
    """The finished run of ``steps`` steps in this database, built when missing."""
    name = f"run-page-{steps}"
    with db.read() as s:
        found = [r.id for r in crud.list_runs(s) if r.name == name]
    if found:
        return found[0]
    started = time.perf_counter()
    rng = random.Random(0)
    with db.write() as s:
        config = {**CONFIG, "max_steps": steps}
        run_id = crud.create_run(s, config=config, name=name, status="running").id
    for first in range(1, steps + 1, BATCH):
        rows = synthetic_rows(first, min(first + BATCH - 1, steps), total=steps, rng=rng)
        with db.write() as s:
            crud.append_metrics(s, run_id, rows)
    with db.write() as s:
        crud.update_run(s, run_id, status="finished", total_steps=steps)
    print(f"built run {run_id} ({steps:,} steps) in {time.perf_counter() - started:.0f} s")
    return run_id


def measure(page: Page, url: str, steps: int) -> None:
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_function(
        "n => { const c = window.pandamode && window.pandamode.charts.loss;"
        " return c && c.data[0].length > 0 && c.scales.x.max >= n; }",
        arg=steps,
        timeout=120_000,
    )
    drawn = time.perf_counter() - started
    held = page.evaluate("window.pandamode.data.step.length")
    cdp = page.context.new_cdp_session(page)
    cdp.send("HeapProfiler.collectGarbage")
    cdp.send("Performance.enable")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    print(f"  whole run drawn {drawn:.2f} s after navigation; {held:,} rows held")
    print(f"  JS heap once drawn: {metrics['JSHeapUsedSize'] / 2**20:.1f} MB")
    # Drag over about 4,000 steps; a range wider than 5,000 rows comes back as an overview, so
    # a 10M-step run needs a second drag inside the first (as a person would zoom twice).
    over = page.locator("#chart-loss .u-over")
    box = over.bounding_box()
    assert box is not None
    span, drags, started, exact, rows = steps, 0, time.perf_counter(), False, []
    while not exact and drags < 3:
        px = max(3.0, 4000 / span * box["width"])
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.5, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5 + px, y, steps=2)
        page.mouse.up()
        drags += 1
        page.wait_for_function(
            "n => { const z = window.pandamode.state.zoom; return z && z.n !== n; }",
            arg=drags - 1,
            timeout=60_000,
        )
        page.evaluate("n => { window.pandamode.state.zoom.n = n; }", drags)
        rows = page.evaluate("window.pandamode.state.zoom.set.cols.step")
        exact = rows == list(range(rows[0], rows[0] + len(rows)))
        span = rows[-1] - rows[0] + 1
    kind = "exact" if exact else "overview"
    elapsed = time.perf_counter() - started
    print(f"  zoom to {len(rows):,} rows ({kind}) in {drags} drag(s): {elapsed:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--screenshot", type=Path, help="PNG of the longest run's page")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="pandamode-run-page-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(Settings(data_dir=data_dir).database_url)
    db.create_all()
    runs = {steps: run_of(db, steps) for steps in args.steps}
    db.dispose()
    with Served(data_dir, "--workers", "0") as server:
        base = server.base
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            for steps, run_id in runs.items():
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                print(f"run page of a {steps:,}-step run:")
                page = context.new_page()
                measure(page, f"{base}/runs/{run_id}", steps)
                if args.screenshot and steps == max(runs):
                    page.dblclick("#chart-loss .u-over")
                    page.wait_for_timeout(500)
                    page.screenshot(path=str(args.screenshot))
                context.close()
            browser.close()
    print(f"data dir: {data_dir}")


if __name__ == "__main__":
    main()
