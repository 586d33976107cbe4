"""The runs list in a browser: the new-run form (htmx, server-rendered) and comparing runs.

Runs that only need to exist are made through the JSON API; every wait is on observable state
(the URL, the DOM, the API) with a timeout.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import post_json

Api = Callable[[str], Any]
SHORT = {
    "dataset": "spirals", "n_samples": 200, "hidden": [16], "batch_size": 32,
    "max_steps": 120, "eval_every": 20, "schedule": "constant",
}  # fmt: skip


def wait_settled(api: Api, run_id: int, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api(f"/api/runs/{run_id}")
        if run["status"] in ("finished", "stopped", "failed", "diverged"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish within {timeout} s")


def test_new_run_form_shows_errors_then_starts_the_run(
    browser_page: Page, server_url: str, api: Api
) -> None:
    page = browser_page
    before = len(api("/api/runs"))
    page.goto(server_url + "/")
    page.fill("input[name=name]", "from the htmx form")
    page.select_option("select[name=dataset]", "spirals")
    page.fill("input[name=hidden]", "16, 8")
    page.fill("input[name=max_steps]", "200")
    page.select_option("select[name=pace]", "")
    page.fill("input[name=lr]", "-1")
    page.click("#new-run button[type=submit]")
    # The server answers 422 with the form again: htmx swaps it in, the error beside the field.
    expect(page.locator("#new-run-messages li[data-field='config.lr']")).to_have_count(1)
    expect(page.locator("input[name=lr]")).to_have_class(re.compile(r"\binvalid\b"))
    expect(page.locator("input[name=hidden]")).to_have_value("16, 8")
    assert page.url == server_url + "/" and len(api("/api/runs")) == before
    # The swapped-in form is live: fixing the field starts the run and opens its page.
    page.fill("input[name=lr]", "0.02")
    page.click("#new-run button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    run = api(f"/api/runs/{page.url.rsplit('/', 1)[1]}")
    assert run["name"] == "from the htmx form"
    assert run["config"]["hidden"] == [16, 8] and run["config"]["lr"] == 0.02
    assert run["config"]["dataset"] == "spirals" and run["config"]["max_steps"] == 200
    wait_settled(api, run["id"])


def test_two_runs_compared_on_one_chart(browser_page: Page, server_url: str, api: Api) -> None:
    page = browser_page
    slow = post_json(
        server_url, "/api/runs", {"name": "cmp slow", "config": {**SHORT, "lr": 0.001}}
    )
    fast = post_json(server_url, "/api/runs", {"name": "cmp fast", "config": {**SHORT, "lr": 0.05}})
    for run in (slow, fast):
        wait_settled(api, run["id"])
    page.goto(server_url + "/")
    page.check(f"#pick-{slow['id']}")
    page.check(f"#pick-{fast['id']}")
    page.click("#compare")
    page.wait_for_url(re.compile(r"/compare\?"))
    for chart in ("#chart-val-loss", "#chart-val-acc"):
        expect(page.locator(f"{chart} .uplot")).to_have_count(1)
        expect(page.locator(chart)).to_have_attribute("data-series", "2")
        points = int(page.locator(chart).get_attribute("data-points") or 0)
        assert points >= 120 // 20, "every evaluation of both runs is on the chart"
        legend = page.locator(f"{chart} .u-legend .u-series th").all_inner_texts()
        assert any("cmp slow" in t for t in legend) and any("cmp fast" in t for t in legend)
    differ = page.locator("#settings-differ tr[data-field]")
    expect(differ).to_have_count(1)
    expect(differ).to_have_attribute("data-field", "lr")
    expect(page.locator(f"a[href='/runs/{fast['id']}']").first).to_be_visible()


def test_a_tick_survives_the_list_refresh(browser_page: Page, server_url: str, api: Api) -> None:
    page = browser_page
    config = {**SHORT, "max_steps": 1_000_000}
    slow = post_json(server_url, "/api/runs", {"name": "ticked", "config": config, "pace": 5})
    try:
        page.goto(server_url + "/")
        expect(page.locator("#runs-table")).to_have_attribute("hx-trigger", "every 2s")
        page.check(f"#pick-{slow['id']}")
        # Wait for two refreshes of the table (htmx swaps it every 2 s while a run is active).
        page.evaluate(
            """() => new Promise((done) => {
                 let n = 0;
                 const settled = () => { if (++n === 2) done(); };
                 document.body.addEventListener('htmx:afterSettle', settled);
               })"""
        )
        expect(page.locator(f"#pick-{slow['id']}")).to_be_checked()
    finally:
        post_json(server_url, f"/api/runs/{slow['id']}/commands", {"type": "stop"})


def test_compare_before_any_evaluation_says_so(
    browser_page: Page, server_url: str, api: Api
) -> None:
    """Runs with no validation row yet: the page says which, and draws empty charts without a
    JavaScript error (the fixture fails the test on any)."""
    page = browser_page
    config = {**SHORT, "max_steps": 1_000_000, "eval_every": 100_000}
    made = [post_json(server_url, "/api/runs", {"name": f"early {i}", "config": config, "pace": 1})
            for i in range(2)]  # fmt: skip
    try:
        page.goto(f"{server_url}/compare?ids={made[0]['id']},{made[1]['id']}")
        expect(page.locator("#compare-messages")).to_contain_text("no evaluation yet")
        expect(page.locator("#chart-val-loss")).to_have_attribute("data-points", "0")
    finally:
        for run in made:
            post_json(server_url, f"/api/runs/{run['id']}/commands", {"type": "stop"})


def test_a_long_name_does_not_widen_the_list(browser_page: Page, server_url: str) -> None:
    page = browser_page
    name = "a run name somebody typed to remember every setting they changed " * 3
    run = post_json(
        server_url, "/api/runs", {"name": name.strip(), "config": {**SHORT, "max_steps": 40}}
    )
    page.goto(server_url + "/")
    link = page.locator(f"tr[data-run-id='{run['id']}'] td.name > a")
    expect(link).to_have_attribute("title", name.strip())
    table = page.locator("#runs-table table").bounding_box()
    panel = page.locator("#compare-form").bounding_box()
    assert table and panel and table["x"] + table["width"] <= panel["x"] + panel["width"] + 1
    height = link.bounding_box()
    assert height and height["height"] < 30, "the name stays on one line (cut with an ellipsis)"
