"""Request dependencies: the database, settings, a read session, a run or 404.

Page routes (app/web) use them too: ``def page(s: ReadSession): crud.list_runs(s)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from app import crud
from app.db import Database
from app.models import Run
from app.settings import Settings


def get_db(request: Request) -> Database:
    """The app's Database (created by the lifespan)."""
    return request.app.state.db


def get_settings(request: Request) -> Settings:
    """The app's Settings."""
    return request.app.state.settings


def read_session(db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    """A read transaction for the duration of one request (use from ``def`` routes)."""
    with db.read() as session:
        yield session


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ReadSession = Annotated[Session, Depends(read_session)]


def run_or_404(session: Session, run_id: int) -> Run:
    """The run, or a 404 naming it."""
    run = crud.get_run(session, run_id)
    if run is None:
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    return run
