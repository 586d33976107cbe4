"""The evaluation pictures a worker takes: the confusion matrix at every evaluation, the decision
regions of a 2-D run every few seconds, both written with the evaluation's rows.

The confusion matrix comes free with the evaluation (engine.pictures.evaluate_with_confusion
reuses its forward pass). A regions grid of 100 x 100 points costs a forward pass of 10,000 rows
(about 40 steps of the default spirals model), so it is taken at an evaluation only when
``regions_every`` seconds have passed since the last one, and at the run's last step: the page
refreshes it every few seconds anyway, and the cost stays under 1% of steps/s
(bench/dashboard_speed.py --dataset spirals prints it).
"""

from __future__ import annotations

import math
import time

import numpy as np
from sqlalchemy.orm import Session

from app.crud import pictures as crud_pictures
from engine import Trainer
from engine.pictures import Regions, decision_regions, evaluate_with_confusion

REGIONS_SIZE = 100
"""Cells per side of the regions grid."""
REGIONS_EVERY = 2.0
"""Seconds of training between two regions grids."""
MAX_POINTS = 2000
"""Training points drawn over the regions (the first ones: the split is already shuffled)."""


class PictureTaker:
    """Takes a run's pictures at its evaluations and keeps the latest until the next write."""

    def __init__(self, regions_every: float = REGIONS_EVERY, size: int = REGIONS_SIZE) -> None:
        self.regions_every, self.size = regions_every, size
        self.confusion: tuple[int, list[object], list[list[int]]] | None = None
        self.regions: Regions | None = None
        self._regions_at = -math.inf
        self._points: tuple[np.ndarray, np.ndarray] | None = None

    def evaluate(self, trainer: Trainer) -> dict[str, float]:
        """``trainer.evaluate()`` (the same numbers, as ``loss`` and ``acc``) and the training
        split in evaluation mode (``trainer.evaluate_train()``, as ``train_eval_loss`` and
        ``train_eval_acc``), keeping the pictures for the next write."""
        ev = evaluate_with_confusion(trainer)
        train = trainer.evaluate_train()
        self.confusion = (trainer.step_count, list(trainer.classes), ev.confusion.tolist())
        now = time.monotonic()
        due = now - self._regions_at >= self.regions_every or trainer.finished
        if trainer.data.n_features == 2 and due:
            self.regions, self._regions_at = decision_regions(trainer, self.size), now
            if self._points is None:
                self._points = (
                    trainer.data.x_train[:MAX_POINTS],
                    trainer.data.y_train[:MAX_POINTS],
                )
        return {
            "loss": ev.loss,
            "acc": ev.acc,
            "train_eval_loss": train["loss"],
            "train_eval_acc": train["acc"],
        }

    def write(self, session: Session, run_id: int) -> None:
        """Store what was taken since the last write (in the writer's transaction). A rolled
        back transaction loses it; the next evaluation takes new ones."""
        if self.confusion is not None:
            step, labels, matrix = self.confusion
            crud_pictures.save_confusion(session, run_id, step, labels, matrix)
            self.confusion = None
        if self.regions is not None and self._points is not None:
            r = self.regions
            crud_pictures.save_regions(
                session,
                run_id,
                step=r.step,
                classes=r.classes,
                confidence=r.confidence,
                extent=r.extent,
                points=self._points[0],
                point_labels=self._points[1],
            )
            self.regions = None
