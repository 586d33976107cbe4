"""Browser-facing headers: a CSP without eval or inline scripts on every response, nosniff,
Referrer-Policy, no framing; templates that need nothing more; /docs served from the package."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.paths import TEMPLATES_DIR

pytestmark = pytest.mark.timeout(30)


def _directives(csp: str) -> dict[str, list[str]]:
    parts = (d.strip().split() for d in csp.split(";") if d.strip())
    return {p[0]: p[1:] for p in parts}


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/", {}),
        ("/api/runs", {}),
        ("/static/app.css", {}),
        ("/api/runs/999999", {}),
        ("/api/runs", {"Host": "evil.example"}),  # a refusal carries them too
    ],
)
def test_every_response_carries_the_headers(
    client: TestClient, path: str, headers: dict[str, str]
) -> None:
    response = client.get(path, headers=headers)
    csp = _directives(response.headers["content-security-policy"])
    assert csp["script-src"] == ["'self'"], "no unsafe-inline, no unsafe-eval for scripts"
    assert not any("unsafe-eval" in v for vs in csp.values() for v in vs)
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["default-src"] == ["'self'"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


_SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
_HANDLER = re.compile(r"\s(on[a-z]+|hx-on[:\w-]*)\s*=", re.IGNORECASE)


@pytest.mark.parametrize("template", sorted(TEMPLATES_DIR.glob("*.html")), ids=lambda p: p.name)
def test_templates_need_no_inline_script_or_eval(template: Path) -> None:
    """What the CSP would block: inline scripts (JSON data blocks are not run), on*= handlers,
    hx-on, and htmx's js: values."""
    text = re.sub(r"\{#.*?#\}", "", template.read_text(), flags=re.DOTALL)  # Jinja comments
    for attrs in _SCRIPT_TAG.findall(text):
        assert "src=" in attrs or 'type="application/json"' in attrs, attrs
    assert not _HANDLER.search(text), _HANDLER.search(text)
    assert not re.search(r"[\"'=]\s*(js|javascript):", text, re.IGNORECASE)


def test_htmx_runs_without_eval(client: TestClient) -> None:
    page = client.get("/").text
    config = re.search(r"<meta name=\"htmx-config\" content='([^']*)'", page)
    assert config and '"allowEval": false' in config.group(1)
    assert '"allowScriptTags": false' in config.group(1)


def test_docs_are_served_from_the_package(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)""", docs.text)
    assert urls, "the page loads Swagger UI from somewhere"
    assert not re.search(r"https?://", docs.text), "no URL off the machine"
    for url in urls:
        assert url.startswith("/static/vendor/"), url
        assert client.get(url).status_code == 200, url
    inline = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    assert len(inline) == 1 and "SwaggerUIBundle" in inline[0]
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    script_src = _directives(docs.headers["content-security-policy"])["script-src"]
    assert script_src == ["'self'", f"'sha256-{digest}'"], "only that one inline script runs"
    assert '"validatorUrl": null' in docs.text, "no badge from the public validator"
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/redoc").status_code == 404, "ReDoc would need a CDN bundle: it is off"
