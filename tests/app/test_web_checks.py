"""The overfit check on the run page (app/web/checks.py): the button starts one and opens it,
its panel says in plain words whether it reached 100% and stops polling once it has ended; the
initial-loss event's note is in the event log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.timeout(60)

Wait = Callable[..., Any]


def _run(client: TestClient, rid: int) -> dict[str, Any]:
    return client.get(f"/api/runs/{rid}").json()


def test_button_starts_the_check_and_its_page_says_it_reached_100(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any]
) -> None:
    config = {**tiny, "hidden": [32, 32], "max_steps": 100_000}
    parent = client.post("/api/runs", json={"config": config, "pace": 50}).json()["id"]
    wait(lambda: _run(client, parent)["step"] >= 2, what="started (step-0 checkpoint)")
    page = client.get(f"/runs/{parent}").text
    assert 'id="overfit-button"' in page and 'id="overfit-check"' not in page
    assert "initial_loss (worker, initial loss" in page, "the event's note in the event log"

    made = client.post(f"/runs/{parent}/overfit-check", data={"pause": "1"})
    assert made.status_code == 200, made.text
    child = int(made.headers["HX-Redirect"].rsplit("/", 1)[1])
    assert _run(client, child)["parent_id"] == parent
    wait(lambda: _run(client, parent)["status"] == "paused", what="the parent is paused")

    page = client.get(f"/runs/{child}").text
    assert f'hx-get="/runs/{child}/overfit-check/panel"' in page
    assert 'id="overfit-button"' not in page, "no check of a check"
    wait(lambda: _run(client, child)["status"] == "finished", what="the check ends")
    panel = client.get(f"/runs/{child}/overfit-check/panel").text
    assert 'hx-trigger="every 1s"' not in panel, "an ended check stops polling"
    assert "reached 100% training accuracy on 20 examples at step" in panel
    assert "the model can learn" in panel


def test_refusals_and_a_run_that_is_not_a_check(client: TestClient, tiny: dict[str, Any]) -> None:
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]
    refused = client.post(f"/runs/{rid}/overfit-check")
    assert refused.status_code == 409 and "no checkpoint" in refused.text
    assert "HX-Redirect" not in refused.headers
    assert client.get(f"/runs/{rid}/overfit-check/panel").status_code == 404
