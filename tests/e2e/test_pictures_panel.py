"""The run page's Pictures panel in a real browser: decision regions of a spirals run that
change as it trains, the confusion matrix of a digits run, the weights download links."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import post_json, serve

SHOTS = os.environ.get("PANDAMODE_SHOTS")
"""A directory to save the panel's screenshots in (for looking at them), when set."""


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of this module's own: its single worker trains only these runs."""
    with serve(tmp_path_factory.mktemp("pictures-data")) as server_url:
        yield server_url


def _shot(page: Page, name: str, tmp_path: Path) -> None:
    folder = Path(SHOTS) if SHOTS else tmp_path
    page.screenshot(path=str(folder / name), full_page=True)


def test_spirals_regions_render_and_change_as_it_trains(
    browser_page: Page, url: str, tmp_path: Path
) -> None:
    config = {"dataset": "spirals", "max_steps": 100_000, "eval_every": 25, "lr": 0.003}
    run = post_json(url, "/api/runs", {"name": "e2e spirals", "config": config, "pace": 100})
    page = browser_page
    page.goto(f"{url}/runs/{run['id']}")
    image = page.locator("#regions-image")
    expect(image).to_be_visible(timeout=30_000)
    page.wait_for_function(
        "() => { const i = document.getElementById('regions-image');"
        " return i && i.complete && i.naturalWidth === 360; }"
    )
    first = image.get_attribute("src")
    # The panel asks again every few seconds; a later picture is of a later step.
    page.wait_for_function(
        "src => { const i = document.getElementById('regions-image');"
        " return i && i.getAttribute('src') !== src && i.complete && i.naturalWidth === 360; }",
        arg=first,
        timeout=30_000,
    )
    second = image.get_attribute("src")
    assert first and second
    assert int(second.rsplit("=", 1)[1]) > int(first.rsplit("=", 1)[1])
    expect(page.locator("#confusion-matrix tbody tr")).to_have_count(3)
    expect(page.locator("a.weights").first).to_contain_text("latest")
    _shot(page, "pictures-spirals.png", tmp_path)
    post_json(url, f"/api/runs/{run['id']}/commands", {"type": "stop"})


def test_digits_confusion_matrix_renders(browser_page: Page, url: str, tmp_path: Path) -> None:
    config = {"dataset": "digits", "max_steps": 150, "eval_every": 50}
    run = post_json(url, "/api/runs", {"name": "e2e digits", "config": config})
    page = browser_page
    page.goto(f"{url}/runs/{run['id']}")
    table = page.locator("#confusion-matrix")
    expect(table).to_have_attribute("data-step", "150", timeout=60_000)
    expect(table.locator("tbody tr")).to_have_count(10)
    counts = [int(t) for t in table.locator("td").all_inner_texts()]
    assert len(counts) == 100 and sum(counts) == 360  # the validation split of digits
    expect(page.locator("#regions-image")).to_have_count(0)
    # Pushed by the stream, never polled.
    expect(page.locator("#pictures-live")).not_to_have_attribute("hx-trigger", "every 3s")
    link = page.locator("a.weights").first
    expect(link).to_have_attribute("href", f"/api/runs/{run['id']}/checkpoints/150/weights.npz")
    _shot(page, "pictures-digits.png", tmp_path)
