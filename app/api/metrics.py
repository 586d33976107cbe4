"""``/metrics`` (columnar JSON: exact rows or an overview) and ``/metrics.csv`` (every row)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from app import crud
from app.api.deps import MAX_DB_INT, DbDep, ReadSession, RunId, run_or_404
from app.api.responses import MetricsOut
from app.api.schemas import invalid
from app.series import COLUMNS, json_float, to_columns

router = APIRouter(prefix="/api/runs", tags=["metrics"])

CSV_CHUNK = 5000  # rows per read transaction of the CSV export


@router.get("/{run_id}/metrics", response_model=MetricsOut)
def get_metrics(
    run_id: RunId,
    s: ReadSession,
    after: Annotated[int, Query(ge=0, le=MAX_DB_INT, description="only steps > after")] = 0,
    before: Annotated[
        int | None,
        Query(ge=1, le=MAX_DB_INT, description="only steps < before (must be > after)"),
    ] = None,
    max_points: Annotated[
        int | None,
        Query(ge=8, le=1_000_000, description="at most this many rows: a min-max overview"),
    ] = None,
) -> JSONResponse:
    """Columnar metrics; non-finite numbers are the strings "NaN", "Infinity", "-Infinity".

    ``exact`` is false when rows of the range were left out (the answer is an overview).
    """
    if before is not None and before <= after:
        raise invalid(("query", "before"), "before must be greater than after", before)
    run_or_404(s, run_id)
    if max_points is None:
        rows, exact = crud.metric_rows(s, run_id, after=after, before=before), True
    else:
        rows, exact = crud.metrics_window(
            s, run_id, after=after, before=before, max_points=max_points
        )
    # A JSONResponse skips re-validating a possibly huge payload against MetricsOut, which is
    # only there to document it; the columns are JSON-safe already (app/series.py).
    return JSONResponse({**to_columns(rows), "exact": exact})


@router.get(
    "/{run_id}/metrics.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "every row, as CSV"}},
)
def get_metrics_csv(run_id: RunId, db: DbDep) -> StreamingResponse:
    """Every row as CSV, streamed; each chunk is read in its own short read transaction.

    A download as slow as its reader never holds a read transaction open (on SQLite a long reader
    stalls WAL checkpoints while the run keeps writing).
    """
    with db.read() as s:
        run_or_404(s, run_id)

    def lines() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(COLUMNS)
        after = 0
        while True:
            with db.read() as s:
                rows = crud.metric_rows(s, run_id, after=after, limit=CSV_CHUNK)
            for row in rows:
                writer.writerow(["" if v is None else json_float(v) for v in row])
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
            if len(rows) < CSV_CHUNK:
                return
            after = int(rows[-1][0])

    headers = {"Content-Disposition": f'attachment; filename="run-{run_id}-metrics.csv"'}
    return StreamingResponse(lines(), media_type="text/csv", headers=headers)
