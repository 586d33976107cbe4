"""Datasets: built-ins, CSV/NPZ files, the fixed stratified split, train-only standardization,
label mapping, and every kind of bad data rejected before training with a message that says why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import RunConfig, Trainer
from engine.data import load_dataset, prepare


def test_digits() -> None:
    d = load_dataset(RunConfig())
    assert d.n_features == 64 and d.n_classes == 10 and d.classes == tuple(range(10))
    assert d.x_train.shape[0] + d.x_val.shape[0] == 1797
    assert d.x_val.shape[0] == pytest.approx(0.2 * 1797, abs=1)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64


def test_split_is_stratified_and_fixed_whatever_the_run_seed() -> None:
    a, b = load_dataset(RunConfig(seed=0)), load_dataset(RunConfig(seed=7))
    np.testing.assert_array_equal(a.x_val, b.x_val)
    train_share = np.bincount(a.y_train) / len(a.y_train)
    val_share = np.bincount(a.y_val) / len(a.y_val)
    np.testing.assert_allclose(train_share, val_share, atol=0.01)
    c = load_dataset(RunConfig(data_seed=1))
    assert not np.array_equal(a.x_val, c.x_val)


def test_standardization_uses_training_split_only() -> None:
    d = load_dataset(RunConfig(dtype="float64"))
    varying = d.std != 1.0
    np.testing.assert_allclose(d.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(d.x_train[:, varying].std(axis=0), 1.0, rtol=1e-10)
    assert np.abs(d.x_val.mean(axis=0)).max() > 1e-3  # the validation set was not used to fit


@pytest.mark.parametrize(("name", "classes"), [("spirals", 3), ("moons", 2), ("blobs", 3)])
def test_generated_datasets_are_2d(name: str, classes: int) -> None:
    d = load_dataset(RunConfig(dataset=name, n_samples=300))
    assert d.n_features == 2 and d.n_classes == classes
    assert d.x_train.shape[0] + d.x_val.shape[0] == 300


def test_spirals_is_learnable() -> None:
    cfg = RunConfig(dataset="spirals", n_samples=600, max_steps=400, hidden=[64, 64], batch_size=32)
    t = Trainer(cfg)
    while not t.finished:
        t.step()
    assert t.evaluate()["acc"] > 0.9


def _write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def _labelled_rows(n: int, labels: tuple[str, ...] = ("cat", "dog")) -> list[str]:
    rng = np.random.default_rng(0)
    return [f"{rng.normal():.4f},{rng.normal():.4f},{labels[i % len(labels)]}" for i in range(n)]


def test_csv_with_header_and_string_labels(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "pets.csv", ["a,b,label", *_labelled_rows(40)])
    t = Trainer(RunConfig(dataset=str(path), batch_size=8, max_steps=3))
    assert t.classes == ("cat", "dog") and t.data.n_features == 2
    assert t.data.x_train.shape[0] + t.data.x_val.shape[0] == 40
    t.step()


def test_csv_integer_labels_sort_as_numbers(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "n.csv", _labelled_rows(30, labels=("10", "2", "7")))
    assert load_dataset(RunConfig(dataset=str(path), batch_size=4)).classes == (2, 7, 10)


def test_npz_with_any_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, X=rng.standard_normal((50, 3)), y=np.array([-1.5, 4.0] * 25))
    d = load_dataset(RunConfig(dataset=str(path), batch_size=8))
    assert d.classes == (-1.5, 4.0) and d.n_features == 3


BAD_CSV = [
    (["1.0,abc,0", "2.0,3.0,1", "1,1,0", "2,2,1"], "row 1, column 2: non-numeric"),
    (["x,y,l", "1.0,2.0,0", "2.0,,1", "1,1,0"], "row 2, column 2: non-numeric"),
    (["1.0,nan,0", "2.0,3.0,1", "1,1,0", "2,2,1"], "non-finite"),
    (["1.0,inf,0", "2.0,3.0,1", "1,1,0", "2,2,1"], "non-finite"),
    (["1.0,2.0,0", "2.0,3.0", "1,1,0", "2,2,1"], "row 2: 2 columns, expected 3"),
    (["1.0,2.0,a", "2.0,3.0,a", "1,1,a", "2,2,a"], "single class"),
    (["1.0,2.0,a", "2.0,3.0,a", "1,1,a", "2,2,b"], "class 'b' has 1 sample"),
]


@pytest.mark.parametrize(("rows", "message"), BAD_CSV)
def test_bad_csv_is_rejected_before_training(tmp_path: Path, rows: list[str], message: str) -> None:
    path = _write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(ValueError, match=message):
        Trainer(RunConfig(dataset=str(path), batch_size=2))


def test_fewer_training_rows_than_batch_size(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "small.csv", _labelled_rows(20))
    with pytest.raises(ValueError, match="16 training rows is fewer than batch_size=64"):
        Trainer(RunConfig(dataset=str(path)))


def test_nonfinite_npz_and_missing_arrays(tmp_path: Path) -> None:
    x = np.ones((10, 2))
    x[3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", X=x, y=np.arange(10) % 2)
    with pytest.raises(ValueError, match="row 4, column 2"):
        load_dataset(RunConfig(dataset=str(tmp_path / "nan.npz"), batch_size=2))
    np.savez(tmp_path / "nox.npz", features=x, y=np.arange(10) % 2)
    with pytest.raises(ValueError, match="need 'X' and 'y'"):
        load_dataset(RunConfig(dataset=str(tmp_path / "nox.npz"), batch_size=2))


@pytest.mark.parametrize(
    ("dataset", "message"),
    [("imagenet", "expected one of"), ("/nonexistent/data.csv", "does not exist")],
)
def test_unknown_dataset(dataset: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_dataset(RunConfig(dataset=dataset))


def test_labels_of_any_hashable_kind() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2))
    y = np.empty(40, dtype=object)
    y[:] = ["b", 3, ("t", 1), "b"] * 10  # mixed kinds do not sort: first-appearance order
    d = prepare(x, y, RunConfig(batch_size=4))
    assert d.classes == ("b", 3, ("t", 1))
    assert np.bincount(np.concatenate([d.y_train, d.y_val])).tolist() == [20, 10, 10]
    t = Trainer(RunConfig(batch_size=4, max_steps=2), data=d)
    assert t.classes[t.data.y_train[0]] in ("b", 3, ("t", 1))
    t.step()
