"""``/regions`` (PNG), ``/confusion`` (JSON) and ``/checkpoints/{step}/weights.npz``.

The worker stores the latest pictures with each evaluation (app/worker/pictures.py); these
routes only read and draw them. ``weights.npz`` is a checkpoint's model arrays named by layer
(engine/export.py), with the input standardization and the class labels when the run's dataset
can still be read.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Response

from app import crud
from app.api.deps import ReadSession, run_or_404
from app.crud.pictures import get_pictures
from app.regions_image import render_regions
from engine import RunConfig, state_from_bytes
from engine.data import BUILTIN, load_dataset
from engine.export import weights_arrays, weights_npz

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/runs", tags=["pictures"])

PLANE_DATASETS = ("spirals", "moons", "blobs")
"""Built-in datasets with 2 features (digits has 64)."""

_PNG = {200: {"content": {"image/png": {}}, "description": "the decision regions"}}


def _not_2d(run_id: int, what: str) -> HTTPException:
    return HTTPException(
        status_code=409,
        detail=f"run {run_id}: {what}; decision regions are drawn for 2-D datasets only",
    )


def _not_evaluated(run_id: int) -> HTTPException:
    return HTTPException(
        status_code=404, detail=f"run {run_id} has no evaluation yet (one runs every eval_every)"
    )


@router.get("/{run_id}/regions", response_class=Response, responses=_PNG)
def get_regions(run_id: int, s: ReadSession) -> Response:
    """The model's decision regions over the training points at a recent evaluation (PNG;
    ``X-Step`` says which); 409 for a dataset that is not 2-D, 404 before the first one."""
    dataset = str(crud.run_config(run_or_404(s, run_id)).get("dataset"))
    if dataset in BUILTIN and dataset not in PLANE_DATASETS:
        raise _not_2d(run_id, f"{dataset} has more than 2 features")
    pictures = get_pictures(s, run_id)
    if pictures is None:
        raise _not_evaluated(run_id)
    if pictures.regions is None:
        raise _not_2d(run_id, "its dataset does not have 2 features")
    png = render_regions(pictures.regions)
    headers = {"X-Step": str(pictures.regions.step), "Cache-Control": "no-cache"}
    return Response(png, media_type="image/png", headers=headers)


@router.get("/{run_id}/confusion")
def get_confusion(run_id: int, s: ReadSession) -> dict[str, Any]:
    """The validation confusion matrix at the latest evaluation: ``matrix[t][p]`` counts
    validation rows of true class ``labels[t]`` predicted as ``labels[p]``."""
    run_or_404(s, run_id)
    pictures = get_pictures(s, run_id)
    if pictures is None:
        raise _not_evaluated(run_id)
    return {"step": pictures.step, "labels": pictures.labels, "matrix": pictures.matrix}


@router.get(
    "/{run_id}/checkpoints/{step}/weights.npz",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def get_weights(run_id: int, step: int, s: ReadSession) -> Response:
    """The model at a checkpoint as plain arrays named by layer (docs/api.md shows how to load
    it and predict with NumPy alone); 404 when the run has no checkpoint at that step."""
    run_or_404(s, run_id)
    ckpt = crud.latest_checkpoint(s, run_id, at_or_before=step)
    if ckpt is None or ckpt.step != step:
        raise HTTPException(status_code=404, detail=f"run {run_id} has no checkpoint at {step}")
    state = state_from_bytes(ckpt.state)
    try:
        data = load_dataset(RunConfig(**state["config"]))
    except (OSError, ValueError) as exc:  # a dataset file gone since: the weights still go out
        log.warning("run %s: weights without input statistics: %s", run_id, exc)
        data = None
    body = weights_npz(weights_arrays(state, data))
    name = f"run-{run_id}-step-{step}-weights.npz"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(body, media_type="application/octet-stream", headers=headers)
