"""The live stream: one encoding shared by every viewer, an overview for a viewer far behind, no
event lost between the tail's first read and a viewer joining, the end of a finished run's stream
(and 204 on reconnect), the fragments hook, status coalescing, and resuming through uvicorn."""

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
from anyio import to_thread
from conftest import run_async
from fastapi.testclient import TestClient

from app import crud
from app.api.stream import parse_last_event_id
from app.db import Database
from app.main import create_app
from app.series import COLUMNS
from app.settings import Settings
from app.stream import StreamHub

pytestmark = pytest.mark.timeout(60)

Viewer = AsyncIterator[bytes]


def _rows(first: int, last: int) -> list[dict[str, Any]]:
    return [
        {"step": s, "time": float(s), "epoch": 0.0, "lr": 0.1, "train_loss": 1.0 / s,
         "train_acc": 0.5, "val_loss": None, "val_acc": None}
        for s in range(first, last + 1)
    ]  # fmt: skip


def parse(raw: bytes) -> dict[str, str]:
    """One encoded SSE message as ``{"event", "id", "data"}`` (data lines joined by \\n)."""
    message: dict[str, str] = {}
    data: list[str] = []
    for line in raw.decode().splitlines():
        if not line:
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        else:
            message[name] = value
    if data:
        message["data"] = "\n".join(data)
    return message


async def _next(viewer: Viewer, timeout: float = 5.0) -> dict[str, str]:
    return parse(await asyncio.wait_for(viewer.__anext__(), timeout))


async def _rest(viewer: Viewer, timeout: float = 5.0) -> list[dict[str, str]]:
    """Every message until the stream ends (it must end)."""
    out: list[dict[str, str]] = []
    while True:
        try:
            out.append(parse(await asyncio.wait_for(viewer.__anext__(), timeout)))
        except StopAsyncIteration:
            return out


def _steps(messages: list[dict[str, str]], kind: str = "metrics") -> list[int]:
    return [s for m in messages if m["event"] == kind for s in json.loads(m["data"])["step"]]


def _data(message: dict[str, str]) -> Any:
    return json.loads(message["data"])


def _running_run(db: Database, rows: int) -> int:
    with db.write() as s:
        rid = crud.create_run(s, config={"lr": 0.1}, status="running").id
        crud.append_metrics(s, rid, _rows(1, rows))
    return rid


def test_viewer_backlog_events_live_and_shared_tail(db: Database) -> None:
    rid = _running_run(db, 100)
    with db.write() as s:
        cmd = crud.record_command(s, rid, "set_lr", {"lr": 0.05}).id

    async def scenario() -> None:
        hub = StreamHub(db, poll=0.02, chunk_rows=30)
        viewer = hub.viewer(rid, since=40)
        status = await _next(viewer)
        assert status["event"] == "status" and _data(status)["status"] == "running"
        chunks = [await _next(viewer), await _next(viewer)]
        assert [c["event"] for c in chunks] == ["metrics", "metrics"]
        assert [c["id"] for c in chunks] == ["70", "100"]
        assert _data(chunks[0])["step"] == list(range(41, 71))
        pending = await _next(viewer)
        assert pending["event"] == "event"
        assert _data(pending)["id"] == cmd and _data(pending)["step"] is None

        other = hub.viewer(rid, since=100)
        await _next(other)
        assert len(hub.tails) == 1 and len(hub.tails[rid].queues) == 2

        with db.write() as s:
            crud.append_metrics(s, rid, _rows(101, 110))
            crud.mark_applied(s, cmd, 100)
            crud.update_run(s, rid, status="paused")
        got = {m["event"]: m for m in [await _next(viewer) for _ in range(3)]}
        assert got["metrics"]["id"] == "110"
        assert _data(got["metrics"])["step"] == list(range(101, 111))
        assert _data(got["event"])["step"] == 100
        assert _data(got["status"])["status"] == "paused"

        await viewer.aclose()
        assert len(hub.tails[rid].queues) == 1
        await other.aclose()
        assert hub.tails == {}, "the tail stops when no one watches"
        await hub.close()

    run_async(scenario())


def test_one_encoding_reaches_every_viewer(db: Database) -> None:
    """The tail encodes a live message once: both viewers yield the very same bytes object."""
    rid = _running_run(db, 10)

    async def scenario() -> None:
        hub = StreamHub(db, poll=0.02)
        first, second = hub.viewer(rid, since=10), hub.viewer(rid, since=10)
        await _next(first), await _next(second)  # status
        queues = list(hub.tails[rid].queues)
        with db.write() as s:
            crud.append_metrics(s, rid, _rows(11, 20))
        a = await asyncio.wait_for(first.__anext__(), 5)
        b = await asyncio.wait_for(second.__anext__(), 5)
        assert a is b, "one encoding, shared"
        assert _steps([parse(a)]) == list(range(11, 21))
        assert all(q.empty() for q in queues)
        await first.aclose(), await second.aclose()
        await hub.close()

    run_async(scenario())


def test_far_behind_viewer_gets_overview_then_exact_tail_then_live(db: Database) -> None:
    rid = _running_run(db, 1000)
    with db.write() as s:
        crud.record_command(s, rid, "pause")

    async def scenario() -> None:
        hub = StreamHub(db, poll=0.02, chunk_rows=40, overview_after=300, exact_tail=100)
        viewer = hub.viewer(rid, since=0, points=100)
        assert (await _next(viewer))["event"] == "status"
        overview = await _next(viewer)
        assert overview["event"] == "overview" and overview["id"] == "900"
        cols = _data(overview)
        assert set(cols) == set(COLUMNS)
        assert 2 <= len(cols["step"]) <= 100
        assert cols["step"][0] == 1 and cols["step"][-1] == 900, "first and last rows kept"
        backlog = [await _next(viewer) for _ in range(4)]  # 901..1000 in chunks of 40
        assert [m["event"] for m in backlog[:3]] == ["metrics"] * 3
        assert backlog[-1]["event"] == "event"
        with db.write() as s:
            crud.append_metrics(s, rid, _rows(1001, 1050))
        live = [await _next(viewer), await _next(viewer)]  # two polls of at most 40 rows
        steps = _steps([*backlog, *live])
        assert steps == list(range(901, 1051)), "exact tail then live: none twice, none missing"
        assert [m["id"] for m in live] == ["1040", "1050"]

        near = hub.viewer(rid, since=800)
        near_messages = [await _next(near)]
        while near_messages[-1]["event"] != "event":
            near_messages.append(await _next(near))
        assert "overview" not in [m["event"] for m in near_messages]
        assert _steps(near_messages) == list(range(801, 1051))
        await viewer.aclose(), await near.aclose()
        await hub.close()

    run_async(scenario())


def test_first_viewer_cannot_miss_a_change_made_after_the_first_read(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic race: right after the first full read of a run's events, a pending command
    is applied and a new one recorded. One worker thread runs the reads in the order they are
    asked for. Before the fix the viewer's own snapshot read came first and the tail's first
    read after the change, so the viewer never heard of either change (it failed 5 times out
    of 5); now the tail's read is the only one and the viewer joins from its state."""
    rid = _running_run(db, 10)
    with db.write() as s:
        cmd = crud.record_command(s, rid, "set_lr", {"lr": 0.05}).id
    real = crud.list_events
    lock = threading.Lock()
    calls: list[int] = []
    new_cmd: list[int] = []

    def list_events(session: Any, run_id: int, *, after_id: int = 0) -> list[Any]:
        if after_id:
            return real(session, run_id, after_id=after_id)
        with lock:
            calls.append(run_id)
            first = len(calls) == 1
        if not first:
            return real(session, run_id)
        out = real(session, run_id)
        with db.write() as s:
            crud.mark_applied(s, cmd, 10)
            new_cmd.append(crud.record_command(s, rid, "pause").id)
        return out

    monkeypatch.setattr(crud, "list_events", list_events)

    async def scenario() -> None:
        to_thread.current_default_thread_limiter().total_tokens = 1
        hub = StreamHub(db, poll=0.02)
        viewer = hub.viewer(rid, since=10)
        seen: dict[int, dict[str, Any]] = {}
        while not (seen.get(cmd, {}).get("step") == 10 and new_cmd and new_cmd[0] in seen):
            message = await _next(viewer)
            if message["event"] == "event":
                seen[_data(message)["id"]] = _data(message)
        await viewer.aclose()
        await hub.close()

    run_async(scenario())
    assert calls == [rid], "one full read of the events: the tail's; the viewer reads none"


def _finish(db: Database, rid: int, last: int) -> None:
    with db.write() as s:
        crud.record_worker_event(s, rid, "finished", last)
        crud.update_run(s, rid, status="finished")


def test_finished_run_stream_ends_and_its_tail_stops(db: Database) -> None:
    rid = _running_run(db, 50)

    async def scenario() -> None:
        hub = StreamHub(db, poll=0.02)
        viewer = hub.viewer(rid, since=0)
        assert (await _next(viewer))["event"] == "status"
        tail = hub.tails[rid]
        with db.write() as s:
            crud.append_metrics(s, rid, _rows(51, 60))
        _finish(db, rid, 60)
        rest = await _rest(viewer)
        assert _steps(rest) == list(range(1, 61))
        assert rest[-1]["event"] == "status" and _data(rest[-1])["status"] == "finished"
        assert rest[-1]["id"] == "60", "the final status carries the last step as id"
        assert "finished" in [_data(m)["type"] for m in rest if m["event"] == "event"]
        assert tail.task is not None
        await asyncio.wait_for(tail.task, 5)  # the tail stops by itself
        assert hub.tails == {}

        # A new viewer of the finished run gets everything, then the final status, then the end.
        late = await _rest(hub.viewer(rid, since=20))
        assert late[0]["event"] == "status" and late[-1]["id"] == "60"
        assert _steps(late) == list(range(21, 61))
        await hub.close()

    run_async(scenario())


def test_status_messages_are_coalesced_but_the_final_one_always_comes(db: Database) -> None:
    rid = _running_run(db, 10)

    async def scenario() -> None:
        hub = StreamHub(db, poll=0.02, status_interval=3600)
        viewer = hub.viewer(rid, since=10)
        assert (await _next(viewer))["event"] == "status"
        for step in range(11, 16):  # the lr moves at every flush, as on a scheduled run
            with db.write() as s:
                crud.append_metrics(s, rid, _rows(step, step))
                crud.update_run(s, rid, lr=0.1 / step)
        got: list[dict[str, str]] = []
        while _steps(got) != list(range(11, 16)):
            got.append(await _next(viewer))
        assert {m["event"] for m in got} == {"metrics"}, "no status within the interval"
        _finish(db, rid, 15)
        rest = await _rest(viewer)
        assert _data(rest[-1])["status"] == "finished" and _data(rest[-1])["lr"] == 0.1 / 15
        await hub.close()

    run_async(scenario())


def test_a_new_status_is_not_held_back_by_the_interval(db: Database) -> None:
    rid = _running_run(db, 10)

    async def scenario() -> None:
        hub = StreamHub(db, poll=0.02, status_interval=3600)
        viewer = hub.viewer(rid, since=10)
        assert (await _next(viewer))["event"] == "status"
        with db.write() as s:
            crud.update_run(s, rid, lr=0.05)  # a rate change alone waits for the interval
        with db.write() as s:
            crud.update_run(s, rid, status="paused")
        message = await _next(viewer)
        assert message["event"] == "status" and _data(message)["status"] == "paused"
        await hub.close()

    run_async(scenario())


def test_fragments_hook_is_encoded_once_and_fanned_out(db: Database) -> None:
    rid = _running_run(db, 10)
    calls: list[tuple[int, set[str], bool]] = []

    def fragments(run_id: int, changed: set[str]) -> list[tuple[str, str]]:
        in_thread = threading.current_thread() is not threading.main_thread()
        calls.append((run_id, set(changed), in_thread))
        return [("run-status", f"<p>{len(calls)}</p>\n<p>{','.join(sorted(changed))}</p>")]

    async def scenario() -> None:
        hub = StreamHub(db, poll=0.02, fragments=fragments)
        first, second = hub.viewer(rid, since=10), hub.viewer(rid, since=10)
        for viewer in (first, second):
            status, initial = await _next(viewer), await _next(viewer)
            assert status["event"] == "status"
            assert initial == {"event": "run-status", "data": "<p>1</p>\n<p>event,status</p>"}
        assert calls == [(rid, {"status", "event"}, True)], "once when the tail starts"

        with db.write() as s:
            crud.record_command(s, rid, "pause")
            crud.append_metrics(s, rid, _rows(11, 12))
        raw = []
        for viewer in (first, second):
            got = [await asyncio.wait_for(viewer.__anext__(), 5) for _ in range(3)]
            assert [parse(m)["event"] for m in got] == ["metrics", "event", "run-status"]
            raw.append(got[-1])
        assert raw[0] is raw[1], "one encoding for every viewer"
        assert parse(raw[0])["data"] == "<p>2</p>\n<p>event</p>"
        assert raw[0].count(b"data: ") == 2, "multi-line HTML: one data line per line"
        assert calls[1] == (rid, {"event"}, True)
        await first.aclose(), await second.aclose()
        await hub.close()

    run_async(scenario())


def test_closing_the_hub_ends_every_viewer(db: Database) -> None:
    """App shutdown: viewers waiting for live messages end instead of hanging the server."""
    rid = _running_run(db, 10)

    async def scenario() -> None:
        hub = StreamHub(db, poll=0.02)
        viewer = hub.viewer(rid, since=10)
        assert (await _next(viewer))["event"] == "status"
        waiting = asyncio.ensure_future(viewer.__anext__())
        await asyncio.sleep(0)
        await hub.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 5)
        assert hub.tails == {}

    run_async(scenario())


def test_last_event_id_is_an_ascii_decimal() -> None:
    assert parse_last_event_id(" 42 ") == 42
    for bad in ("²", "٣", "-1", "1e3", "", "0x10", "9" * 40):
        assert parse_last_event_id(bad) is None, bad


def test_reconnect_to_an_ended_run_is_204_unless_behind(client: TestClient, db: Database) -> None:
    rid = _running_run(db, 60)
    _finish(db, rid, 60)
    url = f"/api/runs/{rid}/stream"
    assert client.get(url, headers={"Last-Event-ID": "60"}).status_code == 204
    assert client.get(f"{url}?since=60").status_code == 204
    with client.stream("GET", url, headers={"Last-Event-ID": "55"}) as response:
        assert response.status_code == 200
        messages = [parse(m.encode()) for m in response.read().decode().split("\r\n\r\n") if m]
    assert _steps(messages) == [56, 57, 58, 59, 60], "a client behind still gets what it misses"
    assert messages[-1]["event"] == "status" and messages[-1]["id"] == "60"
    with client.stream("GET", url, headers={"Last-Event-ID": "²".encode("latin-1")}) as response:
        assert response.status_code == 200, "a non-ASCII id is ignored, not a 500"
        assert _steps([parse(m.encode()) for m in response.read().decode().split("\r\n\r\n")
                       if m]) == list(range(1, 61))  # fmt: skip
    with db.write() as s:  # a run that ended before its first step
        empty = crud.create_run(s, config={}, status="failed").id
    fresh = client.get(f"/api/runs/{empty}/stream?since=0")
    assert fresh.status_code == 200, "since=0 is 'from the start': status and events once"
    final = [parse(m.encode()) for m in fresh.text.split("\r\n\r\n") if m][-1]
    assert final["event"] == "status" and final["id"] == "0"
    again = client.get(f"/api/runs/{empty}/stream", headers={"Last-Event-ID": "0"})
    assert again.status_code == 204
    bad = client.get(f"{url}?points=5")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "points"]


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
            name, _, value = line.partition(":")
            current[name] = value.lstrip(" ")
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
