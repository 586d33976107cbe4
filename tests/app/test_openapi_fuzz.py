"""Schemathesis against the served OpenAPI schema, every operation: no 5xx, and every response
matches the schema it is documented with (issue 9). Generated requests hit a real app on a temp
database with a real run in it; no worker runs, so commands stay pending and nothing trains.

The stream (server-sent events, endless while a run is active) is left out of the in-process
fuzzing; tests/app/test_stream.py covers its bad input.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from conftest import fast_settings
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from app.main import create_app

pytestmark = pytest.mark.timeout(600)

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
STREAM = r"/stream$"


# The schema is read at collection time, before any fixture runs: the app is made here, but its
# lifespan (database, stream hub, the study driver's thread) starts only when this module's tests
# run, and stops after them, so no background thread of it touches the rest of the suite.
APP = create_app(fast_settings(Path(tempfile.mkdtemp(prefix="pandamode-fuzz-"))))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path_regex=STREAM)


@pytest.fixture(scope="module", autouse=True)
def _serving() -> Iterator[None]:
    """The app's lifespan for this module's tests, with one queued run in its database."""
    with TestClient(APP, base_url="http://127.0.0.1") as client:
        response = client.post("/api/runs", json={"config": {"max_steps": 100}})
        assert response.status_code == 201, response.text
        yield


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_answers_without_5xx_and_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS, headers={"host": "127.0.0.1"})


def test_the_fuzz_covers_every_operation() -> None:
    """A route added later is fuzzed too: every operation but the stream is in the schema."""
    paths = {result.ok().path for result in schema.get_all_operations()}
    assert "/api/runs" in paths and "/api/runs/{run_id}/commands" in paths
    assert not [p for p in paths if p.endswith("/stream")]
    assert len(paths) >= 10
