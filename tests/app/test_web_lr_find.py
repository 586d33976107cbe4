"""The range test on the run page (app/web/lr_find.py): the button that starts one, the range
test's panel (plot, suggested rate, polling only while it runs) and "apply" to the parent."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.web.lr_find import LEFT, RIGHT, WIDTH, plot

pytestmark = pytest.mark.timeout(60)

Wait = Callable[..., Any]


def _run(client: TestClient, rid: int) -> dict[str, Any]:
    return client.get(f"/api/runs/{rid}").json()


def test_plot_is_log_x_with_the_suggestion_marked() -> None:
    lrs = [10 ** (-6 + 6 * i / 99) for i in range(100)]
    losses = [2.0 - i / 100 for i in range(100)]
    drawn = plot(lrs, losses, 1e-3)
    assert drawn is not None
    assert [t.label for t in drawn.x_ticks] == [f"1e{d}" for d in range(-6, 1)]
    assert drawn.x_ticks[0].pos == LEFT and drawn.x_ticks[-1].pos == WIDTH - RIGHT
    assert drawn.marker == pytest.approx(LEFT + 0.5 * (WIDTH - LEFT - RIGHT))  # 1e-3: halfway
    assert len(drawn.points.split()) == 100
    assert plot(lrs[:1], losses[:1], None) is None


def test_button_starts_a_range_test_and_its_page_shows_the_plot_and_applies_the_rate(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any]
) -> None:
    config = {**tiny, "dataset": "blobs", "lr": 1e-6}  # learns nothing: a descent to find
    parent = client.post("/api/runs", json={"config": config, "pace": 50}).json()["id"]
    wait(lambda: _run(client, parent)["step"] >= 100, what="a first checkpoint (step 100)")
    page = client.get(f"/runs/{parent}").text
    assert 'id="lr-find-button"' in page and 'id="lr-find"' not in page

    made = client.post(f"/runs/{parent}/lr-find", data={"pause": "1"})
    assert made.status_code == 200, made.text
    child = int(made.headers["HX-Redirect"].rsplit("/", 1)[1])
    assert _run(client, child)["parent_id"] == parent
    wait(lambda: _run(client, parent)["status"] == "paused", what="the parent is paused")

    page = client.get(f"/runs/{child}").text
    assert f'hx-get="/runs/{child}/lr-find/panel"' in page
    assert 'id="lr-find-button"' not in page, "no range test of a range test"

    wait(lambda: _run(client, child)["status"] == "finished", what="the range test ends")
    panel = client.get(f"/runs/{child}/lr-find/panel").text
    assert 'hx-trigger="every 1s"' not in panel, "an ended test stops polling"
    assert 'id="lr-find-plot"' in panel and "<polyline" in panel
    assert 'id="lr-find-marker"' in panel
    suggested = _run(client, child)["suggested_lr"]
    sent = re.search(r'name="lr" value="([^"]+)"', panel)
    assert sent is not None and float(sent.group(1)) == float(f"{suggested:.2g}")
    assert f"to run #{parent}" in panel

    applied = client.post(f"/runs/{child}/lr-find/apply", data={"lr": sent.group(1)})
    assert applied.status_code == 202, applied.text
    assert f"sent to run #{parent}" in applied.text
    set_lr = [e for e in client.get(f"/api/runs/{parent}/events").json() if e["type"] == "set_lr"]
    assert [e["lr"] for e in set_lr] == [float(sent.group(1))], "an ordinary set_lr on the parent"


def test_panel_while_running_polls_and_apply_refusals(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any]
) -> None:
    config = {**tiny, "dataset": "blobs", "lr": 1e-6, "max_steps": 40}
    parent = client.post("/api/runs", json={"config": config}).json()["id"]
    wait(lambda: _run(client, parent)["status"] == "finished", what="the parent finishes")
    assert client.get(f"/runs/{parent}/lr-find/panel").status_code == 404, "not a range test"
    child = client.post(f"/api/runs/{parent}/lr-find", json={"steps": 100}).json()["id"]
    client.post(f"/api/runs/{child}/commands", json={"type": "pause"})
    wait(lambda: _run(client, child)["status"] == "paused", what="the range test pauses")
    panel = client.get(f"/runs/{child}/lr-find/panel").text
    assert 'hx-trigger="every 1s"' in panel, "a test that has not ended keeps refreshing"
    client.post(f"/api/runs/{child}/commands", json={"type": "resume"})
    wait(lambda: _run(client, child)["status"] == "finished", what="the range test ends")
    panel = client.get(f"/runs/{child}/lr-find/panel").text
    assert "has ended" in panel, "apply is disabled for a parent that has ended"

    refused = client.post(f"/runs/{child}/lr-find/apply", data={"lr": "0.01"})
    assert refused.status_code == 409 and "finished" in refused.text
    refused = client.post(f"/runs/{child}/lr-find/apply", data={"lr": "-1"})
    assert refused.status_code == 422 and "lr" in refused.text
    refused = client.post(f"/runs/{parent}/lr-find/apply", data={"lr": "0.01"})
    assert refused.status_code == 409, "a run without a parent"
    assert client.post("/runs/999/lr-find").status_code == 404


def test_a_range_test_started_as_a_new_run_has_no_parent_to_apply_to(
    client: TestClient, worker: object, wait: Wait, tiny: dict[str, Any]
) -> None:
    config = {**tiny, "dataset": "blobs", "schedule": "range_test", "lr": 1e-6, "max_steps": 150}
    rid = client.post("/api/runs", json={"config": config}).json()["id"]
    wait(lambda: _run(client, rid)["status"] == "finished", what="the range test ends")
    assert _run(client, rid)["suggested_lr"] is not None
    panel = client.get(f"/runs/{rid}/lr-find/panel").text
    assert 'id="suggested-lr"' in panel and "run #None" not in panel
    assert 'id="lr-find-apply"' not in panel
