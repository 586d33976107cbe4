"""The worker process's main loop: claim a run, train it, claim the next; stop on a signal.

BLAS is pinned to ``settings.blas_threads`` for the whole process: the engine is bit-exact only
for a fixed thread count, and crash recovery replays steps expecting the very same numbers.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from types import FrameType

from threadpoolctl import threadpool_limits

from app import crud
from app.db import Database
from app.settings import Settings
from app.worker.session import RunSession

log = logging.getLogger(__name__)


def new_worker_id(prefix: str = "worker") -> str:
    """A worker id unique across hosts and restarts: ``prefix@host:pid:random``."""
    return f"{prefix}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Claims runs one at a time and trains them until asked to stop."""

    def __init__(self, db: Database, settings: Settings, worker_id: str | None = None) -> None:
        self.db = db
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.stopping = threading.Event()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT ask for a clean stop: flush, checkpoint, release the run, exit."""

        def _handler(signum: int, _frame: FrameType | None) -> None:
            log.info("worker %s got signal %s: stopping", self.worker_id, signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)

    def stop_when_orphaned(self, parent_pid: int, every: float = 1.0) -> None:
        """Stop cleanly once the parent (the ``serve`` process) is gone, e.g. SIGKILLed."""

        def watch() -> None:
            while not self.stopping.wait(every):
                if os.getppid() != parent_pid:
                    log.warning("worker %s: parent %d gone, stopping", self.worker_id, parent_pid)
                    self.stopping.set()

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()

    def claim(self) -> int | None:
        """Claim the next run for this worker, or None if nothing is claimable."""
        with self.db.write() as s:
            run = crud.claim_run(
                s,
                self.worker_id,
                self.settings.lease_seconds,
                max_crashes=self.settings.max_run_crashes,
            )
            return run.id if run is not None else None

    def run_forever(self) -> None:
        """Claim and train until ``stopping`` is set."""
        log.info("worker %s started (db %s)", self.worker_id, self.db.engine.url)
        with threadpool_limits(limits=self.settings.blas_threads):
            while not self.stopping.is_set():
                if not self.run_once():
                    self.stopping.wait(self.settings.claim_interval)
        log.info("worker %s stopped", self.worker_id)

    def run_once(self) -> bool:
        """Claim one run and train it to an outcome; False if there was nothing to claim."""
        try:
            run_id = self.claim()
        except Exception:
            log.exception("worker %s could not claim a run", self.worker_id)
            return False
        if run_id is None:
            return False
        log.info("worker %s claimed run %s", self.worker_id, run_id)
        session = RunSession(
            self.db, self.settings, self.worker_id, run_id, should_stop=self.stopping.is_set
        )
        outcome = session.run()
        log.info("worker %s: run %s %s", self.worker_id, run_id, outcome)
        return True
