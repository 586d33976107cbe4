"""The run page's Pictures panel (app/web/pictures.py): what it shows, when it stops polling,
and its 204 answer when nothing changed."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.web.pictures import confusion_rows
from app.worker.loop import Worker

pytestmark = pytest.mark.timeout(60)

Wait = Callable[..., Any]


def _finished_run(client: TestClient, wait: Wait, config: dict[str, Any]) -> int:
    rid = client.post("/api/runs", json={"config": config}).json()["id"]
    wait(lambda: client.get(f"/api/runs/{rid}").json()["status"] == "finished", timeout=60)
    return rid


def test_panel_of_a_finished_spirals_run(
    client: TestClient, worker: Worker, wait: Wait, tiny: dict[str, Any]
) -> None:
    rid = _finished_run(client, wait, {**tiny, "max_steps": 100})
    assert f'hx-get="/runs/{rid}/_pictures"' in client.get(f"/runs/{rid}").text
    html = client.get(f"/runs/{rid}/_pictures").text
    assert f'src="/api/runs/{rid}/regions?step=100"' in html
    assert 'id="confusion-matrix"' in html and 'data-step="100"' in html
    assert f'href="/api/runs/{rid}/checkpoints/100/weights.npz"' in html
    assert "hx-trigger" not in html  # settled: no more polling
    key = re.search(r'data-key="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    assert client.get(f"/runs/{rid}/_pictures", params={"shown": key}).status_code == 204
    assert client.get(f"/runs/{rid}/_pictures", params={"shown": "old"}).status_code == 200


def test_panel_before_any_evaluation_polls(client: TestClient, tiny: dict[str, Any]) -> None:
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]  # no worker: queued
    html = client.get(f"/runs/{rid}/_pictures").text
    assert "No evaluation yet" in html and 'hx-trigger="every 3s"' in html
    assert "no checkpoint yet" in html
    assert client.get("/runs/999/_pictures").status_code == 404


def test_confusion_rows_shade_by_share_of_the_true_class() -> None:
    rows = confusion_rows(["a", "b"], [[3, 1], [0, 4]])
    assert [r["total"] for r in rows] == [4, 4]
    first = rows[0]["cells"]
    assert first[0]["share"] == 0.75 and "47, 111, 223" in first[0]["style"]  # diagonal: blue
    assert "200, 49, 46" in first[1]["style"]  # an error: red
    assert rows[1]["cells"][0]["style"] == ""  # nothing there: no shade
