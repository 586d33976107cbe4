"""One run trained by the worker's own RunSession on a temporary database, timed from its rows.

The cost benches (pictures, diagnostics) measure the worker's loop as it really runs (rows
written, flushes, evaluations, the watch), not a bare engine loop; they share this one helper so
they measure it the same way.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from app import crud
from app.db import Database
from app.settings import Settings
from app.worker.session import RunSession


def worker_run(config: dict[str, Any]) -> tuple[int, float]:
    """Train ``config`` to its end: (steps after the first, seconds from the first step's row to
    the last's), so loading the data and building the model are not counted."""
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir), workers=0)
        db = Database(settings.database_url, wal=settings.sqlite_wal)
        db.create_all()
        with db.write() as s:
            run_id = crud.create_run(
                s,
                config=config,
                status="running",
                worker_id="bench",
                lease_until=crud.now() + settings.lease_seconds,
            ).id
        with threadpool_limits(limits=settings.blas_threads):
            outcome = RunSession(db, settings, "bench", run_id, allow_release=False).run()
        assert outcome == "finished", outcome
        with db.read() as s:
            rows = crud.metric_rows(s, run_id)
        db.dispose()
    times = [r[1] for r in rows]
    return len(times) - 1, times[-1] - times[0]
