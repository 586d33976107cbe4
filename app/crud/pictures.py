"""The latest evaluation pictures of a run (table ``run_pictures``): written by the worker in
its evaluation's transaction, read by ``/api/runs/{id}/confusion``, ``/regions`` and the page."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from app.models import Checkpoint, RunPicture

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


def save_confusion(
    session: Session, run_id: int, step: int, labels: list[Any], matrix: list[list[int]]
) -> None:
    """Replace the run's confusion matrix (call in the transaction of its evaluation row).

    One Core UPDATE in the usual case (an INSERT only at a run's first evaluation): it runs at
    every flush that follows an evaluation, so it is kept to a single cheap statement.
    """
    values = {"step": step, "labels": json.dumps(labels), "confusion": json.dumps(matrix)}
    table = RunPicture.__table__
    done = session.execute(update(table).where(table.c.run_id == run_id).values(**values))
    if done.rowcount == 0:
        session.execute(insert(table).values(run_id=run_id, **values))


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
    size = int(classes.shape[0])
    table = RunPicture.__table__
    values = {
        "regions_step": step,
        "regions_size": size,
        "regions": classes.astype(np.uint8).tobytes() + confidence.astype(np.uint8).tobytes(),
        "regions_extent": json.dumps([float(v) for v in extent]),
        "points": np.ascontiguousarray(points, dtype=np.float32).tobytes(),
        "point_labels": np.ascontiguousarray(point_labels, dtype=np.uint8).tobytes(),
    }
    done = session.execute(update(table).where(table.c.run_id == run_id).values(**values))
    if done.rowcount == 0:
        raise LookupError(f"run {run_id} has no evaluation pictures to add regions to")


@dataclass(frozen=True)
class Pictures:
    """What a reader gets: the confusion matrix and, for a 2-D run, the regions."""

    step: int
    labels: list[Any]
    matrix: list[list[int]]
    regions: RegionsPicture | None


def get_pictures(session: Session, run_id: int) -> Pictures | None:
    """The run's latest pictures, None before its first evaluation."""
    row = session.get(RunPicture, run_id)
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


def pictures_version(session: Session, run_id: int) -> tuple[int | None, ...] | None:
    """What the Pictures panel shows changes exactly when this does: the confusion matrix's and
    the regions' steps and the newest checkpoint (its download links). Two key lookups, which
    the stream makes at each poll to know when to push the panel again; None before anything."""
    pictures = session.execute(
        select(RunPicture.step, RunPicture.regions_step).where(RunPicture.run_id == run_id)
    ).first()
    newest = session.execute(
        select(func.max(Checkpoint.step)).where(Checkpoint.run_id == run_id)
    ).scalar_one_or_none()
    if pictures is None and newest is None:
        return None
    step, regions = (pictures.step, pictures.regions_step) if pictures is not None else (None, None)
    return (step, regions, newest)
