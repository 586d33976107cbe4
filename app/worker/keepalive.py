"""Keeping a run's lease alive while the step loop is busy with one long piece of work.

The loop renews its lease with every flush, between steps. A step (or an evaluation, or a
checkpoint) longer than the lease would let it expire mid-step: another worker would claim the
run, both would train it, and with two workers and such steps the run livelocks (each claim is
lost before its first commit). ``LeaseKeeper`` renews from a side thread whenever a third of the
lease has passed since the loop's last write, so a slow step no longer loses the run; a fast loop
renews on its own and the thread never writes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class LeaseKeeper:
    """A daemon thread that calls ``heartbeat()`` whenever ``due()`` says so, until stopped.

    ``heartbeat`` raises when the lease is lost; the thread then stops, and the loop's own next
    write (guarded by the same ``WHERE worker_id``) finds out and ends the session.
    """

    def __init__(
        self, heartbeat: Callable[[], None], due: Callable[[], bool], every: float
    ) -> None:
        self.heartbeat, self.due, self.every = heartbeat, due, every
        self.beats = 0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    @contextmanager
    def running(self) -> Iterator[LeaseKeeper]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def _run(self) -> None:
        while not self._done.wait(self.every):
            if not self.due():
                continue
            try:
                self.heartbeat()
                self.beats += 1
            except Exception:
                log.warning("lease renewal from the keeper thread failed", exc_info=True)
                return
