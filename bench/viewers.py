"""What 50 live viewers cost a full-speed run, and how late they see its steps.

One run of this script starts a real ``pandamode serve`` subprocess (free loopback port, temp data
directory, one worker) and one full-speed run (no pace) of the default digits model, then
measures, on that same run, one phase after another:

1. no viewers: training steps/s;
2. one SSE viewer: steps/s and step-to-viewer latency (the reference);
3. 50 SSE viewers, in 5 processes of 10 connections each (raw sockets, so the clients cost little
   CPU on this 2-core machine): steps/s, latency p50/p99, and whether every viewer got every step
   exactly once from its first step on;
4. no viewers again (the machine is shared: the two no-viewer phases bracket the others).

Latency is a message's arrival time at the viewer minus the row's ``time`` (the unix time at which
the worker stamped the step), for the steps stamped inside the phase's window; it includes the
worker's flush interval and the stream's poll interval. Training steps/s is the run's committed
step at both ends of a window. The server's RSS (from /proc) and CPU time are read per phase.
Everything runs on loopback and stops by itself (bounded by ``--seconds`` per phase).

Usage: ``.venv/bin/python bench/viewers.py [--viewers 50] [--processes 5] [--seconds 15]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # also when loaded by path (tests/bench)

from served import Served  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SEP = b"\r\n\r\n"  # sse-starlette ends every message with an empty \r\n line


class Server(Served):
    """``pandamode serve --workers 1`` (bench/served.py), with its memory and CPU time."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, "--workers", "1")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)


# -- viewers (in their own processes) ------------------------------------------------------------


async def _watch(port: int, path: str, ready: asyncio.Event, stop: asyncio.Event) -> list[Any]:
    """One SSE connection: every chunk received, with its arrival time; parsed later, so the
    client spends next to no CPU while the run is measured."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # HTTP/1.0: the body is the raw stream until the connection closes (no chunked framing).
    request = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    writer.write(request.encode())
    chunks: list[tuple[float, bytes]] = []
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while True:
            reading = asyncio.ensure_future(reader.read(1 << 16))
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                reading.cancel()
                break
            data = reading.result()
            if not data:
                break
            chunks.append((time.time(), data))
            if b"event: metrics" in data:
                ready.set()
    finally:
        stopping.cancel()
        writer.close()
    return chunks


def _parse(chunks: list[tuple[float, bytes]]) -> tuple[int, list[tuple[int, float, float]]]:
    """(HTTP status, [(step, row time, arrival time), ...]) from a connection's chunks."""
    buffer, status, out = b"", 0, []
    for arrival, data in chunks:
        buffer += data
        if not status:
            if SEP not in buffer:
                continue
            head, buffer = buffer.split(SEP, 1)
            status = int(head.split(b" ", 2)[1])
        while (end := buffer.find(SEP)) >= 0:
            message, buffer = buffer[:end], buffer[end + len(SEP) :]
            lines = message.decode().split("\r\n")
            if "event: metrics" not in lines:
                continue
            cols = json.loads("\n".join(x[6:] for x in lines if x.startswith("data: ")))
            out.extend((s, t, arrival) for s, t in zip(cols["step"], cols["time"], strict=True))
    return status, out


@dataclass
class ViewerResult:
    status: int
    first: int
    last: int
    exactly_once: bool
    latencies: array = field(default_factory=lambda: array("d"))


def _summarize(chunks: list[tuple[float, bytes]], window: tuple[float, float]) -> ViewerResult:
    status, rows = _parse(chunks)
    steps = [s for s, _, _ in rows]
    once = bool(steps) and steps == list(range(steps[0], steps[-1] + 1))
    lat = array("d", (a - t for _, t, a in rows if window[0] <= t <= window[1]))
    return ViewerResult(status, steps[0] if steps else 0, steps[-1] if steps else 0, once, lat)


def viewer_process(port: int, path: str, count: int, conn: Connection) -> None:
    """``count`` viewers in one process: says "ready" once all got metrics, watches until the
    parent sends the measurement window, then sends back one summary per viewer."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        readies = [asyncio.Event() for _ in range(count)]
        tasks = [asyncio.create_task(_watch(port, path, r, stop)) for r in readies]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
        conn.send("ready")
        window = await loop.run_in_executor(None, conn.recv)
        stop.set()
        results = await asyncio.gather(*tasks)
        conn.send([_summarize(chunks, window) for chunks in results])

    asyncio.run(main())


class Viewers:
    """``total`` viewers spread over ``processes`` processes."""

    def __init__(self, port: int, path: str, total: int, processes: int) -> None:
        ctx = mp.get_context("spawn")
        self.total = total
        sizes = [total // processes + (i < total % processes) for i in range(processes)]
        self.pipes: list[Connection] = []
        self.procs = []
        for size in sizes:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=viewer_process, args=(port, path, size, child), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        for pipe in self.pipes:
            if not pipe.poll(90) or pipe.recv() != "ready":
                raise RuntimeError("a viewer process did not connect")

    def finish(self, window: tuple[float, float]) -> list[ViewerResult]:
        for pipe in self.pipes:
            pipe.send(window)
        results: list[ViewerResult] = []
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            if not pipe.poll(120):
                raise RuntimeError("a viewer process did not answer")
            results.extend(pipe.recv())
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        return results


# -- the measurement -----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the server's worker), from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


@dataclass
class Phase:
    name: str
    viewer_count: int
    steps_per_second: float
    rss_mib: float
    # Fractions of one core used during the window by the server process, its worker (the
    # training) and all viewer processes together.
    server_cpu: float
    worker_cpu: float
    client_cpu: float
    viewers: list[ViewerResult] = field(default_factory=list)


def measure(
    server: Server, run_path: str, seconds: float, name: str, viewers: Viewers | None = None
) -> Phase:
    """One window of ``seconds`` on the running run, with the given viewers connected."""
    groups = [[server.process.pid], children(server.process.pid)]
    groups.append([p.pid for p in viewers.procs] if viewers else [])
    step0, t0 = server.get(run_path)["step"], time.time()
    cpu0 = [sum(cpu_seconds(pid) for pid in group) for group in groups]
    time.sleep(seconds)
    step1, t1 = server.get(run_path)["step"], time.time()
    cpu1 = [sum(cpu_seconds(pid) for pid in group) for group in groups]
    share = [(b - a) / (t1 - t0) for a, b in zip(cpu0, cpu1, strict=True)]
    count = viewers.total if viewers else 0
    phase = Phase(name, count, (step1 - step0) / (t1 - t0), server.rss_mib(), *share)
    if viewers is not None:
        phase.viewers = viewers.finish((t0, t1))
    return phase


def with_viewers(
    server: Server, run_path: str, seconds: float, total: int, processes: int
) -> Phase:
    """Connect ``total`` viewers (resuming at the current step), measure, disconnect them."""
    since = server.get(run_path)["step"]
    viewers = Viewers(server.port, f"{run_path}/stream?since={since}", total, processes)
    name = f"{total} viewer" + ("s" if total > 1 else "")
    return measure(server, run_path, seconds, name, viewers)


def _ms(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] * 1e3


def report(phases: list[Phase], total: int, processes: int, seconds: float) -> None:
    print("bench/viewers.py: the default digits run at full speed; one run of the script, phases")
    print(
        f"of {seconds:.0f} s in this order, all on the same run (pandamode serve, 1 worker, SQLite)"
    )
    print("CPU: share of one core during the phase (server process, its worker, viewer processes)")
    head = f"{'phase':<12}{'steps/s':>8}{'server RSS':>12}{'CPU server':>11}{'worker':>7}"
    print(f"{head}{'viewers':>8}{'p50 ms':>8}{'p99 ms':>8}")
    for p in phases:
        lat = sorted(x for v in p.viewers for x in v.latencies)
        p50 = f"{_ms(lat, 0.5):8.0f}" if lat else f"{'-':>8}"
        p99 = f"{_ms(lat, 0.99):8.0f}" if lat else f"{'-':>8}"
        print(
            f"{p.name:<12}{p.steps_per_second:8.0f}{p.rss_mib:8.0f} MiB{p.server_cpu:11.0%}"
            f"{p.worker_cpu:7.0%}{p.client_cpu:8.0%}{p50}{p99}"
        )
    none = statistics.median(p.steps_per_second for p in phases if not p.viewers)
    many = [p for p in phases if p.viewer_count == total]
    with_many = statistics.median(p.steps_per_second for p in many)
    results = [v for p in many for v in p.viewers]
    lat = sorted(x for v in results for x in v.latencies)
    ok = sum(v.status == 200 and v.exactly_once for v in results)
    print(f"{total} viewers in {processes} processes ({len(many)} phases):")
    print(
        f"  training steps/s, median of phases: {none:.0f} with no viewers, {with_many:.0f} with"
        f" {total}: {1 - with_many / none:+.1%} drop (target <= 10%)"
    )
    per_cpu = [p.steps_per_second / p.worker_cpu for p in phases if p.worker_cpu > 0]
    print(
        f"  training steps per worker CPU-second: {min(per_cpu):.0f}..{max(per_cpu):.0f} over all"
        " phases (a drop in steps/s without one here is CPU the worker did not get)"
    )
    print(f"  every step exactly once from the viewer's first step: {ok}/{len(results)} viewers")
    print(
        f"  steps received per viewer and phase: {min(v.last - v.first + 1 for v in results)}"
        f"..{max(v.last - v.first + 1 for v in results)}"
    )
    print(
        f"  step-to-viewer latency over {len(lat)} deliveries: p50 {_ms(lat, 0.5):.0f} ms"
        f" (target <= 150), p99 {_ms(lat, 0.99):.0f} ms (target <= 500)"
    )
    print(f"  server RSS with {total} viewers: {max(p.rss_mib for p in many):.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3, help="no-viewer / viewers alternations")
    args = parser.parse_args()
    if not (1 <= args.processes <= args.viewers <= 500 and 1 <= args.seconds <= 60):
        parser.error("need 1 <= processes <= viewers <= 500 and 1 <= seconds <= 60")
    if not 1 <= args.rounds <= 10:
        parser.error("need 1 <= rounds <= 10")
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(Path(data_dir))
        try:
            run = server.post(
                "/api/runs", {"name": "bench-viewers", "config": {"max_steps": 10**8}}
            )
            run_path = f"/api/runs/{run['id']}"
            server.wait_until(lambda: server.get(run_path)["step"] > 2000, timeout=60)
            phases = [with_viewers(server, run_path, args.seconds, 1, 1)]
            for _ in range(args.rounds):
                phases.append(measure(server, run_path, args.seconds, "no viewers"))
                phases.append(
                    with_viewers(server, run_path, args.seconds, args.viewers, args.processes)
                )
            phases.append(measure(server, run_path, args.seconds, "no viewers"))
            server.post(f"{run_path}/commands", {"type": "stop"})
        finally:
            server.close()
    report(phases, args.viewers, args.processes, args.seconds)


if __name__ == "__main__":
    main()
