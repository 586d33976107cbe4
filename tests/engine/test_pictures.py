"""engine/pictures.py: the confusion matrix and the decision regions agree with the model."""

from __future__ import annotations

import numpy as np
import pytest

from engine import RunConfig, Trainer
from engine.pictures import (
    confusion_matrix,
    decision_regions,
    evaluate_with_confusion,
    grid_extent,
    grid_points,
    predict_classes,
)


def _trained(steps: int = 60, **overrides: object) -> Trainer:
    cfg = RunConfig(max_steps=steps, hidden=[32, 32], n_samples=300, **overrides)  # type: ignore[arg-type]
    t = Trainer(cfg)
    while not t.finished:
        t.step()
    return t


@pytest.mark.parametrize("dataset", ["digits", "spirals"])
def test_evaluation_is_bit_identical_to_trainer_evaluate(dataset: str) -> None:
    t = _trained(dataset=dataset)
    ev = evaluate_with_confusion(t)
    assert {"loss": ev.loss, "acc": ev.acc} == t.evaluate()
    n_val = t.data.y_val.shape[0]
    assert ev.confusion.shape == (t.data.n_classes, t.data.n_classes)
    assert ev.confusion.sum() == n_val
    assert np.trace(ev.confusion) == round(ev.acc * n_val)
    # rows are the true classes
    np.testing.assert_array_equal(ev.confusion.sum(axis=1), np.bincount(t.data.y_val))


def test_confusion_matrix_by_hand() -> None:
    got = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    np.testing.assert_array_equal(got, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_regions_agree_with_the_models_own_evaluation_on_those_points() -> None:
    t = _trained(dataset="spirals", steps=80)
    regions = decision_regions(t, size=40)
    assert regions.classes.shape == regions.confidence.shape == (40, 40)
    assert regions.classes.dtype == np.uint8 and regions.step == t.step_count
    points = grid_points(regions.extent, 40).astype(np.float32)
    logits, _ = t.model.forward(points, train=False)
    np.testing.assert_array_equal(regions.classes.ravel(), logits.argmax(axis=1))
    np.testing.assert_array_equal(regions.classes.ravel(), predict_classes(t.model, points))
    # The winning probability is at least 1/C.
    assert regions.confidence.min() >= int(255 / t.data.n_classes) - 1
    # The grid covers every data point, row 0 at the top.
    x0, x1, y0, y1 = regions.extent
    data = np.concatenate([t.data.x_train, t.data.x_val])
    assert (data[:, 0] > x0).all() and (data[:, 0] < x1).all()
    assert (data[:, 1] > y0).all() and (data[:, 1] < y1).all()
    assert points[0, 1] > points[-1, 1] and points[0, 0] < points[39, 0]


def test_regions_change_as_the_model_trains() -> None:
    t = _trained(dataset="spirals", steps=1)
    before = decision_regions(t, size=30).classes
    while t.step_count < 150:
        t.total_steps = 150
        t.step()
    assert (decision_regions(t, size=30).classes != before).mean() > 0.05


def test_regions_refuse_data_that_is_not_2d() -> None:
    with pytest.raises(ValueError, match="2 features"):
        decision_regions(_trained(dataset="digits", steps=1))


def test_grid_extent_is_square_and_has_a_margin() -> None:
    x0, x1, y0, y1 = grid_extent(np.array([[0.0, 0.0], [4.0, 1.0]]))
    assert x1 - x0 == pytest.approx(y1 - y0) == pytest.approx(4.8)
    assert (x0 + x1) / 2 == pytest.approx(2.0) and (y0 + y1) / 2 == pytest.approx(0.5)
