"""HTML pages: the runs list and the run page (filled in by the front-end work)."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
