"""Who may reach the dashboard: the Host, token and origin rules of design.md, as ASGI middleware.

Every request goes through these checks, in order:

1. **Host.** The ``Host`` header must name the server (app/hosts.py: loopback names, the bind
   address, ``PANDAMODE_ALLOWED_HOSTS``), otherwise 403, reads and ``/healthz`` included: that is
   what stops DNS rebinding, where a foreign page reaches us under its own name. A request with no
   Host header passes (no browser sends one, so it cannot be a rebinding page; old probes might).
2. **Token.** Bound to loopback, none. Bound anywhere else, every request needs the token, from
   ``Authorization: Bearer``, the ``X-Pandamode-Token`` header, a ``?token=`` parameter, or the
   ``pandamode_token`` cookie that a request with a valid ``?token=`` sets (as Jupyter does).
   Exceptions: ``GET /healthz`` (the Docker HEALTHCHECK and load balancers probe it; it tells only
   "ok" and the database dialect), and all reads when ``PANDAMODE_OPEN_READS`` opens them.
3. **Origin.** A browser sends the cookie by itself, so a changing request authenticated by the
   cookie alone must come from our own origin: its Origin (or Referer) names the same host and
   port as Host, or a host named in ``PANDAMODE_ALLOWED_HOSTS`` (a reverse proxy's public name).
   On loopback a changing request that carries a foreign Origin is refused too, so a web page open
   in the same browser cannot post to the local dashboard.

A browser visit with a valid ``?token=`` gets the cookie and a 303 to the same URL without the
token, so the token stays out of the address bar, the history and later Referer headers.
"""

from __future__ import annotations

import secrets
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.hosts import AllowedHosts

COOKIE = "pandamode_token"
HEADER = "x-pandamode-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/healthz"})
"""Paths a GET may reach without the token even when reads need it."""


def _refuse(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _cookie_token(headers: Headers) -> str | None:
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except CookieError:
        return None
    return cookie[COOKIE].value if COOKIE in cookie else None


def _is_navigation(scope: Scope, headers: Headers) -> bool:
    """A browser opening a page (not a script calling the API, which a redirect would break)."""
    if scope["method"] not in ("GET", "HEAD"):
        return False
    return headers.get("sec-fetch-mode") == "navigate" or "text/html" in headers.get("accept", "")


def url_without_token(scope: Scope) -> str:
    """The request's own path and query string, minus ``token``: where a visit is sent on to."""
    raw = scope.get("raw_path") or quote(scope["path"]).encode()
    path = "/" + raw.decode("latin-1").lstrip("/")  # "//evil.example" would leave the site
    query = [
        (key, value)
        for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), True)
        if key != "token"
    ]
    return path + ("?" + urlencode(query) if query else "")


class TokenGuard:
    """ASGI middleware enforcing the rules of the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        required: bool,
        reads_required: bool = False,
        hosts: AllowedHosts | None = None,
    ) -> None:
        if required and not token:
            raise ValueError("a token is required when bound off loopback")
        self.app = app
        self.token = token or ""
        self.required = required
        self.reads_required = required and reads_required
        self.hosts = hosts or AllowedHosts("127.0.0.1")

    def _valid(self, candidate: str | None) -> bool:
        return bool(candidate) and secrets.compare_digest(
            candidate.encode(errors="surrogateescape"), self.token.encode()
        )

    def _same_origin(self, headers: Headers) -> bool | None:
        """True/False if Origin (or Referer) names us; None when neither header is there."""
        source = headers.get("origin") or headers.get("referer")
        if not source:
            return None
        if source == "null":
            return False
        netloc = urlsplit(source).netloc.lower()
        return netloc == headers.get("host", "").lower() or self.hosts.configured_origin(netloc)

    def _refusal(self, scope: Scope, headers: Headers, query: QueryParams) -> Response | None:
        host = headers.get("host")
        if host is not None and not self.hosts.allows(host):
            shown = host[:100].encode("ascii", "backslashreplace").decode()
            return _refuse(
                403,
                f"host not allowed: {shown!r}; to reach the server by this name, "
                "add it to PANDAMODE_ALLOWED_HOSTS",
            )
        changing = scope["method"] not in SAFE_METHODS
        if not self.required:
            if changing and self._same_origin(headers) is False:
                return _refuse(403, "cross-origin request refused")
            return None
        if not changing and (not self.reads_required or scope["path"] in OPEN_PATHS):
            if query.get("token") is not None and not self._valid(query.get("token")):
                return _refuse(401, "invalid token")
            return None
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        explicit = bearer or headers.get(HEADER) or query.get("token")
        if explicit is not None:
            return None if self._valid(explicit) else _refuse(401, "invalid token")
        if self._valid(_cookie_token(headers)):
            if not changing or self._same_origin(headers):
                return None
            return _refuse(403, "cross-origin request refused")
        return _refuse(401, "token required")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        query = QueryParams(scope.get("query_string", b""))
        refusal = self._refusal(scope, headers, query)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if not (self.required and self._valid(query.get("token"))):
            await self.app(scope, receive, send)
            return
        cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        if _is_navigation(scope, headers):
            redirect = RedirectResponse(url_without_token(scope), status_code=303)
            redirect.headers.append("set-cookie", cookie)
            await redirect(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, send_with_cookie)
