"""What the run page draws instead of numbers: the confusion matrix and the decision regions.

Both are computed in evaluation mode (running BN statistics, no dropout), like ``evaluate``:
they show the model the validation figures measure. ``evaluate_with_confusion`` does the
validation pass once and returns the loss and accuracy bit for bit as ``Trainer.evaluate`` does
(same batches, same operations, checked by a test) plus the confusion matrix, so the matrix
costs no extra forward pass. ``decision_regions`` predicts the classes of a square grid over a
2-D dataset (the picture TensorFlow Playground draws); a caller decides how often that is worth
its forward pass of ``size**2`` points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine import layers as L
from engine.model import MLP
from engine.trainer import Trainer

Array = np.ndarray

__all__ = [
    "Evaluation",
    "Regions",
    "confusion_matrix",
    "decision_regions",
    "evaluate_with_confusion",
    "grid_extent",
    "predict_classes",
]

EVAL_BATCH = 4096
"""Rows per forward pass, as MLP.evaluate (the same batches give the same sums)."""


@dataclass(frozen=True)
class Evaluation:
    """Validation loss and accuracy, and the confusion matrix (rows = true class)."""

    loss: float
    acc: float
    confusion: Array  # (C, C) int64


@dataclass(frozen=True)
class Regions:
    """Predicted classes over a square grid, row 0 at the top (largest y).

    ``classes[r, c]`` is the class at x = x0 + (c + 0.5) * cell, y = y1 - (r + 0.5) * cell
    (``extent = (x0, x1, y0, y1)`` in the model's standardized input space, where the data
    points of ``Trainer.data`` live too); ``confidence`` is the winning probability, 0..255.
    """

    step: int
    classes: Array  # (size, size) uint8
    confidence: Array  # (size, size) uint8
    extent: tuple[float, float, float, float]


def predict_classes(model: MLP, x: Array, *, batch: int = EVAL_BATCH) -> Array:
    """The class index the model predicts for each row of x, in evaluation mode."""
    out = np.empty(x.shape[0], dtype=np.int64)
    with np.errstate(all="ignore"):
        for start in range(0, x.shape[0], batch):
            logits, _ = model.forward(x[start : start + batch], train=False)
            out[start : start + batch] = logits.argmax(axis=1)
    return out


def confusion_matrix(y_true: Array, y_pred: Array, n_classes: int) -> Array:
    """(C, C) counts: entry [t, p] is how many rows of true class t were predicted p."""
    flat = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def evaluate_with_confusion(trainer: Trainer) -> Evaluation:
    """``Trainer.evaluate()`` and the validation confusion matrix from one forward pass.

    The loop is MLP.evaluate's, operation for operation, so loss and accuracy are identical to
    the figures a caller of ``evaluate`` gets (tests/engine/test_pictures.py holds it to that).
    """
    model, x, y = trainer.model, trainer.data.x_val, trainer.data.y_val
    n_classes = trainer.data.n_classes
    total_loss, correct = 0.0, 0
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    with np.errstate(all="ignore"):
        for start in range(0, x.shape[0], EVAL_BATCH):
            xb, yb = x[start : start + EVAL_BATCH], y[start : start + EVAL_BATCH]
            logits, _ = model.forward(xb, train=False)
            loss, _ = L.softmax_cross_entropy(logits, yb)
            total_loss += loss * xb.shape[0]
            pred = logits.argmax(axis=1)
            correct += int(np.sum(pred == yb))
            confusion += confusion_matrix(yb, pred, n_classes)
    n = max(x.shape[0], 1)
    return Evaluation(loss=total_loss / n, acc=correct / n, confusion=confusion)


def grid_extent(points: Array, margin: float = 0.1) -> tuple[float, float, float, float]:
    """A square (x0, x1, y0, y1) around 2-D points with ``margin`` of its side on each edge.

    Square so the picture is not stretched: the standardized features have comparable ranges,
    and a circle in the data stays a circle on the page.
    """
    lo, hi = points.min(axis=0).astype(np.float64), points.max(axis=0).astype(np.float64)
    centre = (lo + hi) / 2
    half = max(float((hi - lo).max()) / 2, 1e-6) * (1 + 2 * margin)
    return (
        float(centre[0] - half),
        float(centre[0] + half),
        float(centre[1] - half),
        float(centre[1] + half),
    )


def grid_points(extent: tuple[float, float, float, float], size: int) -> Array:
    """The cell centres of a ``size`` x ``size`` grid, row-major from the top-left cell."""
    x0, x1, y0, y1 = extent
    xs = x0 + (np.arange(size) + 0.5) * (x1 - x0) / size
    ys = y1 - (np.arange(size) + 0.5) * (y1 - y0) / size
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()])


def decision_regions(trainer: Trainer, size: int = 100) -> Regions:
    """The model's predicted class over a grid covering the data (train and validation).

    Raises ValueError for data that is not 2-D: there is no plane to draw.
    """
    data = trainer.data
    if data.n_features != 2:
        raise ValueError(f"decision regions need 2 features, this dataset has {data.n_features}")
    extent = grid_extent(np.concatenate([data.x_train, data.x_val]))
    points = grid_points(extent, size).astype(trainer.model.dtype)
    with np.errstate(all="ignore"):
        logits, _ = trainer.model.forward(points, train=False)
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        top = exp.max(axis=1) / exp.sum(axis=1)
    top = np.nan_to_num(top, nan=0.0)
    return Regions(
        step=trainer.step_count,
        classes=logits.argmax(axis=1).astype(np.uint8).reshape(size, size),
        confidence=np.clip(np.round(top * 255), 0, 255).astype(np.uint8).reshape(size, size),
        extent=extent,
    )
