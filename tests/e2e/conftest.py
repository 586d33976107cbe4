"""Browser tests against the real thing: `pandamode serve` in a subprocess, Debian's Chromium.

The server runs exactly as a user starts it (its own process, its own workers, SQLite in a temp
data dir), so these tests cover the wiring that in-process tests cannot: static files, the SSE
stream through uvicorn, the worker applying commands. Chromium is the system one
(/usr/bin/chromium); nothing here downloads a browser.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("PANDAMODE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
SERVER_START_TIMEOUT = 60.0


E2E_TIMEOUT = 120
"""Seconds one browser test may take before pytest-timeout fails it (a hang must not stall CI)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this directory drives a browser: mark them all `e2e` (`-m "not e2e"` skips
    them) and give them a tighter timeout than the suite's default."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = log_path.read_text(errors="replace")
            pytest.fail(f"pandamode serve exited with {proc.returncode}:\n{log[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {SERVER_START_TIMEOUT} s:\n{log_path.read_text()}")


@contextlib.contextmanager
def serve(data_dir: Path, *extra: str) -> Iterator[str]:
    """`pandamode serve` on a free loopback port over ``data_dir`` (which may already hold a
    database), with ``extra`` flags (e.g. ``--workers 0``); its URL, stopped on exit."""
    log_path = data_dir / "server.log"
    port = _free_port()
    cmd = [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())", "serve"]
    cmd += ["--port", str(port), "--data-dir", str(data_dir), *extra]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{port}/healthz", log_path)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`pandamode serve` on a free loopback port with a fresh data dir, stopped at the end."""
    with serve(tmp_path_factory.mktemp("pandamode-data")) as url:
        yield url


def get_json(url: str, path: str) -> Any:
    """GET a JSON API path of the server at ``url``."""
    with urllib.request.urlopen(url + path, timeout=10) as resp:
        return json.load(resp)


def post_json(url: str, path: str, body: dict[str, Any]) -> Any:
    """POST JSON to the server at ``url`` (tests set up runs the way a script would)."""
    request = urllib.request.Request(
        url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp)


@pytest.fixture(scope="session")
def api(server_url: str) -> Callable[[str], Any]:
    """GET a JSON API path: the tests check the server's state, not only the page's."""
    return lambda path: get_json(server_url, path)


_ARROW = re.compile(r"^\s*(async\b|function\b|(\([^)]*\)|[A-Za-z_$][\w$]*)\s*=>)")


def as_function(expression: str) -> str:
    """A ``wait_for_function`` predicate as a function. Playwright runs a bare expression through
    ``eval`` inside the page, which the dashboard's Content-Security-Policy (no 'unsafe-eval')
    rightly refuses; a function is passed as one, which the policy does not see."""
    return expression if _ARROW.match(expression) else f"() => ({expression})"


@pytest.fixture(scope="session", autouse=True)
def _predicates_without_eval() -> Iterator[None]:
    """Every test may write ``page.wait_for_function("window.x > 1")``: see ``as_function``."""
    original = Page.wait_for_function

    def wait_for_function(self: Page, expression: str, *args: Any, **kwargs: Any) -> Any:
        return original(self, as_function(expression), *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Page, "wait_for_function", wait_for_function)
        yield


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """Headless Debian Chromium; skipped (failed under CI=true) when it is not installed."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: install Debian's chromium (make browser) for e2e tests"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium: Browser) -> Iterator[Page]:
    """A fresh 1280x900 page; page errors and CSP refusals fail the test instead of passing
    silently."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Whatever the Content-Security-Policy refuses (app/headers.py) is a bug too.
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.set_default_timeout(20_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
