"""422 bodies that always name the field, including the command ``type`` discriminator.

pydantic reports an unknown or missing discriminator at the union's own location (``["body"]``);
appending the discriminator's name makes ``loc`` end in ``"type"`` like every other field error.
"""

from __future__ import annotations

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


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's own 422 response, with discriminator errors pointing at the discriminator."""
    assert isinstance(exc, RequestValidationError)
    fixed = RequestValidationError([_name_discriminator(e) for e in exc.errors()], body=exc.body)
    return await request_validation_exception_handler(request, fixed)
