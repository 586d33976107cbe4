"""The live stream: status, backlog after ``since``, events (re-sent when applied), live rows,
one shared tail per run, resuming with Last-Event-ID through a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from app import crud
from app.db import Database
from app.main import create_app
from app.settings import Settings
from app.stream import StreamHub

pytestmark = pytest.mark.timeout(60)


def _rows(first: int, last: int) -> list[dict[str, Any]]:
    return [
        {"step": s, "time": float(s), "epoch": 0.0, "lr": 0.1, "train_loss": 1.0 / s,
         "train_acc": 0.5, "val_loss": None, "val_acc": None}
        for s in range(first, last + 1)
    ]  # fmt: skip


async def _next(agen: AsyncIterator[dict[str, Any]], timeout: float = 5.0) -> dict[str, Any]:
    return await asyncio.wait_for(agen.__anext__(), timeout)


def test_viewer_backlog_events_live_and_shared_tail(db: Database) -> None:
    with db.write() as s:
        rid = crud.create_run(s, config={"lr": 0.1}, status="running").id
        crud.append_metrics(s, rid, _rows(1, 100))
        cmd = crud.record_command(s, rid, "set_lr", {"lr": 0.05}).id

    async def scenario() -> None:
        hub = StreamHub(db, poll=0.02, chunk_rows=30)
        viewer = hub.viewer(rid, since=40)
        status = await _next(viewer)
        assert status["event"] == "status" and json.loads(status["data"])["status"] == "running"
        chunks = [await _next(viewer), await _next(viewer)]
        assert [c["event"] for c in chunks] == ["metrics", "metrics"]
        assert [c["id"] for c in chunks] == ["70", "100"]
        assert json.loads(chunks[0]["data"])["step"] == list(range(41, 71))
        pending = await _next(viewer)
        assert pending["event"] == "event"
        assert (
            json.loads(pending["data"])["id"] == cmd and json.loads(pending["data"])["step"] is None
        )

        other = hub.viewer(rid, since=100)
        await _next(other)
        assert len(hub.tails) == 1 and len(hub.tails[rid].queues) == 2

        with db.write() as s:
            crud.append_metrics(s, rid, _rows(101, 110))
            crud.mark_applied(s, cmd, 100)
            crud.update_run(s, rid, status="paused")
        got = {m["event"]: m for m in [await _next(viewer) for _ in range(3)]}
        assert got["metrics"]["id"] == "110"
        assert json.loads(got["metrics"]["data"])["step"] == list(range(101, 111))
        assert json.loads(got["event"]["data"])["step"] == 100
        assert json.loads(got["status"]["data"])["status"] == "paused"

        await viewer.aclose()
        assert len(hub.tails[rid].queues) == 1
        await other.aclose()
        assert hub.tails == {}, "the tail stops when no one watches"
        await hub.close()

    asyncio.run(scenario())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    port = _free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            threading.Event().wait(0.05)
    yield base
    srv.should_exit = True
    thread.join(timeout=10)


def _read_sse(base: str, path: str, headers: dict[str, str], want: int) -> list[dict[str, str]]:
    """Read SSE messages until ``want`` metrics messages arrived."""
    messages: list[dict[str, str]] = []
    current: dict[str, str] = {}
    with httpx.stream("GET", base + path, headers=headers, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line == "":
                if current:
                    messages.append(current)
                    current = {}
                if sum(m.get("event") == "metrics" for m in messages) >= want:
                    return messages
                continue
            field, _, value = line.partition(":")
            current[field] = value.lstrip(" ")
    return messages


def test_stream_over_http_resumes_with_last_event_id(
    server: str, worker: object, wait: Callable[..., Any], tiny: dict[str, Any]
) -> None:
    rid = httpx.post(f"{server}/api/runs", json={"config": tiny}).json()["id"]
    wait(lambda: httpx.get(f"{server}/api/runs/{rid}").json()["step"] > 100)
    first = _read_sse(server, f"/api/runs/{rid}/stream", {}, want=3)
    assert first[0]["event"] == "status"
    metrics = [m for m in first if m["event"] == "metrics"]
    steps = [s for m in metrics for s in json.loads(m["data"])["step"]]
    assert steps == list(range(1, steps[-1] + 1)), "no gap, no repeat"
    assert metrics[-1]["id"] == str(steps[-1])

    resume_at = metrics[0]["id"]
    again = _read_sse(server, f"/api/runs/{rid}/stream", {"Last-Event-ID": resume_at}, want=2)
    resumed = [s for m in again if m["event"] == "metrics" for s in json.loads(m["data"])["step"]]
    assert resumed[0] == int(resume_at) + 1
    assert resumed == list(range(resumed[0], resumed[-1] + 1))
    via_since = _read_sse(server, f"/api/runs/{rid}/stream?since=50", {}, want=1)
    assert (
        json.loads(next(m for m in via_since if m["event"] == "metrics")["data"])["step"][0] == 51
    )
