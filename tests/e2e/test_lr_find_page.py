"""The learning-rate range test in the browser: the button on a training run opens the range
test's page, whose plot appears with the suggested rate marked, and "apply" sends the parent an
ordinary set_lr (an event that applies at its next step). Every wait is on observable state."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import post_json

Api = Callable[[str], Any]


def test_find_a_learning_rate_and_apply_it(browser_page: Page, server_url: str, api: Api) -> None:
    page = browser_page
    config = {"max_steps": 200_000, "eval_every": 100, "hidden": [32]}
    run = post_json(server_url, "/api/runs", {"name": "needs a rate", "config": config, "pace": 50})
    page.goto(f"{server_url}/runs/{run['id']}")
    page.wait_for_function("Number(document.getElementById('step-counter').textContent) >= 20")

    page.click("#lr-find-button")  # "pause this run" is ticked: the one worker moves over
    parent_url = f"{server_url}/runs/{run['id']}"
    page.wait_for_url(lambda url: re.search(r"/runs/\d+$", url) is not None and url != parent_url)
    child = int(page.url.rsplit("/", 1)[1])
    assert child != run["id"]
    assert api(f"/api/runs/{child}")["parent_id"] == run["id"]

    # Queued until the paused parent hands the worker over, then seconds of training.
    expect(page.locator("#lr-find-plot")).to_be_visible(timeout=60_000)
    expect(page.locator("#lr-find-marker")).to_be_attached(timeout=60_000)
    expect(page.locator("#lr-find-plot polyline")).to_have_count(1)
    ended = api(f"/api/runs/{child}")
    assert ended["status"] == "finished" and ended["suggested_lr"] is not None
    button = page.locator("#lr-find-apply-button")
    expect(button).to_contain_text(f"to run #{run['id']}")
    sent = float(page.locator("#lr-find-apply input[name=lr]").get_attribute("value") or "nan")
    assert sent == float(f"{ended['suggested_lr']:.2g}")

    button.click()
    expect(page.locator("#lr-find-messages")).to_contain_text(f"sent to run #{run['id']}")
    set_lr = [e for e in api(f"/api/runs/{run['id']}/events") if e["type"] == "set_lr"]
    assert [e["lr"] for e in set_lr] == [sent]

    # The parent was paused for the test: resumed, its next step trains at that rate.
    post_json(server_url, f"/api/runs/{run['id']}/commands", {"type": "resume"})
    page.goto(f"{server_url}/runs/{run['id']}")
    # The event log (pushed by the stream) says when it applied.
    expect(page.locator("#event-log li[data-type=set_lr].applied")).to_have_count(1, timeout=30_000)
    applied = next(e for e in api(f"/api/runs/{run['id']}/events") if e["type"] == "set_lr")
    assert applied["state"] == "applied" and applied["step"] is not None
    page.wait_for_function(
        "s => Number(document.getElementById('step-counter').textContent) > s",
        arg=applied["step"],
    )
    rows = api(f"/api/runs/{run['id']}/metrics?after={applied['step']}")
    assert rows["lr"][0] == sent, "the next step trains at the applied rate"
    post_json(server_url, f"/api/runs/{run['id']}/commands", {"type": "stop"})
