"""Starts N worker subprocesses for ``serve``, restarts one that dies, stops them cleanly.

Workers are processes, not threads: a NumPy step loop would fight the web server for the GIL.
Children get the parent's settings through ``PANDAMODE_*`` environment variables.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.settings import Settings

log = logging.getLogger(__name__)

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
RESTART_BACKOFF_MAX = 30.0
HEALTHY_LIFETIME = 60.0


class Supervisor:
    """Keeps ``count`` worker processes alive until ``stop``."""

    def __init__(self, settings: Settings, count: int, *, check_interval: float = 0.5) -> None:
        self.settings = settings
        self.count = count
        self.check_interval = check_interval
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._backoff = [0.0] * count
        self._next_start = [0.0] * count
        self._started = [0.0] * count
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.settings.to_env())
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = _PROJECT_ROOT + (os.pathsep + path if path else "")
        # BLAS pools sized like the pinned thread count from the start: each pool thread costs
        # address space (stack, buffers, a malloc arena), which the worker's RLIMIT_AS counts.
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, str(self.settings.blas_threads))
        return env

    def _spawn(self, slot: int) -> None:
        cmd = [
            sys.executable, "-m", "app.worker", "--db", self.settings.database_url,
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        # A session of its own: Ctrl-C in the terminal reaches only the server, which then stops
        # the workers in order (checkpoint, hand back); --parent-pid makes an orphan exit.
        proc = subprocess.Popen(cmd, env=self._env(), start_new_session=True)
        self.procs[slot] = proc
        self._started[slot] = time.monotonic()
        log.info("started worker %d (pid %d)", slot, proc.pid)

    def start(self) -> None:
        """Start the workers and the thread that watches them."""
        with self._lock:
            for slot in range(self.count):
                self._spawn(slot)
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(self.check_interval):
            with self._lock:
                if self._stopping.is_set():
                    return
                for slot, proc in enumerate(self.procs):
                    if proc is not None and proc.poll() is None:
                        continue
                    self._restart(slot, proc)

    def _restart(self, slot: int, proc: subprocess.Popen[bytes] | None) -> None:
        """Respawn a dead worker, backing off if it keeps dying (a crash loop must not spin)."""
        now = time.monotonic()
        if proc is not None:
            log.warning("worker %d (pid %d) exited with %s", slot, proc.pid, proc.returncode)
            self.procs[slot] = None
            if now - self._started[slot] >= HEALTHY_LIFETIME:
                self._backoff[slot] = 0.0
            else:
                self._backoff[slot] = min(max(1.0, self._backoff[slot] * 2), RESTART_BACKOFF_MAX)
            self._next_start[slot] = now + self._backoff[slot]
        if now >= self._next_start[slot]:
            self._spawn(slot)

    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM every worker (they checkpoint and release their runs), SIGKILL stragglers."""
        self._stopping.set()
        with self._lock:
            live = [p for p in self.procs if p is not None and p.poll() is None]
            for proc in live:
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for proc in live:
                try:
                    proc.wait(max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    log.warning(
                        "worker pid %d did not stop in %.1fs: killing it", proc.pid, timeout
                    )
                    proc.kill()
                    proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=self.check_interval * 4)
