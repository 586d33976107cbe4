"""Caviar mode's throughput: a random search on digits with 1 worker and with 2.

One run of this script starts a real ``pandamode serve --workers N`` (bench/served.py: free
loopback port, temp data directory) for each N in ``--workers`` (1 and 2 by default), creates the
same study on each (``--trials`` trials of ``--steps`` steps on digits, ``parallel`` N, random
sampler, fixed seed, so both servers train exactly the same trials) and times it from the POST to
the study's ``finished`` status. It prints trials per minute for each N and the speedup of the
largest N over 1, with the machine's load average (the machine may be shared: the figure is
what was measured, whatever the load), then trains the default digits config for the same
number of steps on the last server and compares its best validation accuracy with the best
trial's (the trial with the lowest validation loss, as the study ranks them).

Space: lr log-uniform in [1e-4, 1], weight_decay log-uniform in [1e-6, 1e-2], dropout uniform in
[0, 0.5]. Every trial runs at full speed (no pace), one worker process per trial, each worker
on one BLAS thread (``serve`` pins it).

Usage: ``.venv/bin/python bench/studies.py [--trials 16] [--steps 300] [--workers 1,2]``;
a smoke run: ``--trials 2 --steps 20 --workers 1,2``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # also when loaded by path (tests/bench)

from served import Served  # noqa: E402

SPACE = {
    "lr": {"low": 1e-4, "high": 1.0, "log": True},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
}
SEED = 2026
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    """One study on one server."""

    workers: int
    seconds: float
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    load_before: float
    load_after: float
    train_seconds: list[float]
    server_cpu: float

    @property
    def per_minute(self) -> float:
        return 60.0 * len(self.trials) / self.seconds


def study_body(trials: int, steps: int, parallel: int) -> dict[str, Any]:
    """The study both servers run (same seed: the same trials)."""
    return {
        "name": f"bench {trials}x{steps} on {parallel} workers",
        "config": {"dataset": "digits", "max_steps": steps},
        "space": SPACE,
        "n_trials": trials,
        "parallel": parallel,
        "sampler": "random",
        "seed": SEED,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (the server's: its HTTP threads and the study
    driver; the workers are processes of their own)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run_study(server: Served, trials: int, steps: int, workers: int, timeout: float) -> Measured:
    """Create the study and wait for it to finish; the wall time from the POST."""
    load_before = os.getloadavg()[0]
    cpu = cpu_seconds(server.process.pid)
    started = time.monotonic()
    sid = server.post("/api/studies", study_body(trials, steps, workers))["id"]
    server.wait_until(
        lambda: server.get(f"/api/studies/{sid}")["status"] == "finished", timeout, interval=0.1
    )
    seconds = time.monotonic() - started
    cpu = cpu_seconds(server.process.pid) - cpu
    study = server.get(f"/api/studies/{sid}")
    train = [training_seconds(server, t["run_id"]) for t in study["trials"]]
    return Measured(
        workers,
        seconds,
        study["trials"],
        study["best"],
        load_before,
        os.getloadavg()[0],
        train,
        cpu,
    )


def training_seconds(server: Served, run_id: int) -> float:
    """From the end of a trial's first step to the end of its last (the rows' ``time``): the
    training itself, without the time to create, claim, load and end the run."""
    times = server.get(f"/api/runs/{run_id}/metrics")["time"]
    return float(times[-1] - times[0]) if len(times) > 1 else 0.0


def default_run(server: Served, steps: int, timeout: float) -> dict[str, Any]:
    """The default digits config for the same number of steps."""
    run = server.post("/api/runs", {"config": {"dataset": "digits", "max_steps": steps}})
    server.wait_until(lambda: server.get(f"/api/runs/{run['id']}")["status"] == "finished", timeout)
    return dict(server.get(f"/api/runs/{run['id']}"))


def fmt_acc(value: Any) -> str:
    return "n/a" if not isinstance(value, float) else f"{value:.4f}"


def report(results: list[Measured], default: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the figures (tests/bench/test_studies_bench.py reads these lines)."""
    print(
        f"study: {args.trials} trials x {args.steps} steps on digits, random search over "
        f"lr (log 1e-4..1), weight_decay (log 1e-6..1e-2), dropout (0..0.5); "
        f"{os.cpu_count()} CPUs"
    )
    for m in results:
        done = sum(1 for t in m.trials if t["state"] == "complete")
        print(
            f"{m.workers} worker(s): {len(m.trials)} trials in {m.seconds:.1f} s = "
            f"{m.per_minute:.1f} trials/min ({done} complete; load average "
            f"{m.load_before:.2f} before, {m.load_after:.2f} after)"
        )
        busy = sum(m.train_seconds) / (m.workers * m.seconds)
        print(
            f"  training per trial {sum(m.train_seconds) / len(m.train_seconds):.2f} s (first "
            f"to last step); workers training {100 * busy:.0f}% of the wall time; the server "
            f"process (HTTP and study driver) used {m.server_cpu:.2f} s of CPU"
        )
    base = next((m for m in results if m.workers == 1), None)
    top = max(results, key=lambda m: m.workers)
    if base is not None and top is not base:
        print(
            f"speedup {top.workers} workers over 1: {top.per_minute / base.per_minute:.2f}x "
            f"(aim: at least 1.7x on 2 cores)"
        )
    best = top.best
    if best is not None:
        params = ", ".join(f"{k} {v:.3g}" for k, v in best["params"].items())
        print(
            f"best trial (lowest val loss): #{best['number']} ({params}): val acc "
            f"{fmt_acc(best['best_val_acc'])}, val loss {best['best_val_loss']:.4f}"
        )
    accs = [t["best_val_acc"] for t in top.trials if isinstance(t["best_val_acc"], float)]
    if accs:
        print(f"highest val acc of any trial: {max(accs):.4f}")
    print(
        f"default config, {args.steps} steps: val acc {fmt_acc(default.get('best_val_acc'))}, "
        f"val loss {default.get('best_val_loss')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per study")
    args = parser.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    results = []
    default: dict[str, Any] = {}
    for i, workers in enumerate(counts):
        with (
            tempfile.TemporaryDirectory() as tmp,
            Served(Path(tmp), "--workers", str(workers)) as server,
        ):
            results.append(run_study(server, args.trials, args.steps, workers, args.timeout))
            if i == len(counts) - 1:
                default = default_run(server, args.steps, args.timeout)
    report(results, default, args)


if __name__ == "__main__":
    main()
