"""bench/load.py: its checks catch what they are there to catch (a step twice, out of order or
missing on an SSE connection or in the stored rows, an applied command without a step, a set_lr
the next step does not show, a 5xx in the access log), and the script runs end to end with a few
clients for a few seconds (this checks the script, not the speed: the figures come from running
it)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_load", ROOT / "bench" / "load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _bench()


def _lines(event: str, steps: list[int], ident: int | None = None) -> list[str]:
    """One SSE message as the lines httpx's aiter_lines yields (its JSON on two data lines,
    which the parser joins with a newline)."""
    data = json.dumps({"step": steps, "time": [0.0] * len(steps)})
    head = [f"event: {event}"] + ([f"id: {ident}"] if ident is not None else [])
    return [*head, f"data: {data[:1]}", f"data: {data[1:]}", ""]


def _feed(check: Any, *messages: list[str]) -> None:
    for message in messages:
        for line in message:
            check.feed(line)


def _connection(prev: int, *messages: list[str]) -> Any:
    tally = bench.SseTally()
    check = bench.SseCheck(tally, 1, prev)
    _feed(check, *messages)
    return tally, check


def test_sse_check_accepts_an_overview_then_contiguous_metrics_and_the_final_status() -> None:
    status = ["event: status", 'data: {"status": "running"}', ""]
    tally, check = _connection(
        0,
        status,
        [": ping", ""],
        _lines("overview", [1, 40, 90], 90),
        _lines("metrics", [91, 92, 93], 93),
        _lines("metrics", [94], 94),
        ["event: status", "id: 94", 'data: {"status": "stopped"}', ""],
    )
    assert (tally.repeats, tally.gaps, tally.steps, tally.messages) == (0, 0, 7, 5)
    assert check.last_id == 94


def test_sse_check_resumes_right_after_last_event_id() -> None:
    tally, check = _connection(500, _lines("metrics", [501, 502], 502))
    assert (tally.repeats, tally.gaps, check.last_id) == (0, 0, 502)


@pytest.mark.parametrize(
    ("prev", "messages", "kind"),
    [
        (0, [_lines("metrics", [1, 2], 2), _lines("metrics", [2, 3], 3)], "repeats"),
        (0, [_lines("metrics", [1, 3, 2], 2)], "repeats"),
        (10, [_lines("metrics", [5, 6], 6)], "repeats"),  # before the resume point
        (0, [_lines("overview", [1, 50], 50), _lines("overview", [50, 60], 60)], "repeats"),
        (0, [_lines("metrics", [1, 2], 2), _lines("metrics", [4], 4)], "gaps"),
        (0, [_lines("metrics", [1, 2, 4], 4)], "gaps"),
        (500, [_lines("metrics", [502], 502)], "gaps"),  # a resume that skipped step 501
        (0, [_lines("metrics", [1], 1), ["event: status", "id: 3", "data: {}", ""]], "gaps"),
    ],
)
def test_sse_check_counts_a_step_twice_out_of_order_or_missing(
    prev: int, messages: list[list[str]], kind: str
) -> None:
    tally, _ = _connection(prev, *messages)
    assert getattr(tally, kind) == 1
    assert tally.repeats + tally.gaps == 1
    assert len(tally.examples) == 1 and "run 1" in tally.examples[0]


class FakeServer:
    """Answers /metrics pages from a list of stored steps (as the API would page them)."""

    def __init__(self, steps: list[int]) -> None:
        self.steps = steps

    def get(self, path: str) -> dict[str, Any]:
        query = dict(p.split("=") for p in path.split("?", 1)[1].split("&"))
        after, before = int(query["after"]), int(query.get("before", 10**18))
        got = [s for s in self.steps if after < s < before]
        return {"step": got, "lr": [0.01] * len(got)}


def test_stored_steps_pass_when_exactly_once_and_fail_on_a_gap_a_duplicate_or_an_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench, "PAGE_ROWS", 4)
    good = bench.Integrity()
    rates = bench.stored_rates(FakeServer(list(range(1, 11))), 1, 10, good)
    assert (good.step_problems, good.pages, sorted(rates)) == ([], 3, list(range(1, 11)))
    for steps in (
        [1, 2, 3, 5, 6, 7, 8, 9, 10],
        [1, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        list(range(1, 12)),
    ):
        bad = bench.Integrity()
        bench.stored_rates(FakeServer(steps), 1, 10, bad)
        assert len(bad.step_problems) == 1, steps
        assert bad.failures


def _event(ident: int, kind: str, state: str, step: int | None, **extra: Any) -> dict[str, Any]:
    stamp = "2026-12-01T10:00:00+00:00"
    applied = stamp if state == "applied" else None
    return {"id": ident, "type": kind, "state": state, "step": step, "source": "user",
            "created_at": stamp, "applied_at": applied, **extra}  # fmt: skip


def test_events_and_rates_are_checked() -> None:
    events = [
        _event(1, "set_lr", "applied", 10, lr=0.02),
        _event(2, "set_lr", "applied", 10, lr=0.005),  # the later one at step 10 wins
        _event(3, "pause", "applied", None),  # applied without a step
        _event(4, "checkpoint", "pending", None),
        _event(5, "set_lr", "applied", 20, lr=0.01),
        _event(6, "resume", "error", 30, error="run stopped before it applied"),
    ]
    out = bench.Integrity(status="stopped")
    bench.check_events(events, {1, 2, 3, 4, 5, 6, 7}, out, 1)
    assert (out.applied, out.closed, out.pending, out.missing) == (4, 1, [4], [7])
    assert out.no_step == ["run 1 event 3 (pause)"]
    bench.check_rates(events, {11: 0.005, 21: 0.02}, out)
    assert out.lr_checked == 2
    assert out.lr_problems == ["set_lr 0.01 applied at step 20, step 21 at 0.02"]
    assert len(out.failures) == 4


def test_access_log_5xx_and_routes() -> None:
    log = (
        'INFO:     127.0.0.1:5 - "GET /api/runs/12/metrics?after=3 HTTP/1.1" 500 Internal Server'
        ' Error\nINFO:     127.0.0.1:6 - "GET /api/runs/1 HTTP/1.1" 200 OK\n'
        'INFO:     127.0.0.1:7 - "POST /api/runs/7/commands HTTP/1.1" 503 Service Unavailable\n'
    )
    found = Counter(
        f"{m['status']} {bench.template(m['request'])}" for m in bench.ACCESS_5XX.finditer(log)
    )
    assert found == Counter(
        {"500 GET /api/runs/{n}/metrics": 1, "503 POST /api/runs/{n}/commands": 1}
    )
    assert bench.percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert bench.percentile([3.0, 1.0, 2.0, 4.0], 0.99) == 4.0


def test_tallies_merge() -> None:
    a, b = bench.Tally(), bench.Tally()
    a.statuses["read run"] = Counter({200: 2})
    b.statuses["read run"] = Counter({200: 1, 404: 1})
    b.server_errors[("GET", "/x", 500)] = [2, "/x", "boom"]
    b.sse.gaps, b.sse.examples = 1, ["gap"]
    a.merge(b)
    assert a.statuses["read run"] == Counter({200: 3, 404: 1})
    assert a.server_errors == {("GET", "/x", 500): [2, "/x", "boom"]}
    assert (a.sse.gaps, a.sse.examples) == (1, ["gap"])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_load_bench_runs_end_to_end_and_prints_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, "bench/load.py", "--clients", "10", "--seconds", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "10 clients (8 users, 2 SSE viewers) in 2 processes for 3 s" in out
    assert re.search(r"share of one core: server \d+%, workers \d+%, clients \d+%", out)
    assert re.search(r"read latency over \d+ reads: p50 \d+ ms, p95 \d+ ms, p99 \d+ ms", out)
    assert re.search(r"^  read run +\d+ +200: \d+", out, re.M)
    assert re.search(r"^  stream +\d+ +200: \d+", out, re.M)
    assert "5xx: 0 seen by the clients, 0 in the server's access log" in out
    assert re.search(r"steps 1\.\.\d+ stored exactly once", out)
    assert re.search(r"commands: \d+ accepted .* 0 pending, 0 missing", out)
    assert "a step twice or out of order in one connection: 0; a gap: 0" in out
    assert out.rstrip().endswith("result: PASS")
