"""The checks a careful person makes first, in the browser: a new run's event log shows its
initial-loss check, and "overfit 20 examples" opens the check's run, whose page says it reached
100% training accuracy. Every wait is on observable state."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import get_json, post_json, serve

SHOTS = os.environ.get("PANDAMODE_SHOTS")
"""A directory to save the screenshots in (for looking at them), when set."""


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of this module's own: its single worker trains only these runs."""
    with serve(tmp_path_factory.mktemp("checks-data")) as server_url:
        yield server_url


def _shot(page: Page, name: str, tmp_path: Path) -> None:
    folder = Path(SHOTS) if SHOTS else tmp_path
    page.screenshot(path=str(folder / name), full_page=True)


def test_initial_loss_in_the_event_log_and_the_overfit_check_reaches_100(
    browser_page: Page, url: str, tmp_path: Path
) -> None:
    page = browser_page
    config = {"dataset": "spirals", "hidden": [32, 32], "max_steps": 200_000, "eval_every": 50}
    run = post_json(url, "/api/runs", {"name": "spirals 32-32", "config": config, "pace": 50})
    page.goto(f"{url}/runs/{run['id']}")
    page.wait_for_function("Number(document.getElementById('step-counter').textContent) >= 5")
    event = page.locator("#event-log li[data-type=initial_loss]")
    expect(event).to_have_count(1)
    expect(event).to_have_attribute("data-step", "0")
    expect(event).to_contain_text("expected ln 3 = 1.10: as expected for a fresh network")
    _shot(page, "checks-initial-loss.png", tmp_path)

    page.click("#overfit-button")  # "pause this run" is ticked: the one worker moves over
    parent_url = f"{url}/runs/{run['id']}"
    page.wait_for_url(lambda u: re.search(r"/runs/\d+$", u) is not None and u != parent_url)
    child = int(page.url.rsplit("/", 1)[1])
    assert get_json(url, f"/api/runs/{child}")["parent_id"] == run["id"]

    verdict = page.locator("#overfit-verdict")
    expect(verdict).to_contain_text(
        "reached 100% training accuracy on 20 examples at step", timeout=60_000
    )
    expect(verdict).to_contain_text("the model can learn")
    result = get_json(url, f"/api/runs/{child}/overfit-check")
    assert result["passed"] is True
    expect(verdict).to_contain_text(f"at step {result['reached_at']}")
    expect(page.locator("#overfit-button")).to_have_count(0)
    _shot(page, "checks-overfit.png", tmp_path)
