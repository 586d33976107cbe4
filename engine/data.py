"""Datasets: load, check, split (stratified, fixed seed), standardize on the training split.

Everything that can be wrong with data is found here, before the first step, and raised as a
ValueError that names the problem: a run that starts is a run whose data is sound.

Shapes: N samples, D features, C classes.
"""

from __future__ import annotations

import csv
import logging
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits, make_blobs, make_moons
from sklearn.model_selection import train_test_split

from engine.config import RunConfig

log = logging.getLogger(__name__)

Array = np.ndarray

__all__ = [
    "DataShape",
    "Dataset",
    "DoesNotFit",
    "encode_labels",
    "inspect_dataset",
    "load_dataset",
    "make_spirals",
    "prepare",
    "read_csv",
    "read_npz",
]

BUILTIN = ("digits", "spirals", "moons", "blobs")


@dataclass(frozen=True)
class Dataset:
    """A split, standardized dataset. classes[k] is the original label of class index k."""

    x_train: Array
    y_train: Array
    x_val: Array
    y_val: Array
    classes: tuple[Any, ...]
    mean: Array
    std: Array
    name: str

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def make_spirals(
    n: int, n_classes: int, noise: float, rng: np.random.Generator
) -> tuple[Array, Array]:
    """CS231n's interleaved spirals: n points (N, 2) in n_classes arms, one arm per class."""
    per = [n // n_classes + (k < n % n_classes) for k in range(n_classes)]
    xs, ys = [], []
    for k, m in enumerate(per):
        r = np.linspace(0.0, 1.0, m)
        theta = np.linspace(k * 4.0, (k + 1) * 4.0, m) + rng.standard_normal(m) * noise * 2
        xs.append(np.column_stack([r * np.sin(theta), r * np.cos(theta)]))
        ys.append(np.full(m, k))
    return np.concatenate(xs), np.concatenate(ys)


def _builtin(cfg: RunConfig) -> tuple[Array, Array]:
    seed = cfg.data_seed
    if cfg.dataset == "digits":
        bunch = load_digits()
        return bunch.data, bunch.target
    if cfg.dataset == "spirals":
        return make_spirals(cfg.n_samples, cfg.n_classes, cfg.noise, np.random.default_rng(seed))
    if cfg.dataset == "moons":
        return make_moons(cfg.n_samples, noise=cfg.noise, random_state=seed)
    x, y = make_blobs(
        cfg.n_samples,
        n_features=2,
        centers=cfg.n_classes,
        cluster_std=1.0 + cfg.noise,
        random_state=seed,
    )
    return x, y


def _cell(value: str, row: int, col: int) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"CSV row {row}, column {col}: non-numeric feature {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"CSV row {row}, column {col}: non-finite value {value!r}")
    return number


def _parses(value: str, kind: Callable[[str], object]) -> bool:
    """Whether kind(value) (float or int) accepts the text."""
    try:
        kind(value)
    except ValueError:
        return False
    return True


def read_csv(path: Path) -> tuple[Array, Array]:
    """Features (N, D) and raw labels (N,) from a CSV whose last column is the label.

    The first row is a header when none of its feature cells is a number (a data row with one bad
    cell is reported as bad data, not silently dropped). Labels that are all
    integers are read as integers, so '2' and '10' sort as numbers; anything else stays a string.
    """
    with path.open(newline="") as f:
        rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    if rows and not any(_parses(cell, float) for cell in rows[0][:-1]):
        rows = rows[1:]
    if not rows:
        raise ValueError(f"{path.name}: no data rows")
    width = len(rows[0])
    if width < 2:
        raise ValueError(f"{path.name}: need at least one feature column and a label column")
    features, labels = [], []
    for r, row in enumerate(rows, start=1):
        if len(row) != width:
            raise ValueError(f"CSV row {r}: {len(row)} columns, expected {width}")
        features.append([_cell(v.strip(), r, c) for c, v in enumerate(row[:-1], start=1)])
        labels.append(row[-1].strip())
    y: Array = np.array(labels)
    if all(_parses(v, int) for v in labels):
        y = np.array([int(v) for v in labels])
    return np.array(features, dtype=np.float64), y


def read_npz(path: Path) -> tuple[Array, Array]:
    """Arrays X (N, D) and y (N,) from an .npz (loaded without pickle)."""
    with np.load(path, allow_pickle=False) as archive:
        missing = {"X", "y"} - set(archive.files)
        if missing:
            raise ValueError(f"{path.name}: missing array(s) {sorted(missing)}; need 'X' and 'y'")
        x, y = archive["X"], archive["y"]
    if x.ndim != 2:
        raise ValueError(f"{path.name}: X must be 2-D (N, D), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{path.name}: X must be numeric, got dtype {x.dtype}")
    return x.astype(np.float64), y


def _raw(cfg: RunConfig) -> tuple[Array, Array]:
    if cfg.dataset in BUILTIN:
        return _builtin(cfg)
    path = Path(cfg.dataset)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npz"):
        raise ValueError(
            f"dataset {cfg.dataset!r}: expected one of {BUILTIN} or a path to a .csv/.npz file"
        )
    if not path.is_file():
        raise ValueError(f"dataset file {cfg.dataset!r} does not exist")
    return read_csv(path) if suffix == ".csv" else read_npz(path)


def load_dataset(cfg: RunConfig) -> Dataset:
    """The dataset cfg names, checked, split and standardized."""
    x, y = _raw(cfg)
    name = cfg.dataset if cfg.dataset in BUILTIN else Path(cfg.dataset).name
    return prepare(x, y, cfg, name=name)


def _py(value: Any) -> Any:
    """A NumPy scalar label as the plain Python value (for messages and the class mapping)."""
    return value.item() if isinstance(value, np.generic) else value


def encode_labels(y: Array) -> tuple[Array, Array]:
    """(classes, indices) with classes[indices] == y: sorted when the labels sort, otherwise
    (mixed kinds such as 'a' and 1) in order of first appearance."""
    try:
        classes, idx = np.unique(y, return_inverse=True)
    except TypeError:
        order: dict[Any, int] = {}
        idx = np.array([order.setdefault(label, len(order)) for label in y.tolist()])
        classes = np.empty(len(order), dtype=object)
        classes[:] = list(order)
    return classes, idx.reshape(-1)


def _check(x: Array, y: Array) -> None:
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must be a non-empty (N, D) array, got shape {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be (N,) with N = {x.shape[0]}, got shape {y.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"non-finite feature value (nan or inf) at row {row + 1}, column {col + 1}"
        )


def _split(x: Array, y: Array, cfg: RunConfig) -> tuple[Array, Array, Array, Array]:
    """Stratified train/validation split with the fixed data_seed."""
    try:
        return train_test_split(
            x, y, test_size=cfg.val_fraction, stratify=y, random_state=cfg.data_seed
        )
    except ValueError as exc:
        raise ValueError(
            f"cannot split {len(y)} samples with val_fraction={cfg.val_fraction}: {exc}"
        ) from None


def prepare(x: Array, y: Array, cfg: RunConfig, *, name: str = "arrays") -> Dataset:
    """Map labels to 0..C-1, split stratified with cfg.data_seed, standardize with train stats.

    Standardization uses only the training split's mean and std (a constant feature gets std 1),
    so nothing about the validation set leaks into training.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    _check(x, y)
    classes, y_idx = encode_labels(y)
    if len(classes) < 2:
        raise ValueError(f"labels have a single class ({_py(classes[0])!r}); need at least 2")
    counts = np.bincount(y_idx)
    if counts.min() < 2:
        rare = _py(classes[int(counts.argmin())])
        raise ValueError(
            f"class {rare!r} has 1 sample; each class needs >= 2 for a stratified split"
        )
    x_tr, x_va, y_tr, y_va = _split(x, y_idx, cfg)
    mean = x_tr.mean(axis=0)
    std = x_tr.std(axis=0)
    if cfg.train_subset is not None:  # the first rows of the (shuffled) split, full-split scale
        if cfg.train_subset > x_tr.shape[0]:
            raise ValueError(
                f"train_subset={cfg.train_subset} is more than the {x_tr.shape[0]} training rows"
            )
        x_tr, y_tr = x_tr[: cfg.train_subset], y_tr[: cfg.train_subset]
    if x_tr.shape[0] < cfg.batch_size:
        raise ValueError(f"{x_tr.shape[0]} training rows is fewer than batch_size={cfg.batch_size}")
    std[std < 1e-12] = 1.0
    dtype = np.dtype(cfg.dtype)
    log.info("dataset %s: %d train, %d val, %d classes", name, len(y_tr), len(y_va), len(classes))
    return Dataset(
        x_train=np.ascontiguousarray((x_tr - mean) / std, dtype=dtype),
        y_train=y_tr.astype(np.int64),
        x_val=np.ascontiguousarray((x_va - mean) / std, dtype=dtype),
        y_val=y_va.astype(np.int64),
        classes=tuple(_py(c) for c in classes),
        mean=mean,
        std=std,
        name=name,
    )


# -- checking a dataset when a run is created (cheap: no full load of a big file) -------------

# Files up to this size are loaded and prepared exactly as the worker will (every error found);
# bigger ones are checked from their header, first rows and size.
EXACT_CHECK_BYTES = 4 * 2**20
PEEK_ROWS = 1000
DIGITS_SHAPE = (1797, 64, 10)


@dataclass(frozen=True)
class DataShape:
    """What a run's data will look like once loaded: enough to check a config against it and
    to estimate its memory (engine/memory.py) without loading a big file.

    ``exact`` is False for a big file checked from its first rows: ``rows`` is then counted from
    its line breaks and ``classes`` is the number seen in the first rows (a lower bound).
    """

    rows: int
    features: int
    classes: int
    train_rows: int
    val_rows: int
    source: str  # "builtin", "csv", "npz"
    exact: bool = True


def split_sizes(rows: int, cfg: RunConfig) -> tuple[int, int]:
    """(train, validation) rows of the split (sklearn: validation = ceil(fraction * rows)),
    before ``train_subset``."""
    val = math.ceil(cfg.val_fraction * rows)
    return rows - val, val


def inspect_dataset(cfg: RunConfig) -> DataShape:
    """The shape of cfg's data, checked for what would stop a worker: a ValueError names the
    problem (a file that is not a dataset, a text feature, too few rows for the split or for
    ``batch_size``). Small files are loaded and prepared in full; big ones are only peeked at."""
    if cfg.dataset in BUILTIN:
        rows, features, classes = _builtin_shape(cfg)
        shape = _shaped(cfg, rows, features, classes, "builtin", exact=True)
    else:
        shape = _file_shape(cfg, Path(cfg.dataset))
    _check_fits_split(cfg, shape)
    return shape


def _builtin_shape(cfg: RunConfig) -> tuple[int, int, int]:
    if cfg.dataset == "digits":
        return DIGITS_SHAPE
    classes = 2 if cfg.dataset == "moons" else cfg.n_classes
    return cfg.n_samples, 2, classes


def _shaped(
    cfg: RunConfig, rows: int, features: int, classes: int, source: str, *, exact: bool
) -> DataShape:
    train, val = split_sizes(rows, cfg)
    if exact and (train < classes or val < classes):
        raise ValueError(
            f"cannot split {rows} samples of {classes} classes with "
            f"val_fraction={cfg.val_fraction}: each side needs at least one sample per class"
        )
    return DataShape(rows, features, classes, train, val, source, exact)


def _check_fits_split(cfg: RunConfig, shape: DataShape) -> None:
    train = shape.train_rows
    if cfg.train_subset is not None:
        if cfg.train_subset > train:
            raise DoesNotFit(
                "train_subset",
                f"train_subset={cfg.train_subset} is more than the {train} training rows",
            )
        train = cfg.train_subset
    if cfg.batch_size > train:
        raise DoesNotFit(
            "batch_size",
            f"batch_size={cfg.batch_size} is more than the {train} training rows "
            f"({shape.rows} samples, val_fraction={cfg.val_fraction})",
        )


class DoesNotFit(ValueError):
    """A config field that the data cannot satisfy (batch_size, train_subset): ``field`` names
    it, where any other ValueError of ``inspect_dataset`` is about the dataset itself."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _file_shape(cfg: RunConfig, path: Path) -> DataShape:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npz"):
        raise ValueError(
            f"{path.name} is not a dataset: expected one of {BUILTIN} or a .csv/.npz file"
        )
    if not path.is_file():
        raise ValueError(f"dataset file {path.name!r} does not exist")
    if suffix == ".npz" and not zipfile.is_zipfile(path):
        raise ValueError(f"{path.name} is not a readable npz file (not a zip archive)")
    if path.stat().st_size <= EXACT_CHECK_BYTES:
        try:
            x, y = read_csv(path) if suffix == ".csv" else read_npz(path)
        except (OSError, UnicodeDecodeError, csv.Error, zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{path.name} is not a readable {suffix[1:]} file: {exc}") from None
        # Every check the worker's load makes, except batch_size and train_subset, which the
        # caller reports against their own fields.
        data = prepare(x, y, cfg.model_copy(update={"batch_size": 1, "train_subset": None}))
        train, val = split_sizes(x.shape[0], cfg)
        return DataShape(x.shape[0], data.n_features, data.n_classes, train, val, suffix[1:])
    peek = _peek_csv if suffix == ".csv" else _peek_npz
    try:
        return peek(cfg, path)
    except (OSError, UnicodeDecodeError, csv.Error, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path.name} is not a readable {suffix[1:]} file: {exc}") from None


def _peek_csv(cfg: RunConfig, path: Path) -> DataShape:
    """Header and first rows parsed as read_csv would; rows counted from the line breaks."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        first: list[list[str]] = []
        for row in reader:
            if row and any(cell.strip() for cell in row):
                first.append(row)
                if len(first) > PEEK_ROWS:
                    break
    header = bool(first) and not any(_parses(cell, float) for cell in first[0][:-1])
    rows = first[1:] if header else first
    if not rows:
        raise ValueError(f"{path.name}: no data rows")
    width = len(rows[0])
    if width < 2:
        raise ValueError(f"{path.name}: need at least one feature column and a label column")
    for r, row in enumerate(rows, start=1):
        if len(row) != width:
            raise ValueError(f"CSV row {r}: {len(row)} columns, expected {width}")
        for c, v in enumerate(row[:-1], start=1):
            _cell(v.strip(), r, c)
    count = _count_lines(path) - int(header)
    classes = max(2, len({row[-1].strip() for row in rows}))
    return _shaped(cfg, count, width - 1, classes, "csv", exact=False)


def _count_lines(path: Path, chunk: int = 2**22) -> int:
    """Lines in a file (a last one without a line break counts), read in binary chunks."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while block := f.read(chunk):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _npy_header(archive: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    with archive.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _fortran, dtype = read(f)
    return shape, dtype


def _peek_npz(cfg: RunConfig, path: Path) -> DataShape:
    """Shapes and dtypes from the arrays' headers; the labels are read only when small."""
    with zipfile.ZipFile(path) as archive:
        names = {n.removesuffix(".npy") for n in archive.namelist()}
        missing = {"X", "y"} - names
        if missing:
            raise ValueError(f"{path.name}: missing array(s) {sorted(missing)}; need 'X' and 'y'")
        x_shape, x_dtype = _npy_header(archive, "X")
        y_shape, _ = _npy_header(archive, "y")
    if len(x_shape) != 2:
        raise ValueError(f"{path.name}: X must be 2-D (N, D), got shape {x_shape}")
    if not np.issubdtype(x_dtype, np.number) or np.issubdtype(x_dtype, np.complexfloating):
        raise ValueError(f"{path.name}: X must be numeric, got dtype {x_dtype}")
    if y_shape != (x_shape[0],):
        raise ValueError(f"labels must be (N,) with N = {x_shape[0]}, got shape {y_shape}")
    return _shaped(cfg, x_shape[0], x_shape[1], 2, "npz", exact=False)
