"""How much memory a run needs, from its config and the shape of its data, before it starts.

A config such as ``hidden = [16384] * 6`` validates field by field, yet its parameters, optimizer
moments and checkpoint copies need tens of GiB: the worker that loads it is killed by the kernel.
``estimate`` adds up what the engine allocates (the same arrays, counted from the code in
engine/model.py, engine/optim.py, engine/data.py and engine/serialize.py) so such a config is
refused when it is created instead.

What is counted, in bytes of the run's dtype unless said otherwise:

- ``parameters``: the flat parameter and gradient vectors, BN running statistics.
- ``optimizer``: its moment vectors plus one scratch vector of the parameter size.
- ``training``: the buffers one training step writes into, kept for the run's life (the model
  caches them per batch shape): per hidden layer its pre-activation, BN output and centered
  input, activation (and ReLU mask), dropout mask and output, and their gradients; the batch, the
  logits and their gradient; plus float64 temporaries of the widest layer.
- ``evaluation``: one evaluation chunk (up to 4096 rows) in evaluation mode, which allocates
  fresh arrays per layer and keeps every layer's until the chunk is done.
- ``dataset``: the standardized training and validation splits and their labels.
- ``loading``: the peak while the data is read and prepared (float64 copies of the features, and
  Python objects for a CSV), before the model exists.
- ``checkpoint``: the state copy, the archive being written (grown by reallocation) and its
  bytes: four times the state.

The peak is the larger of loading (data being read) and training (everything persistent plus the
largest transient: an evaluation, a checkpoint, or drawing the initial weights). Checked against
``tracemalloc`` peaks of real runs in tests/engine/test_memory.py: the estimate is at least the
measured peak and at most 2x it (it leaves out the interpreter and the libraries themselves,
some 100-200 MB per process, which the worker's address-space cap allows for separately).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from engine.config import RunConfig
from engine.data import DataShape

__all__ = ["EVAL_CHUNK", "MemoryEstimate", "estimate", "format_bytes"]

EVAL_CHUNK = 4096  # rows per evaluation chunk (engine/model.py MLP.evaluate)
# Optimizer vectors of the parameter size besides the scratch one (engine/optim.py init_state).
_OPT_SLOTS = {"sgd": 0, "momentum": 1, "rmsprop": 1, "adam": 2}
# A CSV cell while being read (measured ~85): its str in the rows read_csv keeps, the float,
# their list slots.
_CSV_CELL_BYTES = 90


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per part (see the module docstring) and the estimated peak, ``total``."""

    parameters: int
    optimizer: int
    training: int
    evaluation: int
    dataset: int
    loading: int
    checkpoint: int
    total: int

    def largest(self) -> str:
        """The part that weighs most at the peak, to say what to change."""
        parts = {
            "parameters": self.parameters + self.optimizer + self.checkpoint,
            "training": self.training,
            "evaluation": self.evaluation,
            "dataset": max(self.dataset, self.loading),
        }
        return max(parts, key=lambda k: parts[k])

    def describe(self) -> str:
        """One line: the total and its main parts."""
        return (
            f"about {format_bytes(self.total)} (parameters and optimizer "
            f"{format_bytes(self.parameters + self.optimizer)}, a training batch "
            f"{format_bytes(self.training)}, an evaluation chunk {format_bytes(self.evaluation)}, "
            f"checkpoint copies {format_bytes(self.checkpoint)}, data "
            f"{format_bytes(max(self.dataset, self.loading))})"
        )


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _layer_buffers(cfg: RunConfig) -> int:
    """Training buffers per hidden unit and batch row (engine/model.py forward + backward)."""
    n = 2  # pre-activation z, activation output
    n += 1  # gradient through the activation
    n += 1  # gradient of the layer's input (dh), counted on the layer it feeds
    if cfg.activation == "relu":
        n += 1  # ReLU mask
    if cfg.batchnorm:
        n += 3  # output, centered input, gradient
    if cfg.dropout > 0:
        n += 3  # mask, output, gradient
    return n


def estimate(cfg: RunConfig, data: DataShape) -> MemoryEstimate:
    """The memory a run of ``cfg`` on ``data`` needs at its peak (see the module docstring)."""
    item = np.dtype(cfg.dtype).itemsize
    sizes = [data.features, *cfg.hidden, data.classes]
    layers = [a * b for a, b in pairwise(sizes)]
    weights = sum(layers)
    vectors = sum(sizes[1:]) + (2 * sum(cfg.hidden) if cfg.batchnorm else 0)
    n_params = weights + vectors
    running = 2 * sum(cfg.hidden) if cfg.batchnorm else 0

    parameters = (2 * n_params + running) * item
    optimizer = (_OPT_SLOTS[cfg.optimizer] + 1) * n_params * item

    train_rows = data.train_rows if cfg.train_subset is None else cfg.train_subset
    batch = min(cfg.batch_size, train_rows)
    widest = max(sizes)
    training = batch * item * (_layer_buffers(cfg) * sum(cfg.hidden) + 3 * data.classes)
    training += batch * data.features * item + 3 * batch * widest * 8

    # Evaluation: the validation split and, for the train columns, as many training rows.
    chunk = min(EVAL_CHUNK, max(data.val_rows, 1))
    per_row = (4 if cfg.batchnorm else 2) * sum(cfg.hidden) + 2 * data.classes
    evaluation = chunk * item * per_row + 3 * chunk * widest * 8

    cells = data.rows * data.features
    dataset = (train_rows + data.val_rows) * data.features * item + data.rows * 8 * 2
    source = cells * _CSV_CELL_BYTES if data.source == "csv" else cells * 8
    loading = source + 4 * cells * 8 + dataset

    state = (n_params * (1 + _OPT_SLOTS[cfg.optimizer]) + running) * item
    checkpoint = 4 * state  # the state copy, the archive as it grows (reallocated), its bytes
    initial = 2 * max(layers) * 8  # float64 normal draws of the largest weight matrix

    steady = parameters + optimizer + dataset + training + max(evaluation, checkpoint, initial)
    total = max(loading, steady)
    return MemoryEstimate(
        parameters=parameters,
        optimizer=optimizer,
        training=training,
        evaluation=evaluation,
        dataset=dataset,
        loading=loading,
        checkpoint=checkpoint,
        total=total,
    )
