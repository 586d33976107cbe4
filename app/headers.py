"""Response headers that tell the browser how little our pages may do.

The Content-Security-Policy allows scripts from our own origin only: no ``unsafe-inline`` and no
``unsafe-eval`` for scripts (htmx runs with ``allowEval: false``, see templates/base.html; the
``<script type="application/json">`` data blocks are never executed, so they need no exception).
Styles keep ``unsafe-inline`` because templates colour swatches and confusion cells with ``style``
attributes, and htmx and uPlot set styles; a style cannot run code. Images may be ``data:`` URIs
(the favicon, Swagger UI's icons). A response that sets its own policy keeps it (``/docs`` adds
the hash of its one inline script, see app/api_docs.py).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP_DIRECTIVES: dict[str, str] = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def content_security_policy(*, extra_script_src: str = "") -> str:
    """The policy as a header value; ``extra_script_src`` adds sources (e.g. a script's hash)."""
    directives = dict(CSP_DIRECTIVES)
    if extra_script_src:
        directives["script-src"] += " " + extra_script_src
    return "; ".join(f"{name} {value}" for name, value in directives.items())


SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": content_security_policy(),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
}


class SecurityHeaders:
    """ASGI middleware adding ``SECURITY_HEADERS`` to every HTTP response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
