"""The run page's Layer health panel in a real browser: its charts and values appear and change
while the run trains, pushed through the page's one EventSource (no polling of its own)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import post_json, serve

SHOTS = os.environ.get("PANDAMODE_SHOTS")
"""A directory to save the panel's screenshot in (for looking at it), when set."""


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of this module's own: its single worker trains only this run."""
    with serve(tmp_path_factory.mktemp("health-data")) as server_url:
        yield server_url


def test_the_health_panel_shows_values_that_change_while_the_run_trains(
    browser_page: Page, url: str, tmp_path: Path
) -> None:
    config = {"dataset": "spirals", "max_steps": 100_000, "health_every": 5, "hidden": [32, 32]}
    run = post_json(url, "/api/runs", {"name": "e2e health", "config": config, "pace": 50})
    page = browser_page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{url}/runs/{run['id']}")
    step = page.locator("#health-step")
    expect(step).to_be_visible(timeout=30_000)
    for key in ("grad-norm", "update-ratio", "act-std", "dead-frac", "bn-shift"):
        expect(page.locator(f"#health-{key} polyline.layer-line")).not_to_have_count(0)
        expect(page.locator(f"#health-{key} rect.band")).to_have_count(1)
    expect(page.locator("#health-latest tbody tr")).to_have_count(3)
    first_step = int(step.inner_text())
    first_values = page.locator("#health-latest tbody").inner_text()
    # A later push shows a later step with other values, without the page asking for it.
    page.wait_for_function(
        "s => Number(document.getElementById('health-step')?.textContent) > s",
        arg=first_step,
        timeout=30_000,
    )
    assert page.locator("#health-latest tbody").inner_text() != first_values
    assert sum("/_health" in r for r in requests) == 1, "loaded once, then pushed"
    if SHOTS:
        page.locator("#health-panel").screenshot(path=str(Path(SHOTS) / "health-panel.png"))
    post_json(url, f"/api/runs/{run['id']}/commands", {"type": "stop"})
