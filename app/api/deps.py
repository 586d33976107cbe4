"""Request dependencies: the database, settings, a read session, a run or 404.

Page routes (app/web) use them too: ``def page(s: ReadSession): crud.list_runs(s)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy.orm import Session

from app import crud
from app.db import Database
from app.models import Run
from app.settings import Settings
from engine.config import INT64_MAX


def get_db(request: Request) -> Database:
    """The app's Database (created by the lifespan)."""
    return request.app.state.db


def get_settings(request: Request) -> Settings:
    """The app's Settings."""
    return request.app.state.settings


def read_session(db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    """A read transaction around the route function (use from ``def`` routes).

    It ends when the function returns, before the response is validated and sent
    (``scope="function"``): a session held until the response went out kept its pooled
    connection while the response waited for a thread of the threadpool, and under load every
    thread then waited for a connection held by a response waiting for a thread (a deadlock
    until the pool's 30 s timeout answered 500; bench/load.py found it, on PostgreSQL's bounded
    pool as on SQLite's). Routes return plain data, never ORM objects still to be loaded.
    """
    with db.read() as session:
        yield session


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ReadSession = Annotated[Session, Depends(read_session, scope="function")]


# The largest integer the database stores (SQLite INTEGER, PostgreSQL BIGINT): ids, steps and
# counts beyond it cannot exist, and handing one to the driver raises OverflowError (a 500).
MAX_DB_INT = INT64_MAX


def run_id_path(run_id: Annotated[int, Path(description="the run's id")]) -> int:
    """A run id from the path: one the database cannot hold names no run, so it is a 404 here
    (before any query) rather than an overflow in the driver."""
    if not 1 <= run_id <= MAX_DB_INT:
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    return run_id


# ``def route(run_id: RunId)``: the path parameter, checked as above.
RunId = Annotated[int, Depends(run_id_path)]


def alert_id_path(alert_id: Annotated[int, Path(description="the alert event's id")]) -> int:
    """An alert (event) id from the path, 404 when no event can have it (as ``run_id_path``)."""
    if not 1 <= alert_id <= MAX_DB_INT:
        raise HTTPException(status_code=404, detail=f"alert {alert_id} not found")
    return alert_id


AlertId = Annotated[int, Depends(alert_id_path)]


def run_or_404(session: Session, run_id: int) -> Run:
    """The run, or a 404 naming it (also for an id no run can have)."""
    run = crud.get_run(session, run_id) if 1 <= run_id <= MAX_DB_INT else None
    if run is None:
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    return run
