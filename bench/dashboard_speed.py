"""How much the dashboard costs a training run, and how fast it obeys.

Measured in one run of this script, side by side on the same machine:

1. steps per second of the default digits run trained by the bare engine loop (``Trainer.step``
   plus the same evaluations the worker does, BLAS pinned to the worker's thread count);
2. steps per second of the same config trained through the dashboard: a real ``pandamode serve``
   subprocess with its worker process, metrics streamed into SQLite; read from the rows' own
   timestamps, so HTTP polling by this script does not enter the figure;
3. the time from a ``set_lr`` POST to the step boundary where it took effect, over many commands
   (each writes a checkpoint of the state before it: their count and size are printed too).

Usage: ``.venv/bin/python bench/dashboard_speed.py [--commands 40]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from app.settings import Settings
from engine import RunConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # also when loaded by path (tests/bench)

from served import Served  # noqa: E402


def bare_engine_steps_per_second(config: RunConfig, blas_threads: int) -> float:
    """The ceiling: the worker's loop with nothing around it."""
    with threadpool_limits(limits=blas_threads):
        trainer = Trainer(config)
        start = time.perf_counter()
        while not trainer.finished:
            record = trainer.step()
            if record.step % config.eval_every == 0 or trainer.finished:
                trainer.evaluate()
        elapsed = time.perf_counter() - start
    return trainer.step_count / elapsed


def dashboard_steps_per_second(dash: Served, config: RunConfig) -> float:
    run = dash.post("/api/runs", {"name": "bench-default", "config": config.model_dump()})
    path = f"/api/runs/{run['id']}"
    dash.wait_until(lambda: dash.get(path)["status"] == "finished", timeout=600, interval=0.2)
    times = dash.get(f"{path}/metrics")["time"]
    # Rows carry the time each step ended: (n - 1) steps between the first and the last.
    return (len(times) - 1) / (times[-1] - times[0])


def set_lr_latencies(dash: Served, commands: int) -> tuple[list[float], list[int]]:
    """Seconds from each POST to the moment the worker applied it (observed by polling events),
    and the sizes of the "before lr" checkpoints the commands left (each change writes one)."""
    run = dash.post("/api/runs", {"name": "bench-set-lr", "config": {"max_steps": 10_000_000}})
    path = f"/api/runs/{run['id']}"
    dash.wait_until(lambda: dash.get(path)["step"] > 20, timeout=60)
    latencies: list[float] = []
    for i in range(commands):
        lr = 10 ** (-4 + 2 * (i % 10) / 10)
        start = time.perf_counter()
        command_id = dash.post(f"{path}/commands", {"type": "set_lr", "lr": lr})["id"]

        def applied(command_id: int = command_id) -> bool:
            events = dash.get(f"{path}/events")
            return any(e["id"] == command_id and e["step"] is not None for e in events)

        dash.wait_until(applied, timeout=30, interval=0.002)
        latencies.append(time.perf_counter() - start)
    dash.post(f"{path}/commands", {"type": "stop"})
    sizes = [c["size"] for c in dash.get(f"{path}/checkpoints") if c.get("label")]
    return latencies, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=40, help="set_lr commands to time")
    args = parser.parse_args()
    config = RunConfig()
    threads = Settings().blas_threads
    engine_rate = bare_engine_steps_per_second(config, threads)
    with tempfile.TemporaryDirectory() as data_dir:
        dash = Served(Path(data_dir))
        try:
            served_rate = dashboard_steps_per_second(dash, config)
            latencies, sizes = set_lr_latencies(dash, args.commands)
            latencies.sort()
        finally:
            dash.close()
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
    print(f"default digits run ({config.hidden}, {config.optimizer}, batch {config.batch_size}, ")
    print(f"  BLAS threads {threads}), one run of bench/dashboard_speed.py:")
    print(f"  bare engine loop      {engine_rate:8.0f} steps/s")
    print(f"  through the dashboard {served_rate:8.0f} steps/s")
    print(f"  dashboard / engine    {served_rate / engine_rate:8.2f}")
    print(f"  set_lr POST -> applied, {len(latencies)} commands: ")
    print(f"    median {statistics.median(latencies) * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms")
    print(f"    'before lr' checkpoints kept: {len(sizes)}, {sum(sizes) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
