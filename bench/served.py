"""A real ``pandamode serve`` for a benchmark, and the headless Chromium that looks at it.

Every bench that measures the product from outside starts the server the way a user does (the
console script's ``main``, a free loopback port, its own data directory) and talks to it over
HTTP; they share this one helper so they measure the same thing the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:  # the server benches need no browser: import Playwright only to type
    from playwright.sync_api import Browser, Playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update",
]  # fmt: skip


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_chromium(pw: Playwright) -> Browser:
    """Debian's Chromium, headless (nothing downloads a browser of its own)."""
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


class Served:
    """``pandamode serve --data-dir DIR *extra`` on a free loopback port; a context manager.

    The environment's ``PANDAMODE_*`` variables are left out, so a bench measures the defaults
    whatever the shell that runs it has set.
    """

    def __init__(
        self, data_dir: Path, *extra: str, start_timeout: float = 60.0, log: Path | None = None
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log  # the server's output (access log, tracebacks), when kept
        self._log_file: BinaryIO | None = log.open("wb") if log is not None else None
        out = self._log_file if self._log_file is not None else subprocess.DEVNULL
        main = "import sys; from app.cli import main; sys.exit(main())"
        command = [sys.executable, "-c", main, "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--data-dir", str(data_dir), *extra],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("PANDAMODE_")},
            stdout=out,
            stderr=subprocess.STDOUT if self._log_file is not None else subprocess.DEVNULL,
            start_new_session=True,  # so close() reaches the worker processes too
        )
        try:
            self.wait_until(lambda: self.get("/healthz")["status"] == "ok", start_timeout)
        except BaseException:
            self.close()
            raise

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """JSON in, JSON out."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.loads(response.read())

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def wait_until(
        self, predicate: Callable[[], Any], timeout: float, interval: float = 0.05
    ) -> None:
        """Poll ``predicate`` (connection errors count as "not yet") until true or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError("the server exited")
            time.sleep(interval)
        raise TimeoutError(f"condition not met within {timeout} s")

    def close(self) -> None:
        """SIGTERM (the server stops its workers, which checkpoint first), then the group."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()

    def __enter__(self) -> Served:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
