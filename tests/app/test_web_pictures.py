"""The run page's Pictures panel (app/web/pictures.py): what it shows, its 204 answer when
nothing changed, and the stream pushing it (once for every viewer) when what it shows changes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from conftest import next_message, run_async
from fastapi.templating import Jinja2Templates
from fastapi.testclient import TestClient

from app import crud
from app.crud.pictures import save_confusion
from app.db import Database
from app.paths import TEMPLATES_DIR
from app.stream import StreamHub
from app.web import pages
from app.web.fragments import Fragments
from app.web.pictures import FRAGMENT, confusion_rows
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
    assert "hx-trigger" not in html  # no viewer polls: the stream pushes the panel
    key = re.search(r'data-key="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    assert client.get(f"/runs/{rid}/_pictures", params={"shown": key}).status_code == 204
    assert client.get(f"/runs/{rid}/_pictures", params={"shown": "old"}).status_code == 200


def test_panel_before_any_evaluation(client: TestClient, tiny: dict[str, Any]) -> None:
    rid = client.post("/api/runs", json={"config": tiny}).json()["id"]  # no worker: queued
    html = client.get(f"/runs/{rid}/_pictures").text
    assert "No evaluation yet" in html and "hx-trigger" not in html
    assert "no checkpoint yet" in html
    assert client.get("/runs/999/_pictures").status_code == 404


def test_confusion_rows_shade_by_share_of_the_true_class() -> None:
    rows = confusion_rows(["a", "b"], [[3, 1], [0, 4]])
    assert [r["total"] for r in rows] == [4, 4]
    first = rows[0]["cells"]
    assert first[0]["share"] == 0.75 and "47, 111, 223" in first[0]["style"]  # diagonal: blue
    assert "200, 49, 46" in first[1]["style"]  # an error: red
    assert rows[1]["cells"][0]["style"] == ""  # nothing there: no shade


def test_the_stream_pushes_the_panel_when_a_picture_or_checkpoint_arrives(db: Database) -> None:
    """No viewer polls the panel: the run's one tail sees the pictures' version move (a new
    confusion matrix, a new checkpoint to download) and renders the panel once for all."""
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    pages.install_filters(templates.env)
    hook = Fragments(db, templates.env)
    calls: list[set[str]] = []

    def fragments(run_id: int, changed: set[str]) -> list[tuple[str, str]]:
        calls.append(set(changed))
        return hook(run_id, changed)

    with db.write() as s:
        rid = crud.create_run(s, config={"dataset": "spirals"}, status="running").id

    async def scenario() -> None:
        hub = StreamHub(db, poll=0.02, fragments=fragments, panel_interval=0.0)
        first, second = hub.viewer(rid), hub.viewer(rid)
        for viewer in (first, second):
            await next_message(viewer)  # status: nothing to picture yet, no pictures part
        assert calls == [{"status", "event"}]
        with db.write() as s:
            save_confusion(s, rid, 50, [0, 1], [[3, 1], [0, 4]])
        for viewer in (first, second):
            message = await next_message(viewer)
            while message["event"] != FRAGMENT:
                message = await next_message(viewer)
            assert 'data-step="50"' in message["data"]
        assert calls[1:] == [{"pictures"}], "rendered once for both viewers"
        with db.write() as s:
            crud.save_checkpoint(s, rid, 60, b"state")
        message = await next_message(first)
        while message["event"] != FRAGMENT:
            message = await next_message(first)
        assert "checkpoints/60/weights.npz" in message["data"]
        await first.aclose(), await second.aclose()
        await hub.close()

    run_async(scenario())
