"""A 1M-step run's page opens: it shows the whole range from an overview (never every row), the
browser's JS heap stays modest, and zooming in fetches the exact rows of the visible range.

The run is written straight into a fresh database through ``crud.append_metrics`` in big batches
(a worker would take minutes), then a server without workers opens it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from app import crud
from app.db import Database
from app.settings import Settings
from tests.e2e.conftest import serve

STEPS = 1_000_000
BATCH = 50_000
JS_HEAP_LIMIT = 100 * 2**20


def _rows(first: int, last: int) -> list[dict[str, float | int | None]]:
    """A decaying loss with an evaluation every 1000 steps and a spike at step 1."""
    rows: list[dict[str, float | int | None]] = []
    for step in range(first, last + 1):
        loss = 0.1 + 2.2 * math.exp(-step / 150_000) + 0.05 * ((step * 7919) % 97) / 97
        if step == 1:
            loss = 40.0
        evaluated = step % 1000 == 0
        rows.append({
            "step": step, "time": 1.7e9 + step / 2000, "epoch": step / 50, "lr": 1e-3,
            "train_loss": loss, "train_acc": min(1.0, 1.1 - loss / 2.5),
            "val_loss": loss * 1.1 if evaluated else None,
            "val_acc": min(1.0, 1.05 - loss / 2.5) if evaluated else None,
        })  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(server URL, run id) of a finished 1M-step run on a server with no workers."""
    data_dir: Path = tmp_path_factory.mktemp("long-run")
    db = Database(Settings(data_dir=data_dir).database_url)
    db.create_all()
    with db.write() as s:
        config = {"dataset": "digits", "hidden": [32], "max_steps": STEPS}
        run_id = crud.create_run(s, config=config, name="a million steps", status="running").id
    for first in range(1, STEPS + 1, BATCH):
        with db.write() as s:
            crud.append_metrics(s, run_id, _rows(first, first + BATCH - 1))
    with db.write() as s:
        crud.update_run(s, run_id, status="finished", total_steps=STEPS)
    db.dispose()
    with serve(data_dir, "--workers", "0") as url:
        yield url, run_id


def test_million_step_run_opens(chromium: Browser, long_run: tuple[str, int]) -> None:
    url, run_id = long_run
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(60_000)  # generous: a busy CI machine, not a speed check
    try:
        page.goto(f"{url}/runs/{run_id}")
        page.wait_for_function("window.pandamode.data.step.at(-1) === 1000000")
        held = page.evaluate("window.pandamode.data.step.length")
        assert held < 20_000, f"the page holds {held} rows of a 1M-step run"
        assert page.evaluate("window.pandamode.data.step[0]") == 1
        page.wait_for_function("window.pandamode.charts.loss.scales.x.max >= 1000000")
        assert page.evaluate("window.pandamode.charts.loss.scales.x.min") <= 1
        # Ignoring outliers (the default), the spike at step 1 does not set the y range.
        y_max = page.evaluate("window.pandamode.charts.loss.scales.y.max")
        assert y_max < 10

        cdp = context.new_cdp_session(page)
        cdp.send("HeapProfiler.collectGarbage")
        cdp.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        assert metrics["JSHeapUsedSize"] < JS_HEAP_LIMIT, metrics["JSHeapUsedSize"]

        # Drag over a narrow range (4 px, about 3300 steps): the exact rows of that range.
        over = page.locator("#chart-loss .u-over")
        box = over.bounding_box()
        assert box is not None
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.5, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5 + 4, y, steps=4)
        page.mouse.up()
        page.wait_for_function("window.pandamode.state.zoom !== null")
        steps = page.evaluate("window.pandamode.state.zoom.set.cols.step")
        assert 1000 < len(steps) < 5000
        assert steps == list(range(steps[0], steps[0] + len(steps))), "exact rows, no gaps"
        assert 400_000 < steps[0] < 600_000
        # Double-click: the whole run again.
        over.dblclick()
        page.wait_for_function("window.pandamode.state.zoom === null")
        page.wait_for_function("window.pandamode.charts.loss.scales.x.max >= 1000000")
    finally:
        context.close()
    assert not errors, errors
