"""Load test: many concurrent clients against one real ``pandamode serve`` while a run trains.

One run of this script starts ``pandamode serve`` (bench/served.py: free loopback port, temp data
directory, ``--workers 2``, its log in a file) and one long training run (default digits model,
constant schedule, at full speed unless ``--pace``), then lets ``--clients`` clients loose on it
for ``--seconds``, from ``--processes`` client processes (asyncio + httpx, one connection per
client, so every client really is concurrent):

- users (all but the viewers) loop over a weighted mix with a random think time between actions:
  reads (``GET /api/runs``, ``/api/runs/{id}``, ``/metrics`` with ``after=`` or ``max_points=``,
  ``/events``, ``/checkpoints``, the run page's HTML), commands (``set_lr``, ``pause`` then
  ``resume``, ``step N`` then ``resume``, ``checkpoint``) on the training run and on others,
  creates (``POST /api/runs`` of tiny configs) and forks of the training run (20 more steps);
- SSE viewers (``--viewer-share`` of the clients) watch ``/api/runs/{id}/stream`` (mostly the
  training run), each connection for 2-8 s, then reconnect with ``Last-Event-ID``, checking that
  no connection ever sees a step twice, out of order or with a gap.

Then the training run is stopped and checked from outside: its stored steps are exactly 1..N (read
through ``/metrics`` in pages), every applied command has a step, every command the clients sent
was applied or closed, and each ``set_lr`` shows as the rate of the step after the one it applied
at. It prints one block of figures; exit code 1 on any 5xx or integrity failure.

The clients run on the same 2 cores as the server and its workers, so they compete with what
they measure: the output gives their CPU share and their event loops' lag (which every latency
includes) beside the latencies.

Usage: ``.venv/bin/python bench/load.py [--clients 200] [--seconds 60] [--processes 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # also when loaded by path (tests/bench)

from served import Served  # noqa: E402
from viewers import children, cpu_seconds  # noqa: E402

READS = ("runs", "run", "metrics", "events", "checkpoints", "page")
# A user's next action: reads dominate, as on a dashboard; creates and forks are rare.
MIX = (("read", 0.84), ("command", 0.11), ("create", 0.03), ("fork", 0.02))
RATES = (0.002, 0.005, 0.01, 0.02)
DATASETS = ("spirals", "moons", "blobs")
# The training run: constant schedule, so the rate a set_lr asks is exactly the next step's rate.
TRAIN_CONFIG: dict[str, Any] = {"max_steps": 10**9, "schedule": "constant"}
PAGE_ROWS = 5000  # rows per /metrics page when the stored steps are checked
TERMINAL = {"finished", "stopped", "failed", "diverged"}
EXAMPLES = 5  # violations kept as text, per kind
# uvicorn's access log line: ... "GET /api/runs/1 HTTP/1.1" 500 Internal Server Error
ACCESS_5XX = re.compile(r'"(?P<request>[A-Z]+ \S+) HTTP/[\d.]+" (?P<status>5\d\d)')


def template(path: str) -> str:
    """The route of a request path: numbers become ``{n}``, the query goes (groups 5xx)."""
    return re.sub(r"/\d+", "/{n}", path.split("?", 1)[0])


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# -- what the clients saw ------------------------------------------------------------------------


@dataclass
class SseTally:
    connections: int = 0
    resumed: int = 0  # connections that sent Last-Event-ID
    no_content: int = 0  # 204: the run has ended and the client has everything
    ended: int = 0  # streams the server ended (a run that ended)
    messages: int = 0
    steps: int = 0
    repeats: int = 0  # a step seen twice or out of order in one connection
    gaps: int = 0  # a step missing between two messages (or before the final status)
    examples: list[str] = field(default_factory=list)

    def violation(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < 2 * EXAMPLES:
            self.examples.append(text)


@dataclass
class Tally:
    """Everything one client process observed; merged across processes at the end."""

    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    # (method, route, status) -> [count, example path, example body]
    server_errors: dict[tuple[str, str, int], list[Any]] = field(default_factory=dict)
    unexpected: dict[tuple[str, str, int], list[Any]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    commands: list[tuple[int, int, str]] = field(default_factory=list)  # (run, event id, type)
    sse: SseTally = field(default_factory=SseTally)
    loop_lag: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0

    def record(
        self, kind: str, method: str, path: str, response: httpx.Response, seconds: float,
        expect: tuple[int, ...],
    ) -> None:  # fmt: skip
        self.statuses.setdefault(kind, Counter())[response.status_code] += 1
        self.latencies.setdefault(kind, []).append(seconds)
        if response.status_code in expect:
            return
        into = self.server_errors if response.status_code >= 500 else self.unexpected
        key = (method, template(path), response.status_code)
        into.setdefault(key, [0, path, response.text[:500]])[0] += 1

    def merge(self, other: Tally) -> None:
        for kind, counts in other.statuses.items():
            self.statuses.setdefault(kind, Counter()).update(counts)
        for kind, values in other.latencies.items():
            self.latencies.setdefault(kind, []).extend(values)
        for mine, theirs in ((self.server_errors, other.server_errors),
                             (self.unexpected, other.unexpected)):  # fmt: skip
            for key, (count, path, body) in theirs.items():
                mine.setdefault(key, [0, path, body])[0] += count
        self.errors.update(other.errors)
        self.commands.extend(other.commands)
        for name in ("connections", "resumed", "no_content", "ended", "messages", "steps",
                     "repeats", "gaps"):  # fmt: skip
            setattr(self.sse, name, getattr(self.sse, name) + getattr(other.sse, name))
        self.sse.examples.extend(other.sse.examples[: 2 * EXAMPLES - len(self.sse.examples)])
        self.loop_lag.extend(other.loop_lag)
        self.cpu_seconds += other.cpu_seconds


class SseCheck:
    """Parses one SSE connection line by line and checks its steps as they arrive.

    ``prev`` is the last step the client holds (the ``since`` or ``Last-Event-ID`` it sent): every
    ``metrics`` message must start right after it, an ``overview`` anywhere after it, and steps
    only go up. ``last_id`` is what a reconnect sends as ``Last-Event-ID``.
    """

    def __init__(self, tally: SseTally, run_id: int, prev: int) -> None:
        self.tally, self.run_id, self.prev = tally, run_id, prev
        self.last_id: int | None = None
        self.event, self.id = "message", ""
        self.data: list[str] = []

    def feed(self, line: str) -> None:
        if line == "":
            if self.data or self.id:
                self._dispatch(self.event, self.id, "\n".join(self.data))
            self.event, self.id, self.data = "message", "", []
        elif line.startswith(":"):
            return  # a comment (the keep-alive ping)
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                self.event = value
            elif name == "id":
                self.id = value
            elif name == "data":
                self.data.append(value)

    def _dispatch(self, event: str, ident: str, data: str) -> None:
        self.tally.messages += 1
        where = f"run {self.run_id}, {event}"
        if event in ("metrics", "overview"):
            steps = json.loads(data)["step"]
            if steps:
                self._check(event, steps, where)
        if ident:
            self.last_id = int(ident)
            if event == "status" and self.last_id > self.prev:  # the final status
                self.tally.violation(
                    "gaps", f"{where}: final id {self.last_id}, last step seen {self.prev}"
                )

    def _check(self, event: str, steps: list[int], where: str) -> None:
        if steps[0] <= self.prev or any(b <= a for a, b in pairwise(steps)):
            self.tally.violation(
                "repeats", f"{where}: steps {steps[0]}..{steps[-1]} after step {self.prev}"
            )
        elif event == "metrics" and (
            steps[0] != self.prev + 1 or steps[-1] - steps[0] != len(steps) - 1
        ):
            self.tally.violation(
                "gaps", f"{where}: steps {steps[0]}..{steps[-1]} ({len(steps)} rows) after "
                f"step {self.prev}",
            )  # fmt: skip
        self.tally.steps += len(steps)
        self.prev = max(self.prev, steps[-1])


# -- the clients (in their own processes) --------------------------------------------------------


@dataclass
class Plan:
    base: str
    train_id: int
    users: int
    viewers: int
    think: float
    timeout: float
    seed: int


@dataclass
class Known:
    """Runs a client process knows of: the training run and the ones it created or forked."""

    train: int
    train_step: int = 0
    checkpoints: list[int] = field(default_factory=list)  # the training run's, as last listed
    others: list[int] = field(default_factory=list)

    def pick(self, rng: random.Random, train_share: float = 0.7) -> int:
        if not self.others or rng.random() < train_share:
            return self.train
        return rng.choice(self.others)


class Clients:
    """The users and viewers of one process, sharing one httpx client (a connection each)."""

    def __init__(self, plan: Plan, client: httpx.AsyncClient, deadline: float) -> None:
        self.plan, self.client, self.deadline = plan, client, deadline
        self.tally = Tally()
        self.known = Known(plan.train_id)
        self.created = 0

    async def call(
        self, kind: str, method: str, path: str, *, body: Any = None,
        params: dict[str, Any] | None = None, expect: tuple[int, ...] = (200,),
    ) -> httpx.Response | None:  # fmt: skip
        started = time.perf_counter()
        try:
            response = await self.client.request(method, path, json=body, params=params)
        except httpx.TimeoutException as exc:
            self.tally.errors[f"{kind}: timeout ({type(exc).__name__})"] += 1
            return None
        except httpx.HTTPError as exc:
            self.tally.errors[f"{kind}: {type(exc).__name__}"] += 1
            return None
        shown = path + ("?" + str(httpx.QueryParams(params)) if params else "")
        self.tally.record(kind, method, shown, response, time.perf_counter() - started, expect)
        return response

    # users

    async def user(self, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0, 1))  # do not all start in the same millisecond
        actions = {"read": self.read, "command": self.command, "create": self.create,
                   "fork": self.fork}  # fmt: skip
        names, weights = zip(*MIX, strict=True)
        while time.time() < self.deadline:
            await actions[rng.choices(names, weights)[0]](rng)
            await asyncio.sleep(rng.expovariate(1 / self.plan.think) if self.plan.think else 0)

    async def read(self, rng: random.Random) -> None:
        what, run = rng.choice(READS), self.known.pick(rng)
        if what == "runs":
            await self.call("read runs", "GET", "/api/runs")
        elif what == "run":
            response = await self.call("read run", "GET", f"/api/runs/{run}")
            if response is not None and response.status_code == 200 and run == self.known.train:
                self.known.train_step = int(response.json()["step"])
        elif what == "metrics":
            step = self.known.train_step if run == self.known.train else 0
            if rng.random() < 0.5:  # a live chart's catch-up
                params = {"after": max(0, step - rng.randint(0, 2000))}
            else:  # an overview of the run
                params = {"after": 0, "max_points": rng.choice((200, 1000, 2000))}
            await self.call("read metrics", "GET", f"/api/runs/{run}/metrics", params=params)
        elif what == "page":
            await self.call("read page", "GET", f"/runs/{run}")
        else:
            response = await self.call(f"read {what}", "GET", f"/api/runs/{run}/{what}")
            ok = response is not None and response.status_code == 200
            if ok and what == "checkpoints" and run == self.known.train:
                self.known.checkpoints = [int(c["step"]) for c in response.json()]

    async def _command(self, run: int, body: dict[str, Any]) -> None:
        expect = (202,) if run == self.known.train else (202, 409)  # others may have ended
        response = await self.call("command", "POST", f"/api/runs/{run}/commands", body=body,
                                   expect=expect)  # fmt: skip
        if response is not None and response.status_code == 202:
            self.tally.commands.append((run, int(response.json()["id"]), body["type"]))

    async def command(self, rng: random.Random) -> None:
        run = self.known.pick(rng)
        what = rng.choice(("set_lr", "pause", "step", "checkpoint"))
        if what == "set_lr":
            await self._command(run, {"type": "set_lr", "lr": rng.choice(RATES)})
        elif what == "checkpoint":
            await self._command(run, {"type": "checkpoint"})
        else:  # pause, or a few steps; then resume after a moment, as a person would
            body = (
                {"type": "pause"} if what == "pause" else {"type": "step", "n": rng.randint(1, 50)}
            )
            await self._command(run, body)
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            await self._command(run, {"type": "resume"})

    async def create(self, rng: random.Random) -> None:
        self.created += 1
        config = {"dataset": rng.choice(DATASETS), "hidden": [8], "batch_size": 32,
                  "max_steps": rng.randint(20, 60), "eval_every": 10}  # fmt: skip
        body = {"name": f"load {os.getpid()}-{self.created}", "config": config}
        response = await self.call("create", "POST", "/api/runs", body=body, expect=(201,))
        if response is not None and response.status_code == 201:
            self.known.others.append(int(response.json()["id"]))

    async def fork(self, rng: random.Random) -> None:
        """From a checkpoint this client has seen listed, as the run page does (409 when it has
        been thinned out since), or ``nearest`` to any step."""
        train = self.known.train
        body: dict[str, Any] = {"more_steps": 20, "name": "load fork"}
        if self.known.checkpoints and rng.random() < 0.5:
            body["step"], expect = rng.choice(self.known.checkpoints), (201, 409)
        else:
            body["step"], body["nearest"] = rng.randint(0, self.known.train_step), True
            expect = (201,)
        response = await self.call("fork", "POST", f"/api/runs/{train}/fork", body=body,
                                   expect=expect)  # fmt: skip
        if response is not None and response.status_code == 201:
            self.known.others.append(int(response.json()["id"]))

    # viewers

    async def viewer(self, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0, 1))
        run, last_id = self.known.pick(rng, 0.8), None
        while (left := self.deadline - time.time()) > 0:
            last_id, over = await self.watch(run, last_id, min(rng.uniform(2, 8), left))
            if over:  # the run ended and this viewer has all of it: open another one
                run, last_id = self.known.pick(rng, 0.8), None
                await asyncio.sleep(rng.uniform(0, 0.5))

    async def watch(self, run: int, last_id: int | None, hold: float) -> tuple[int | None, bool]:
        """One connection for ``hold`` seconds; (the id to resume from, the run has ended)."""
        sse = self.tally.sse
        headers = {"Accept": "text/event-stream"}
        params: dict[str, Any] = {}
        if last_id is None:
            params["since"] = 0  # a page opened afresh
        else:
            headers["Last-Event-ID"] = str(last_id)
            sse.resumed += 1
        sse.connections += 1
        check = SseCheck(sse, run, last_id or 0)
        path = f"/api/runs/{run}/stream"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(hold):
                async with self.client.stream(
                    "GET", path, params=params, headers=headers, timeout=httpx.Timeout(
                        self.plan.timeout, read=max(self.plan.timeout, 40.0))  # pings every 15 s
                ) as response:  # fmt: skip
                    self.tally.record("stream", "GET", path, response,
                                      time.perf_counter() - started, (200, 204))  # fmt: skip
                    if response.status_code == 204:
                        sse.no_content += 1
                        return last_id, True
                    if response.status_code != 200:
                        return last_id, True
                    async for line in response.aiter_lines():
                        check.feed(line)
                    sse.ended += 1
                    return check.last_id if check.last_id is not None else last_id, True
        except TimeoutError:  # held as long as planned: the viewer goes away and comes back
            pass
        except httpx.TimeoutException as exc:
            self.tally.errors[f"stream: timeout ({type(exc).__name__})"] += 1
        except httpx.HTTPError as exc:
            self.tally.errors[f"stream: {type(exc).__name__}"] += 1
        return (check.last_id if check.last_id is not None else last_id), False

    async def lag_probe(self) -> None:
        """How late this process's event loop wakes up: part of every latency it measures."""
        while time.time() < self.deadline:
            started = time.perf_counter()
            await asyncio.sleep(0.1)
            self.tally.loop_lag.append(time.perf_counter() - started - 0.1)


async def run_clients(plan: Plan, conn: Connection) -> Tally:
    total = plan.users + plan.viewers
    # Idle connections expire well before uvicorn's 5 s keep-alive, even with a late event
    # loop, so no request goes out on a connection the server is closing.
    limits = httpx.Limits(
        max_connections=total + 8, max_keepalive_connections=total + 8, keepalive_expiry=2.0
    )
    timeout = httpx.Timeout(plan.timeout)
    async with httpx.AsyncClient(base_url=plan.base, limits=limits, timeout=timeout) as client:
        conn.send("ready")
        start, seconds = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await asyncio.sleep(max(0.0, start - time.time()))
        clients = Clients(plan, client, start + seconds)
        cpu = time.process_time()
        rng = random.Random(plan.seed)
        tasks = [clients.user(random.Random(rng.random())) for _ in range(plan.users)]
        tasks += [clients.viewer(random.Random(rng.random())) for _ in range(plan.viewers)]
        await asyncio.gather(clients.lag_probe(), *tasks)
        clients.tally.cpu_seconds = time.process_time() - cpu
    return clients.tally


def client_process(plan: Plan, conn: Connection) -> None:
    conn.send(asyncio.run(run_clients(plan, conn)))


def drive(base: str, train_id: int, args: argparse.Namespace) -> tuple[Tally, float, float]:
    """Run the clients; (their merged tally, window start, window end)."""
    ctx = mp.get_context("spawn")
    viewers = round(args.clients * args.viewer_share)
    users = args.clients - viewers
    procs, pipes = [], []
    for i in range(args.processes):
        share_u = users // args.processes + (i < users % args.processes)
        share_v = viewers // args.processes + (i < viewers % args.processes)
        plan = Plan(base, train_id, share_u, share_v, args.think, args.timeout, args.seed + i)
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=client_process, args=(plan, child), daemon=True)
        proc.start()
        procs.append(proc)
        pipes.append(parent)
    for pipe in pipes:
        if not pipe.poll(120) or pipe.recv() != "ready":
            raise RuntimeError("a client process did not start")
    start = time.time() + 0.5
    for pipe in pipes:
        pipe.send((start, args.seconds))
    tally = Tally()
    for pipe, proc in zip(pipes, procs, strict=True):
        if not pipe.poll(args.seconds + args.timeout + 120):
            raise RuntimeError("a client process did not finish")
        tally.merge(pipe.recv())
        proc.join(10)
    return tally, start, time.time()


# -- the server and the integrity check ----------------------------------------------------------


class LoggedServer(Served):
    """``pandamode serve`` as bench/served.py starts it, with its output (access log, tracebacks)
    in a file, so a 5xx can be traced to its cause."""

    log: Path

    def logged_5xx(self) -> Counter[str]:
        """5xx answers in the server's access log, by request line: also those whose client
        had given up waiting (a timeout on the client's side)."""
        found: Counter[str] = Counter()
        for match in ACCESS_5XX.finditer(self.log.read_text(errors="replace")):
            found[f"{match['status']} {template(match['request'])}"] += 1
        return found

    def tracebacks(self, limit: int = 3) -> list[str]:
        """The first distinct tracebacks in the server's log (the last 25 lines of each)."""
        found: list[str] = []
        block: list[str] = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("Traceback (most recent call last):"):
                block = [line]
            elif block and line[:1].isspace():
                block.append(line)
            elif block:  # the exception's own line ends the block
                text = "\n".join([*block, line][-25:])
                if text not in found:
                    found.append(text)
                block = []
        return found[:limit]


@dataclass
class Integrity:
    steps: int = 0
    pages: int = 0
    step_problems: list[str] = field(default_factory=list)
    events: int = 0
    applied: int = 0
    closed: int = 0  # commands closed with an error (sent to a run that then ended, ...)
    pending: list[int] = field(default_factory=list)
    no_step: list[str] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)  # command ids the clients got, not listed
    lr_checked: int = 0
    lr_problems: list[str] = field(default_factory=list)
    others_checked: int = 0
    status: str = ""
    stop_seconds: float = 0.0  # from the stop's 202 to the run's final status
    lags: list[float] = field(default_factory=list)  # applied_at - created_at of its commands

    @property
    def failures(self) -> list[str]:
        out = [f"stored steps: {p}" for p in self.step_problems[:EXAMPLES]]
        out += [f"applied without a step: {p}" for p in self.no_step[:EXAMPLES]]
        out += [f"command {i} still pending after the run stopped" for i in self.pending[:EXAMPLES]]
        out += [f"command {i} not in the run's events" for i in self.missing[:EXAMPLES]]
        out += [f"set_lr: {p}" for p in self.lr_problems[:EXAMPLES]]
        if self.status != "stopped":
            out.append(f"the training run ended {self.status!r}, not 'stopped'")
        return out


def stop_run(server: Served, run_id: int, timeout: float = 120.0) -> tuple[str, float]:
    """Stop the training run and wait until it has; (its final status, seconds it took)."""
    server.post(f"/api/runs/{run_id}/commands", {"type": "stop"})
    started = time.monotonic()
    server.wait_until(lambda: server.get(f"/api/runs/{run_id}")["status"] in TERMINAL, timeout)
    return str(server.get(f"/api/runs/{run_id}")["status"]), time.monotonic() - started


def stored_rates(server: Served, run_id: int, n: int, out: Integrity) -> dict[int, float]:
    """Page through /metrics: steps 1..n each exactly once; returns each step's lr."""
    rates: dict[int, float] = {}
    after = 0
    while after < n:
        upto = min(after + PAGE_ROWS, n)
        cols = server.get(f"/api/runs/{run_id}/metrics?after={after}&before={upto + 1}")
        out.pages += 1
        if cols["step"] != list(range(after + 1, upto + 1)):
            got = cols["step"]
            dupes = len(got) - len(set(got))
            missing = len(set(range(after + 1, upto + 1)) - set(got))
            out.step_problems.append(
                f"steps {after + 1}..{upto}: {len(got)} rows, {missing} missing, {dupes} twice"
            )
        rates.update(zip(cols["step"], cols["lr"], strict=True))
        after = upto
    beyond = server.get(f"/api/runs/{run_id}/metrics?after={n}")["step"]
    if beyond:
        out.step_problems.append(f"{len(beyond)} rows after the run's step {n}")
    out.steps = n
    return rates


def check_events(events: list[dict[str, Any]], sent: set[int], out: Integrity, run_id: int) -> None:
    """Applied commands have a step; the ones the clients sent are applied or closed."""
    by_id = {e["id"]: e for e in events}
    out.missing += sorted(sent - by_id.keys())
    for event in events:
        if event.get("source") != "user":
            continue
        if event["state"] == "applied":
            out.applied += 1
            if event["applied_at"] and event["created_at"]:
                applied = datetime.fromisoformat(event["applied_at"])
                out.lags.append(
                    (applied - datetime.fromisoformat(event["created_at"])).total_seconds()
                )
            if event["step"] is None:
                out.no_step.append(f"run {run_id} event {event['id']} ({event['type']})")
        elif event["state"] == "error":
            out.closed += 1
        else:
            out.pending.append(event["id"])
    out.events += len(events)


def check_rates(events: list[dict[str, Any]], rates: dict[int, float], out: Integrity) -> None:
    """A set_lr applied at step k (the last one applied there) is the rate of step k + 1."""
    asked: dict[int, float] = {}
    for event in sorted(events, key=lambda e: e["id"]):
        if event["type"] == "set_lr" and event["state"] == "applied" and event["step"] is not None:
            asked[int(event["step"])] = float(event["lr"])
    for step, lr in asked.items():
        if step + 1 not in rates:
            continue
        out.lr_checked += 1
        shown = float(rates[step + 1])
        if abs(shown - lr) > 1e-6 * lr:
            out.lr_problems.append(
                f"set_lr {lr} applied at step {step}, step {step + 1} at {shown}"
            )


def check_integrity(server: Served, run_id: int, commands: list[tuple[int, int, str]]) -> Integrity:
    out = Integrity()
    out.status, out.stop_seconds = stop_run(server, run_id)
    n = int(server.get(f"/api/runs/{run_id}")["step"])
    rates = stored_rates(server, run_id, n, out)
    events = server.get(f"/api/runs/{run_id}/events")
    check_events(events, {i for r, i, _ in commands if r == run_id}, out, run_id)
    check_rates(events, rates, out)
    # Other runs the clients commanded: applied commands have a step there too (a sample).
    others = sorted({r for r, _, _ in commands if r != run_id})
    for other in random.Random(0).sample(others, min(20, len(others))):
        listed = server.get(f"/api/runs/{other}/events")
        no_step = [e for e in listed if e["state"] == "applied" and e["step"] is None]
        out.no_step += [f"run {other} event {e['id']} ({e['type']})" for e in no_step]
        out.others_checked += 1
    return out


# -- the report ----------------------------------------------------------------------------------


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1e3:.0f}"


@dataclass
class Measured:
    """What one run of the script measured, for the report."""

    run_id: int
    tally: Tally
    seconds: float  # the window's length
    cpu: dict[str, float]  # share of one core: server, workers, clients
    load: tuple[float, float]  # load average before and after
    integrity: Integrity = field(default_factory=Integrity)
    logged: Counter[str] = field(default_factory=Counter)  # 5xx in the server's access log


def report(args: argparse.Namespace, m: Measured) -> list[str]:
    """Print the figures; returns the failures (5xx and integrity)."""
    tally, integrity, cpu, load, logged, run_id = (
        m.tally, m.integrity, m.cpu, m.load, m.logged, m.run_id
    )  # fmt: skip
    seconds = m.seconds
    viewers = round(args.clients * args.viewer_share)
    pace = f"at {args.pace:g} steps/s" if args.pace else "at full speed"
    print(f"bench/load.py: {args.clients} clients ({args.clients - viewers} users, {viewers} SSE "
          f"viewers) in {args.processes} processes for {args.seconds:g} s, mean think time "
          f"{args.think:g} s")  # fmt: skip
    print(f"  against pandamode serve (--workers {args.workers}, SQLite), run #{run_id} training "
          f"{pace} throughout")  # fmt: skip
    print(f"  the clients share this machine's {os.cpu_count()} cores with the server and its "
          "workers (they compete with what they measure):")  # fmt: skip
    print(f"  CPU over the window, share of one core: server {cpu['server']:.0%}, workers "
          f"{cpu['workers']:.0%}, clients {cpu['clients']:.0%}; load average "
          f"{load[0]:.1f} -> {load[1]:.1f}")  # fmt: skip
    print(f"  client event-loop lag (in every latency below): p50 {_ms(tally.loop_lag, 0.5)} ms, "
          f"p99 {_ms(tally.loop_lag, 0.99)} ms")  # fmt: skip
    print("requests per kind (status: count):")
    total = 0
    for kind in sorted(tally.statuses):
        counts = tally.statuses[kind]
        total += sum(counts.values())
        shown = ", ".join(f"{code}: {n}" for code, n in sorted(counts.items()))
        lat = tally.latencies[kind]
        print(f"  {kind:<18}{sum(counts.values()):>7}   {shown:<28} p50 {_ms(lat, 0.5):>5} ms, "
              f"p99 {_ms(lat, 0.99):>5} ms")  # fmt: skip
    print(f"  total {total} requests, {total / seconds:.0f} per second")
    reads = [x for k, v in tally.latencies.items() if k.startswith("read") for x in v]
    print(f"read latency over {len(reads)} reads: p50 {_ms(reads, 0.5)} ms, p95 "
          f"{_ms(reads, 0.95)} ms, p99 {_ms(reads, 0.99)} ms")  # fmt: skip
    fivexx = sum(count for count, _, _ in tally.server_errors.values())
    print(f"5xx: {fivexx} seen by the clients, {sum(logged.values())} in the server's access log")
    for (method, route, code), (count, path, body) in sorted(tally.server_errors.items()):
        print(f"  {count} x {code} {method} {route}, e.g. {path}: {body}")
    for line, count in sorted(logged.items()):
        print(f"  logged: {count} x {line}")
    print(f"other errors (timeouts, connection errors): {sum(tally.errors.values())}")
    for what, count in sorted(tally.errors.items()):
        print(f"  {count} x {what}")
    if tally.unexpected:
        print("other statuses than expected (not failures):")
        for (method, route, code), (count, path, body) in sorted(tally.unexpected.items()):
            print(f"  {count} x {code} {method} {route}, e.g. {path}: {body[:200]}")
    ok = "exactly once" if not integrity.step_problems else "NOT exactly once"
    print(f"training run #{run_id} ({integrity.status} after the load): steps 1..{integrity.steps}"
          f" stored {ok} ({integrity.pages} pages of /metrics)")  # fmt: skip
    for problem in integrity.step_problems[:EXAMPLES]:
        print(f"  {problem}")
    sent = sum(r == run_id for r, _, _ in tally.commands)
    print(f"  commands: {sent} accepted from the clients, {integrity.applied} applied (without a "
          f"step: {len(integrity.no_step)}), {integrity.closed} closed unapplied, "
          f"{len(integrity.pending)} pending, {len(integrity.missing)} missing")  # fmt: skip
    print(f"  commands took effect (applied_at - created_at) after p50 {_ms(integrity.lags, 0.5)} "
          f"ms, p99 {_ms(integrity.lags, 0.99)} ms, max {_ms(integrity.lags, 1)} ms; the final "
          f"stop {integrity.stop_seconds:.1f} s")  # fmt: skip
    print(f"  set_lr: {integrity.lr_checked - len(integrity.lr_problems)}/{integrity.lr_checked}"
          " show as the rate of the step after the one they applied at")  # fmt: skip
    print(f"  other runs commanded: {integrity.others_checked} checked, applied commands without "
          "a step counted above")  # fmt: skip
    sse = tally.sse
    print(f"SSE: {sse.connections} connections ({sse.resumed} resumed with Last-Event-ID, "
          f"{sse.no_content} answered 204, {sse.ended} ended by the server), {sse.messages} "
          f"messages, {sse.steps} steps received")  # fmt: skip
    print(f"  a step twice or out of order in one connection: {sse.repeats}; a gap: {sse.gaps}")
    for example in sse.examples:
        print(f"  {example}")
    failures = [f"{max(fivexx, sum(logged.values()))} responses 5xx"] if fivexx or logged else []
    failures += integrity.failures
    if sse.repeats or sse.gaps:
        failures.append(f"SSE: {sse.repeats} repeated/out-of-order, {sse.gaps} gaps")
    print("result: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--viewer-share", type=float, default=0.25, help="clients that are viewers")
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between actions")
    parser.add_argument("--pace", type=float, default=None, help="training run's steps/s cap")
    parser.add_argument("--workers", type=int, default=2, help="serve --workers")
    parser.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-log", type=Path, help="keep the server's log in this file")
    args = parser.parse_args(argv)
    if not (1 <= args.processes <= args.clients <= 2000 and 1 <= args.seconds <= 3600):
        parser.error("need 1 <= processes <= clients <= 2000 and 1 <= seconds <= 3600")
    if not (0 <= args.viewer_share <= 1 and args.think >= 0 and 1 <= args.workers <= 8):
        parser.error("need 0 <= viewer-share <= 1, think >= 0 and 1 <= workers <= 8")
    with tempfile.TemporaryDirectory() as data_dir:
        log = args.server_log or Path(data_dir) / "server.log"
        server = LoggedServer(Path(data_dir) / "data", "--workers", str(args.workers), log=log)
        try:
            body: dict[str, Any] = {"name": "load: training", "config": TRAIN_CONFIG}
            if args.pace:
                body["pace"] = args.pace
            run_id = int(server.post("/api/runs", body)["id"])
            server.wait_until(lambda: server.get(f"/api/runs/{run_id}")["step"] >= 50, 120)
            pids = [server.process.pid, *children(server.process.pid)]
            cpu0 = [cpu_seconds(pid) for pid in pids]
            load0 = os.getloadavg()[0]
            tally, *window = drive(server.base, run_id, args)
            cpu1 = [cpu_seconds(pid) for pid in pids]
            load1 = os.getloadavg()[0]
            wall = window[1] - window[0]
            used = [(b - a) / wall for a, b in zip(cpu0, cpu1, strict=True)]
            cpu = {"server": used[0], "workers": sum(used[1:]), "clients": tally.cpu_seconds / wall}
            measured = Measured(run_id, tally, wall, cpu, (load0, load1))
            measured.integrity = check_integrity(server, run_id, tally.commands)
        finally:
            server.close()
        measured.logged = server.logged_5xx()
        failures = report(args, measured)
        if tally.server_errors or measured.logged:
            print(f"server log: {log}" if args.server_log else "server tracebacks:")
            for text in server.tracebacks():
                print(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
