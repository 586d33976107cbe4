"""``GET /docs``: Swagger UI from the package's own files, so no request leaves the machine.

FastAPI's default page loads Swagger UI from a CDN; ``create_app`` turns that page (and ReDoc,
which would need another bundle) off and mounts this router instead. The HTML is FastAPI's
``get_swagger_ui_html`` pointed at ``/static/vendor`` (static/vendor/VERSIONS.md). Its one inline
script starts Swagger UI; rather than allow inline scripts everywhere, this page's CSP names that
script's SHA-256, computed once from the page itself (the HTML never changes at run time).
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from app.headers import content_security_policy

DOCS_URL = "/docs"
VENDOR = "/static/vendor"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _page(openapi_url: str, title: str) -> tuple[bytes, str]:
    """The page's bytes and its Content-Security-Policy (with the inline script's hash)."""
    html = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{title} - API docs",
        swagger_js_url=f"{VENDOR}/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR}/swagger-ui.css",
        swagger_favicon_url=f"{VENDOR}/swagger-ui-favicon-32x32.png",
        oauth2_redirect_url=None,
        # No badge from the public validator service: it would send our schema off the machine.
        swagger_ui_parameters={"validatorUrl": None},
    ).body
    text = bytes(html).decode()
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(text)
    ]
    return bytes(html), content_security_policy(extra_script_src=" ".join(hashes))


def router(openapi_url: str, title: str) -> APIRouter:
    """A router serving the bundled Swagger UI at ``DOCS_URL`` for the schema at ``openapi_url``."""
    body, csp = _page(openapi_url, title)
    docs = APIRouter()

    @docs.get(DOCS_URL, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(body, headers={"Content-Security-Policy": csp})

    return docs
