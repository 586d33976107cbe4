"""What ``pandamode serve`` prints at start: links a browser can open, the token only if generated.

A generated token is printed once inside the link (as Jupyter does): it exists nowhere else. A
token the user chose (``PANDAMODE_TOKEN``) is never echoed, since the user knows it and the
terminal may be recorded. Bound to a wildcard (``0.0.0.0``, ``::``, as in the Docker image), the
first link uses 127.0.0.1, which works on this machine and through ``docker run -p
127.0.0.1:8000:8000``; a second one names the machine for other hosts.
"""

from __future__ import annotations

import socket

from app.hosts import WILDCARD_BINDS
from app.settings import Settings


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def links(settings: Settings) -> list[str]:
    """Base URLs of the dashboard: where to open it here, then (wildcard bind) from elsewhere."""
    port = settings.port
    if settings.host.strip() in WILDCARD_BINDS:
        return [f"http://127.0.0.1:{port}/", f"http://{_url_host(socket.gethostname())}:{port}/"]
    return [f"http://{_url_host(settings.host)}:{port}/"]


def banner(settings: Settings, *, generated_token: bool) -> list[str]:
    """The lines to print; ``generated_token`` says whether ``settings.token`` was made here."""
    urls = links(settings)
    if settings.needs_token and generated_token:
        urls = [f"{url}?token={settings.token}" for url in urls]
    lines = [f"pandamode: serving on {urls[0]}"]
    lines += [f"pandamode: from other machines: {url}" for url in urls[1:]]
    if settings.needs_token and not generated_token:
        lines.append(
            f"pandamode: open {urls[0]}?token=<your PANDAMODE_TOKEN> once; "
            "the browser then keeps it in a cookie"
        )
    return lines
