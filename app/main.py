"""``create_app(settings)``: the FastAPI app; its lifespan owns every long-lived resource.

The lifespan opens the database (creating missing tables), starts the stream hub and, when
``settings.workers > 0``, the worker supervisor; after ``yield`` it stops them in reverse order.
Pages reach the database through ``app.state.db`` (see docs/architecture.md, "For the pages").
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from anyio import to_thread
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app import api_docs
from app.api import alerts as alerts_api
from app.api import checks as checks_api
from app.api import layer_health as layer_health_api
from app.api import lr_find as lr_find_api
from app.api import router as api_router
from app.api import studies as studies_api
from app.api.errors import validation_error_handler
from app.db import Database
from app.headers import SecurityHeaders
from app.hosts import AllowedHosts
from app.limits import run_memory_limit
from app.paths import STATIC_DIR, TEMPLATES_DIR
from app.security import TokenGuard
from app.settings import Settings
from app.stream import StreamHub
from app.studies import StudyDriver
from app.web import (
    alerts,
    checks,
    compare,
    health_panel,
    lr_find,
    pages,
    pictures,
    run_page,
    runs_list,
    studies,
)
from app.web.fragments import Fragments
from app.worker.supervisor import Supervisor

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return version("pandamode")
    except PackageNotFoundError:
        return "0.0.0+source"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Off loopback without a token, one is generated (and logged once)."""
    settings = settings or Settings()
    if settings.needs_token and not settings.token:
        settings = settings.model_copy(update={"token": secrets.token_urlsafe(24)})
        log.warning("generated access token: ?token=%s", settings.token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url, wal=settings.sqlite_wal)
        await to_thread.run_sync(db.create_all)
        # The run page's live parts are rendered once per change and pushed to every viewer.
        fragments = Fragments(db, app.state.templates.env)
        hub = StreamHub(
            db,
            poll=settings.stream_poll,
            chunk_rows=settings.stream_chunk_rows,
            fragments=fragments,
        )
        supervisor = Supervisor(settings, settings.workers) if settings.workers else None
        app.state.db, app.state.hub, app.state.supervisor = db, hub, supervisor
        if supervisor is not None:
            supervisor.start()
        # The one place that asks Optuna for trials and tells it outcomes (app/studies).
        study_driver = StudyDriver(
            db, settings.database_url, memory_limit=run_memory_limit(settings)
        )
        app.state.study_driver = study_driver
        study_driver.start()
        try:
            yield
        finally:
            await to_thread.run_sync(study_driver.stop)
            await hub.close()
            if supervisor is not None:
                await to_thread.run_sync(supervisor.stop, settings.shutdown_grace + 2)
            db.dispose()

    # /docs is app/api_docs.py (Swagger UI from static/vendor, no CDN); no ReDoc.
    app = FastAPI(
        title="pandamode",
        version=_version(),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    # The templates ship with the package: no stat() of each one at every render (py-spy saw
    # it under load); a changed template needs a restart, as changed code does.
    app.state.templates.env.auto_reload = False
    pages.install_filters(app.state.templates.env)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.include_router(api_docs.router(app.openapi_url or "/openapi.json", app.title))
    app.include_router(api_router)
    app.include_router(lr_find_api.router)
    app.include_router(checks_api.router)
    app.include_router(alerts_api.router)
    app.include_router(layer_health_api.router)
    app.include_router(studies_api.router)
    app.include_router(run_page.router)
    app.include_router(pictures.router)
    app.include_router(health_panel.router)
    app.include_router(runs_list.router)
    app.include_router(compare.router)
    app.include_router(lr_find.router)
    app.include_router(checks.router)
    app.include_router(alerts.router)
    app.include_router(studies.router)  # /studies pages (caviar mode)
    app.add_middleware(
        TokenGuard,
        token=settings.token,
        required=settings.needs_token,
        reads_required=settings.reads_need_token,
        hosts=AllowedHosts.from_setting(settings.host, settings.allowed_hosts),
    )
    app.add_middleware(SecurityHeaders)  # outermost: refusals carry the headers too
    return app
