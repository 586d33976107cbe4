"""bench/viewers.py: its SSE parsing is right (a message split across reads arrives when its last
byte does), and the script runs end to end with a few viewers (this checks the script, not the
speed: the figures come from running it)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_viewers", ROOT / "bench" / "viewers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _metrics(steps: list[int], times: list[float]) -> bytes:
    data = json.dumps({"step": steps, "time": times})
    return f"event: metrics\r\nid: {steps[-1]}\r\ndata: {data}\r\n\r\n".encode()


def test_parse_times_each_step_by_the_read_that_completed_its_message() -> None:
    bench = _bench()
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
    first, second = _metrics([5, 6], [100.0, 100.5]), _metrics([7], [101.0])
    status = b'event: status\r\ndata: {"step": 9}\r\n\r\n'
    chunks = [(100.7, head + status + first[:10]), (100.8, first[10:]), (101.2, second)]
    assert bench._parse(chunks) == (200, [(5, 100.0, 100.8), (6, 100.5, 100.8), (7, 101.0, 101.2)])
    result = bench._summarize(chunks, (100.4, 101.0))
    assert (result.first, result.last, result.exactly_once) == (5, 7, True)
    assert [round(x, 6) for x in result.latencies] == [0.3, 0.2]
    repeated = bench._summarize([*chunks, (101.3, second)], (0.0, 200.0))
    assert not repeated.exactly_once, "a step received twice is caught"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_runs_end_to_end_and_prints_every_figure() -> None:
    quick = ["--viewers", "4", "--processes", "2", "--seconds", "1", "--rounds", "1"]
    result = subprocess.run(
        [sys.executable, "bench/viewers.py", *quick],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "every step exactly once from the viewer's first step: 4/4 viewers" in out
    assert re.search(r"p50 \d+ ms \(target <= 150\), p99 \d+ ms \(target <= 500\)", out)
    assert re.search(r"steps/s, median of phases: \d+ with no viewers, \d+ with 4", out)
    assert re.search(r"server RSS with 4 viewers: \d+ MiB", out)
