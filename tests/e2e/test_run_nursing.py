"""The run page of a person who nurses a model: one honest learning-rate number, the keyboard,
a finished run trained further through a fork. Every wait is on observable state with a timeout."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import post_json

Api = Callable[[str], Any]


def counter_at_least(page: Page, value: int) -> None:
    page.wait_for_function(
        "v => Number(document.getElementById('step-counter').textContent) >= v", arg=value
    )


def stop(page: Page) -> None:
    """Leave the worker free for the next test."""
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#stop")
    expect(page.locator("#status-badge")).to_have_text("stopped")


def test_one_honest_learning_rate(browser_page: Page, server_url: str, api: Api) -> None:
    """On a cosine run: Apply on the untouched field changes nothing; set_lr 0.003 makes the next
    step train at 0.003 (API, chart, header); the message follows the command; the keyboard
    pauses, steps and resumes; the checkpoint before the change is offered as such."""
    page = browser_page
    config = {"max_steps": 200_000, "eval_every": 100, "hidden": [32]}
    run = post_json(server_url, "/api/runs", {"name": "cosine", "config": config, "pace": 50})
    page.goto(f"{server_url}/runs/{run['id']}")
    counter_at_least(page, 20)
    expect(page.locator("#header-lr")).to_contain_text("\u00d7 cosine")

    page.click("#apply-lr")
    expect(page.locator("#command-messages")).to_contain_text("nothing sent")
    assert not [e for e in api(f"/api/runs/{run['id']}/events") if e["type"] == "set_lr"]

    # Space pauses (outside any field), as a media player does.
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press(" ")
    expect(page.locator("#status-badge")).to_have_text("paused")
    paused_at = api(f"/api/runs/{run['id']}")["step"]
    # Typing in a field is typing: a space there does not resume the run.
    page.click("#step-n")
    page.keyboard.press(" ")
    page.wait_for_timeout(300)
    expect(page.locator("#status-badge")).to_have_text("paused")

    page.fill("#lr-input", "0.003")
    page.click("#apply-lr")
    messages = page.locator("#command-messages")
    expect(messages).to_contain_text("set_lr 0.003 sent")
    expect(messages).to_contain_text(f"applied at step {paused_at}")
    expect(page.locator("#header-lr")).to_have_text(re.compile(r"^0\.003 = "))
    expect(page.locator("#lr-input")).to_have_value("0.003")
    # The state before the change is kept, and offered by name in the fork list.
    expect(page.locator("#fork-step option", has_text="before lr 0.003")).to_have_count(1)

    # s runs the step field's count (10) and pauses again.
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("s")
    counter_at_least(page, paused_at + 10)
    rows = api(f"/api/runs/{run['id']}/metrics?after={paused_at}&before={paused_at + 2}")
    assert rows["step"] == [paused_at + 1]
    assert rows["lr"][0] == pytest.approx(0.003, rel=1e-9)
    page.wait_for_function(
        "s => { const d = window.pandamode.data, i = d.step.indexOf(s);"
        " return i >= 0 && Math.abs(d.lr[i] / 0.003 - 1) < 1e-9; }",
        arg=paused_at + 1,
    )

    # ] doubles the rate the field shows, and sends it.
    page.keyboard.press("]")
    expect(messages).to_contain_text("set_lr 0.006 sent")
    page.keyboard.press(" ")
    expect(page.locator("#status-badge")).to_have_text("running")
    stop(page)


def test_small_rates_read_as_such(browser_page: Page, server_url: str, api: Api) -> None:
    """1.5e-4 is 1.5e-4 in the header, the status, the field and the chart's hover legend."""
    page = browser_page
    config = {"lr": 1.5e-4, "schedule": "constant", "max_steps": 100_000, "hidden": [16]}
    run = post_json(server_url, "/api/runs", {"name": "small lr", "config": config, "pace": 50})
    page.goto(f"{server_url}/runs/{run['id']}")
    counter_at_least(page, 20)
    expect(page.locator("#header-lr")).to_have_text("1.5e-4 (constant)")
    expect(page.locator("#status-lr")).to_have_text("1.5e-4 (constant)")
    expect(page.locator("#lr-input")).to_have_value("0.00015")
    over = page.locator("#chart-lr .u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    assert box is not None
    over.hover(position={"x": box["width"] * 0.6, "y": box["height"] / 2})
    expect(page.locator("#chart-lr .u-legend")).to_contain_text("1.5e-4")
    # The x axis as wall-clock time (unix seconds) and back to steps.
    page.check("#time-axis")
    page.wait_for_function("window.pandamode.charts.loss.scales.x.min > 1e9")
    page.uncheck("#time-axis")
    page.wait_for_function("window.pandamode.charts.loss.scales.x.max < 1e9")
    stop(page)


def test_finished_run_trains_more_steps(browser_page: Page, server_url: str, api: Api) -> None:
    """A finished run, forked from its last checkpoint with "train 500 more steps", trains them."""
    page = browser_page
    config = {"max_steps": 100, "hidden": [16], "eval_every": 50}
    run = post_json(server_url, "/api/runs", {"name": "short", "config": config})
    page.goto(f"{server_url}/runs/{run['id']}")
    expect(page.locator("#status-badge")).to_have_text("finished", timeout=30_000)
    expect(page.locator("#fork-step option").first).to_have_attribute("value", "100")
    page.fill("#fork-more", "500")
    page.click("#fork")
    page.wait_for_url(re.compile(rf"/runs/(?!{run['id']}$)\d+$"))
    child = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#status-badge")).to_have_text("finished", timeout=60_000)
    body = api(f"/api/runs/{child}")
    assert (body["parent_id"], body["parent_step"], body["step"]) == (run["id"], 100, 600)
    assert body["name"] == "short fork@100"
    # A fork of the fork is named after the run, not "short fork@100 fork@600".
    expect(page.locator("#fork-name")).to_have_attribute("placeholder", "short fork@step")
