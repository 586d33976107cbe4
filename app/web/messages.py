"""One line for a page's messages area: a confirmation, or the API's refusal made readable.

Every form post of the pages (run controls, fork, range test, overfit check, study buttons)
goes through the JSON API's own code, so a refusal is the API's HTTPException or validation
error; these turn it into the same one line everywhere: ``fork refused: HTTP 422: lr: ...``.
"""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from markupsafe import escape
from pydantic import ValidationError


def message(text: str, kind: str, status: int = 200) -> HTMLResponse:
    """A confirmation (``kind`` "info") or a refusal ("error"), escaped, with its status."""
    return HTMLResponse(f'<p class="{kind}">{escape(text)}</p>', status_code=status)


def reason(exc: Exception, tag: str = "") -> tuple[int, str]:
    """Status code and readable reason of a refused request: ``lr: Input should be ...`` (the
    field's path without ``body`` or a command's type ``tag``, pydantic's "Value error, " cut)."""
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail)
    errors = exc.errors() if isinstance(exc, RequestValidationError | ValidationError) else []
    parts = []
    for error in errors:
        loc = [str(p) for p in error["loc"] if p not in ("body", tag)]
        parts.append(
            f"{'.'.join(loc) or 'body'}: {str(error['msg']).removeprefix('Value error, ')}"
        )
    return 422, "; ".join(parts)


def refusal(what: str, exc: Exception, tag: str = "") -> HTMLResponse:
    """``{what} refused: HTTP {status}: {reason}`` as an error line with the API's status."""
    status, why = reason(exc, tag)
    return message(f"{what} refused: HTTP {status}: {why}", "error", status)
