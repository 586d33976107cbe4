"""The run page's Layer health panel: server-drawn small multiples with their healthy bands and
plain words, served once at /runs/{id}/_health and pushed by the stream as ``fragment-health``
(once per new measurements and interval, whatever the number of viewers)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from conftest import next_message, run_async
from fastapi.templating import Jinja2Templates
from fastapi.testclient import TestClient
from jinja2 import Environment

from app import crud
from app.crud.health import append_health, to_rows
from app.db import Database
from app.paths import TEMPLATES_DIR
from app.stream import StreamHub
from app.web import pages
from app.web.fragments import Fragments
from app.web.health_panel import FRAGMENT, health_context, render_health
from engine.health import LayerHealth

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def env() -> Environment:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    pages.install_filters(templates.env)
    return templates.env


def _health(step: int, dead: float = 0.0) -> list[dict[str, Any]]:
    """Three layers (two ReLU + BN hidden layers, the output layer) at one step."""
    layers = [
        LayerHealth(0, 0.5, 6.0, 2e-2 / step, 0.4, 0.6, 0.0, 0.15),
        LayerHealth(1, 0.4, 6.0, 3e-2 / step, 0.3, 0.5, dead, 0.12),
        LayerHealth(2, 0.3, 3.0, 1e-2 / step, 0.0, 1.5 + step / 100, None, None),
    ]
    return to_rows(step, layers)


def _run_with_health(db: Database, steps: list[int], dead: float = 0.0) -> int:
    with db.write() as s:
        rid = crud.create_run(s, config={"hidden": [8, 8]}, status="running").id
        for step in steps:
            append_health(s, rid, _health(step, dead))
    return rid


def test_the_panel_draws_each_statistic_with_its_band_and_says_what_is_off(
    db: Database, env: Environment
) -> None:
    rid = _run_with_health(db, [10, 20, 30], dead=0.61)
    with db.read() as s:
        html = render_health(env, health_context(s, rid))
    for key in ("grad-norm", "update-ratio", "act-std", "dead-frac", "bn-shift"):
        figure = re.search(
            rf'<figure class="health-chart" id="health-{key}">(.*?)</figure>', html, re.S
        )
        assert figure is not None, key
        assert '<rect class="band"' in figure.group(1), f"{key}: healthy band shaded"
        lines = figure.group(1).count('class="layer-line"')
        assert lines == (2 if key in ("dead-frac", "bn-shift") else 3), key
    assert "layer 2: 61% dead ReLUs" in html
    assert 'id="health-step">30<' in html
    assert "layer 3 (output)" in html


def test_a_healthy_run_says_so_and_a_run_without_rows_says_when_they_come(
    db: Database, env: Environment
) -> None:
    rid = _run_with_health(db, [10, 20])
    with db.read() as s:
        assert "every layer within its healthy band" in render_health(env, health_context(s, rid))
        empty = crud.create_run(s, config={"health_every": 25}, status="queued").id
    with db.read() as s:
        html = render_health(env, health_context(s, empty))
    assert "every layer is measured every 25 steps" in html and "<svg" not in html


def test_served_with_the_page(client: TestClient, db: Database) -> None:
    rid = _run_with_health(db, [10])
    page = client.get(f"/runs/{rid}").text
    assert f'hx-get="/runs/{rid}/_health"' in page
    part = client.get(f"/runs/{rid}/_health")
    assert part.status_code == 200 and 'id="health-live"' in part.text
    assert client.get("/runs/999/_health").status_code == 404


def test_the_stream_pushes_the_panel_when_new_rows_exist(db: Database, env: Environment) -> None:
    rid = _run_with_health(db, [10])
    hook = Fragments(db, env)
    calls: list[set[str]] = []

    def fragments(run_id: int, changed: set[str]) -> list[tuple[str, str]]:
        calls.append(set(changed))
        return hook(run_id, changed)

    async def scenario() -> None:
        hub = StreamHub(db, poll=0.02, fragments=fragments, panel_interval=0.0)
        first, second = hub.viewer(rid), hub.viewer(rid)
        for viewer in (first, second):  # a joining viewer gets the latest panel
            names = [(await next_message(viewer))["event"] for _ in range(4)]
            assert FRAGMENT in names, names
        assert calls == [{"status", "event", "health"}]
        with db.write() as s:
            append_health(s, rid, _health(20))
        for viewer in (first, second):
            message = await next_message(viewer)
            assert message["event"] == FRAGMENT
            assert 'id="health-step">20<' in message["data"]
        assert calls[1:] == [{"health"}], "rendered once for both viewers"
        await first.aclose(), await second.aclose()
        await hub.close()

    run_async(scenario())


def test_pushes_wait_for_the_interval(db: Database, env: Environment) -> None:
    rid = _run_with_health(db, [10])
    calls: list[set[str]] = []

    def fragments(run_id: int, changed: set[str]) -> list[tuple[str, str]]:
        calls.append(set(changed))
        return []

    async def scenario() -> None:
        hub = StreamHub(db, poll=0.02, fragments=fragments, panel_interval=3600.0)
        viewer = hub.viewer(rid)
        await next_message(viewer)
        for step in (20, 30):
            with db.write() as s:
                append_health(s, rid, _health(step))
            await asyncio.sleep(0.2)
        assert calls == [{"status", "event", "health"}], "no second render within the interval"
        with db.write() as s:  # the run ends: its last measurements are pushed at once
            crud.update_run(s, rid, status="finished")
        while True:
            try:
                await next_message(viewer)
            except StopAsyncIteration:
                break
        assert len(calls) >= 2 and "health" in calls[1], calls
        await hub.close()

    run_async(scenario())


def test_tiny_updates_are_expected_where_the_rate_is_near_0_and_zeros_are_not_non_finite(
    db: Database, env: Environment
) -> None:
    """At the end of a cosine schedule the rate is 0: updates of 0 are no alarm and no "non-
    finite" values (they only cannot sit on a log axis); the same tiny updates at the starting
    rate say the rate may be too low."""
    tiny = [LayerHealth(0, 0.5, 6.0, 0.0, 0.4, 0.6, 0.0, 0.1), LayerHealth(1, 0.3, 3.0, 1e-9,
            0.0, 1.5, None, None)]  # fmt: skip

    def run_at(lr: float) -> int:
        with db.write() as s:
            rid = crud.create_run(s, config={"hidden": [8], "lr": 0.01}, status="finished").id
            row = {"step": 40, "time": 1.0, "lr": lr, "train_loss": 0.1, "train_acc": 1.0}
            crud.append_metrics(s, rid, [{**row, "val_loss": None, "val_acc": None}])
            append_health(s, rid, to_rows(40, tiny))
        return rid

    decayed_run, flat_run = run_at(0.0), run_at(0.01)
    with db.read() as s:
        decayed = render_health(env, health_context(s, decayed_run))
        flat = render_health(env, health_context(s, flat_run))
    assert "expected, the schedule has brought the rate down to 0%" in decayed
    assert "the rate may be too low" not in decayed
    assert "non-finite" not in decayed and "1 at 0, off the log axis" in decayed
    assert "the rate may be too low" in flat
