"""422 bodies that always name the field, including the command ``type`` discriminator.

pydantic reports an unknown or missing discriminator at the union's own location (``["body"]``);
appending the discriminator's name makes ``loc`` end in ``"type"`` like every other field error.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

_TAG_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})


def _name_discriminator(error: dict[str, Any]) -> dict[str, Any]:
    if error.get("type") not in _TAG_ERRORS:
        return error
    field = str(error.get("ctx", {}).get("discriminator", "type")).strip("'")
    return {**error, "loc": (*error.get("loc", ()), field)}


def _json_safe(value: Any) -> Any:
    """The offending input as JSON can carry it: a body such as ``{"lr": 1e999}`` parses to
    inf, which the 422 would echo back and JSONResponse refuses (a 500); it reads "Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _safe_input(error: dict[str, Any]) -> dict[str, Any]:
    return {**error, "input": _json_safe(error["input"])} if "input" in error else error


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's own 422 response, with discriminator errors pointing at the discriminator."""
    assert isinstance(exc, RequestValidationError)
    errors = [_safe_input(_name_discriminator(e)) for e in exc.errors()]
    fixed = RequestValidationError(errors, body=exc.body)
    return await request_validation_exception_handler(request, fixed)
