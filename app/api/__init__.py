"""The JSON API (see docs/api.md): one router collecting the per-noun routers."""

from fastapi import APIRouter

from app.api import commands, health, metrics, pictures, runs, stream

router = APIRouter()
router.include_router(health.router)
router.include_router(runs.router)
router.include_router(commands.router)
router.include_router(metrics.router)
router.include_router(stream.router)
router.include_router(pictures.router)

__all__ = ["router"]
