"""Who may change things: the token rule of design.md, as pure ASGI middleware.

Bound to loopback, no token is needed; bound anywhere else, every request that changes something
(any method but GET/HEAD/OPTIONS) needs the token, from ``Authorization: Bearer``, the
``X-Pandamode-Token`` header, a ``?token=`` parameter, or the ``pandamode_token`` cookie that a
visit to any page with ``?token=`` sets (as Jupyter does). A browser sends that cookie by itself,
so a cookie-only request must also come from our own origin (Origin or Referer matches Host).
On loopback the origin rule still applies to requests that carry an Origin, so a web page open in
the same browser cannot post to the local dashboard.
"""

from __future__ import annotations

import secrets
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "pandamode_token"
HEADER = "x-pandamode-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _same_origin(headers: Headers) -> bool | None:
    """True/False if Origin (or Referer) names our Host; None when neither header is there."""
    source = headers.get("origin") or headers.get("referer")
    if not source or source == "null":
        return None if not source else False
    return urlsplit(source).netloc.lower() == headers.get("host", "").lower()


class TokenGuard:
    """ASGI middleware enforcing the token and origin rules described in the module docstring."""

    def __init__(self, app: ASGIApp, *, token: str | None, required: bool) -> None:
        if required and not token:
            raise ValueError("a token is required when bound off loopback")
        self.app = app
        self.token = token or ""
        self.required = required

    def _valid(self, candidate: str | None) -> bool:
        return bool(candidate) and secrets.compare_digest(candidate.encode(), self.token.encode())

    def _refusal(self, headers: Headers, query: QueryParams) -> JSONResponse | None:
        origin_ok = _same_origin(headers)
        if not self.required:
            if origin_ok is False:
                return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
            return None
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        explicit = bearer or headers.get(HEADER) or query.get("token")
        if explicit is not None:
            if self._valid(explicit):
                return None
            return JSONResponse({"detail": "invalid token"}, status_code=401)
        cookie = SimpleCookie(headers.get("cookie", ""))
        if COOKIE in cookie and self._valid(cookie[COOKIE].value):
            if origin_ok:
                return None
            return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
        return JSONResponse({"detail": "token required"}, status_code=401)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        query = QueryParams(scope.get("query_string", b""))
        if scope["method"] not in SAFE_METHODS:
            refusal = self._refusal(headers, query)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        if not (self.required and self._valid(query.get("token"))):
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, send_with_cookie)
