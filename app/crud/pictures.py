"""The latest evaluation pictures of a run (table ``run_pictures``): written by the worker in
its evaluation's transaction, read by ``/api/runs/{id}/confusion``, ``/regions`` and the page."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.models import RunPicture

__all__ = ["Pictures", "RegionsPicture", "get_pictures", "save_confusion", "save_regions"]


@dataclass(frozen=True)
class RegionsPicture:
    """Decision regions as stored, decoded (see app.models.RunPicture)."""

    step: int
    classes: np.ndarray  # (size, size) uint8
    confidence: np.ndarray  # (size, size) uint8
    extent: tuple[float, float, float, float]
    points: np.ndarray  # (n, 2) float32
    point_labels: np.ndarray  # (n,) uint8
    n_classes: int


def _row(session: Session, run_id: int) -> RunPicture | None:
    return session.get(RunPicture, run_id)


def save_confusion(
    session: Session, run_id: int, step: int, labels: list[Any], matrix: list[list[int]]
) -> None:
    """Replace the run's confusion matrix (call in the transaction of its evaluation row)."""
    row = _row(session, run_id)
    if row is None:
        row = RunPicture(run_id=run_id)
        session.add(row)
    row.step, row.labels, row.confusion = step, json.dumps(labels), json.dumps(matrix)


def save_regions(
    session: Session,
    run_id: int,
    *,
    step: int,
    classes: np.ndarray,
    confidence: np.ndarray,
    extent: tuple[float, float, float, float],
    points: np.ndarray,
    point_labels: np.ndarray,
) -> None:
    """Replace the run's decision regions; the row must exist (its confusion is saved first)."""
    row = _row(session, run_id)
    if row is None:
        raise LookupError(f"run {run_id} has no evaluation pictures to add regions to")
    size = int(classes.shape[0])
    row.regions_step, row.regions_size = step, size
    row.regions = classes.astype(np.uint8).tobytes() + confidence.astype(np.uint8).tobytes()
    row.regions_extent = json.dumps([float(v) for v in extent])
    row.points = np.ascontiguousarray(points, dtype=np.float32).tobytes()
    row.point_labels = np.ascontiguousarray(point_labels, dtype=np.uint8).tobytes()


@dataclass(frozen=True)
class Pictures:
    """What a reader gets: the confusion matrix and, for a 2-D run, the regions."""

    step: int
    labels: list[Any]
    matrix: list[list[int]]
    regions: RegionsPicture | None


def get_pictures(session: Session, run_id: int) -> Pictures | None:
    """The run's latest pictures, None before its first evaluation."""
    row = _row(session, run_id)
    if row is None:
        return None
    labels = json.loads(row.labels)
    regions = None
    if row.regions is not None and row.regions_size and row.regions_step is not None:
        size = row.regions_size
        grid = np.frombuffer(row.regions, dtype=np.uint8)
        x0, x1, y0, y1 = json.loads(row.regions_extent or "[0, 1, 0, 1]")
        regions = RegionsPicture(
            step=row.regions_step,
            classes=grid[: size * size].reshape(size, size),
            confidence=grid[size * size : 2 * size * size].reshape(size, size),
            extent=(x0, x1, y0, y1),
            points=np.frombuffer(row.points or b"", dtype=np.float32).reshape(-1, 2),
            point_labels=np.frombuffer(row.point_labels or b"", dtype=np.uint8),
            n_classes=len(labels),
        )
    return Pictures(step=row.step, labels=labels, matrix=json.loads(row.confusion), regions=regions)
