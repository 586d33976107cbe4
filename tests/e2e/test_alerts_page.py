"""Alerts in the browser: a run pushed to diverge (a rate 300x too high, typed into the page's
lr field) gets a divergence notice, pushed by the stream, whose one button sends the ordinary
set_lr it names; the event log shows it applied and the next step trains at that rate. Then an
autopilot toggle switches a policy on. Every wait is on observable state."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import post_json

Api = Callable[[str], Any]

SHOTS = Path(os.environ.get("PANDAMODE_SCREENSHOTS", "/tmp/pandamode-shots"))


def test_divergence_alert_and_its_one_click_action(
    browser_page: Page, server_url: str, api: Api
) -> None:
    page = browser_page
    config = {"max_steps": 200_000, "eval_every": 50, "hidden": [64], "schedule": "constant"}
    run = post_json(server_url, "/api/runs", {"name": "pushed", "config": config, "pace": 100})
    rid = run["id"]
    page.goto(f"{server_url}/runs/{rid}")
    expect(page.locator("#run-alerts")).to_contain_text("No open alerts")
    page.wait_for_function(
        "() => Number(document.getElementById('step-counter').textContent) >= 80"
    )

    page.fill("#lr-input", "3")
    page.click("#apply-lr")
    notice = page.locator("#run-alerts .notice-divergence").first
    expect(notice).to_be_visible(timeout=30_000)
    expect(notice).to_contain_text("divergence coming")
    button = notice.locator("button.alert-act")
    expect(button).to_contain_text("divide lr by 3 (to 1)")
    alert = api(f"/api/runs/{rid}/alerts")[0]
    assert alert["kind"] == "divergence" and alert["action"] == {
        "type": "set_lr",
        "lr": 1.0,
        "label": "divide lr by 3 (to 1)",
    }
    assert alert["step"] > 80
    # The chart marks the alert like any event.
    page.wait_for_function(
        "id => document.querySelector('#chart-loss .uplot').dataset.markers.split(' ')"
        ".includes(String(id))",
        arg=alert["id"],
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "alerts-notice.png"), full_page=False)

    button.click()
    expect(page.locator("#alert-messages")).to_contain_text("command #")
    expect(page.locator(f"#alert-{alert['id']}")).to_have_count(0, timeout=15_000)
    applied = page.locator("#event-log li[data-type=set_lr].applied")
    expect(applied).to_have_count(2, timeout=30_000)  # the user's 3, then the alert's 1
    set_lr = [e for e in api(f"/api/runs/{rid}/events") if e["type"] == "set_lr"]
    assert [e["lr"] for e in set_lr] == [3.0, 1.0]
    step = set_lr[-1]["step"]
    page.wait_for_function(
        "s => Number(document.getElementById('step-counter').textContent) > s", arg=step
    )
    rows = api(f"/api/runs/{rid}/metrics?after={step}")
    assert rows["lr"][0] == 1.0, "the next step trains at the alert's rate"
    handled = [e for e in api(f"/api/runs/{rid}/events") if e["type"] == "alert_handled"]
    assert [(h["alert_id"], h["how"]) for h in handled] == [(alert["id"], "acted")]

    page.click("#autopilot-early_stopping")
    toggle = page.locator("#autopilot-early_stopping")
    expect(toggle).to_have_attribute("aria-pressed", "true", timeout=15_000)
    switches = [e for e in api(f"/api/runs/{rid}/events") if e["type"] == "autopilot"]
    assert [(e["policy"], e["on"]) for e in switches] == [("early_stopping", True)]
    page.screenshot(path=str(SHOTS / "alerts-acted.png"), full_page=False)
    post_json(server_url, f"/api/runs/{rid}/commands", {"type": "stop"})
