"""``/metrics`` (columnar JSON, optionally downsampled) and ``/metrics.csv`` (every row)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from app import crud
from app.api.deps import DbDep, ReadSession, run_or_404
from app.api.responses import MetricsOut
from app.series import COLUMNS, json_float

router = APIRouter(prefix="/api/runs", tags=["metrics"])


@router.get("/{run_id}/metrics", response_model=MetricsOut)
def get_metrics(
    run_id: int,
    s: ReadSession,
    after: Annotated[int, Query(ge=0, description="only steps > after")] = 0,
    max_points: Annotated[
        int | None, Query(ge=8, le=1_000_000, description="min-max downsample to this many")
    ] = None,
) -> JSONResponse:
    """Columnar metrics; non-finite numbers are the strings "NaN", "Infinity", "-Infinity"."""
    run_or_404(s, run_id)
    # A JSONResponse skips re-validating a possibly huge payload against MetricsOut, which is
    # only there to document it; the columns are JSON-safe already (app/series.py).
    return JSONResponse(crud.metrics_after(s, run_id, after=after, max_points=max_points))


@router.get("/{run_id}/metrics.csv")
def get_metrics_csv(run_id: int, db: DbDep) -> StreamingResponse:
    """Every row as CSV, streamed in chunks (a long run is never held in memory)."""
    with db.read() as s:
        run_or_404(s, run_id)

    def rows() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(COLUMNS)
        with db.read() as s:
            for n, row in enumerate(crud.iter_metric_rows(s, run_id), start=1):
                writer.writerow(["" if v is None else json_float(v) for v in row])
                if n % 1000 == 0:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
        yield buf.getvalue()

    headers = {"Content-Disposition": f'attachment; filename="run-{run_id}-metrics.csv"'}
    return StreamingResponse(rows(), media_type="text/csv", headers=headers)
