"""The pages work in Chromium under the Content-Security-Policy: nothing is refused, no request
leaves the server, the run page streams and takes a command, /docs shows the bundled Swagger UI.
(conftest's ``browser_page`` already fails a test on any CSP message; here each page is opened on
purpose and also checked for requests to other origins.)"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import post_json

Api = Callable[[str], Any]
ENDLESS = {
    "dataset": "spirals", "n_samples": 200, "hidden": [16], "batch_size": 32,
    "max_steps": 1_000_000, "eval_every": 20, "schedule": "constant",
}  # fmt: skip


def _watch(page: Page, server_url: str) -> tuple[list[str], list[str]]:
    """(CSP console messages, requests to another origin) seen by ``page`` from now on."""
    violations: list[str] = []
    foreign: list[str] = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.on(
        "request",
        lambda req: None if req.url.startswith((server_url, "data:")) else foreign.append(req.url),
    )
    return violations, foreign


def test_run_page_streams_and_commands_under_the_csp(
    browser_page: Page, server_url: str, api: Api
) -> None:
    page = browser_page
    violations, foreign = _watch(page, server_url)
    run = post_json(server_url, "/api/runs", {"name": "csp", "config": ENDLESS, "pace": 50})
    page.goto(f"{server_url}/runs/{run['id']}")
    page.wait_for_function("() => Number(document.getElementById('step-counter').textContent) > 0")
    page.click("#pause")  # an htmx post with hx-vals: works without eval
    expect(page.locator("#status-badge")).to_have_text("paused", timeout=20_000)
    assert api(f"/api/runs/{run['id']}")["status"] == "paused"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#stop")  # hx-confirm asks first
    expect(page.locator("#status-badge")).to_have_text("stopped", timeout=20_000)
    page.goto(server_url + "/")
    expect(page.locator("#new-run")).to_be_visible()
    assert violations == []
    assert foreign == []


def test_docs_show_swagger_ui_from_the_package(browser_page: Page, server_url: str) -> None:
    page = browser_page
    violations, foreign = _watch(page, server_url)
    page.goto(server_url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text(re.compile("pandamode"))
    expect(page.locator(".opblock").first).to_be_visible()
    assert violations == []
    assert foreign == []
