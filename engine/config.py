"""RunConfig: every knob of a run, validated before any data is loaded.

The config is the only input a run has, so it is the place to reject nonsense early: a bad value
raises pydantic's ValidationError naming the field, before a dataset is read or a weight drawn.
Conventions that differ between libraries are fixed here and documented in docs/engine.md.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["INT64_MAX", "MAX_STEPS", "RunConfig"]

# Integers a run stores (steps, ids) must fit a 64-bit database integer.
INT64_MAX = 2**63 - 1
# Steps a run may be asked for (and step counts such as eval_every): 10 billion is ~12 days at
# 10,000 steps/s, far beyond any run here, and every product of it with a width stays in int64.
MAX_STEPS = 10**10
# sklearn's random_state (the data split, generated datasets) takes 0 .. 2**32 - 1 only.
MAX_DATA_SEED = 2**32 - 1


class RunConfig(BaseModel):
    """One training run. Defaults are the tuned digits run (64-128-128-10, BN, Adam, cosine).

    Numbers are finite (pydantic rejects nan/inf for floats here) and range-checked, so a config
    that validates can be trained; only the data itself can still fail, in `load_dataset`.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # Data
    dataset: str = Field("digits", min_length=1, max_length=1024)
    """'digits', 'spirals', 'moons', 'blobs', or a path to a .csv / .npz file."""
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    data_seed: int = Field(0, ge=0, le=MAX_DATA_SEED)
    """Seeds dataset generation and the stratified split; fixed so runs stay comparable."""
    n_samples: int = Field(1000, ge=4, le=1_000_000)
    """Samples of a generated dataset (spirals, moons, blobs)."""
    n_classes: int = Field(3, ge=2, le=100)
    """Classes of a generated spirals / blobs dataset (moons always has 2)."""
    noise: float = Field(0.1, ge=0.0, le=10.0)
    """Noise of a generated dataset (std of gaussian jitter; cluster std for blobs)."""
    train_subset: int | None = Field(None, ge=2, le=1_000_000)
    """Train on only the first this-many rows of the training split (None: all of them); the
    "overfit a tiny subset" check trains on 20 (engine/data.py, app/api/checks.py)."""

    # Architecture
    hidden: list[int] = Field(default_factory=lambda: [128, 128], max_length=32)
    activation: Literal["relu", "tanh"] = "relu"
    batchnorm: bool = True
    bn_momentum: float = Field(0.95, ge=0.0, lt=1.0)
    """running = bn_momentum * running + (1 - bn_momentum) * batch (PyTorch momentum = 1 - this)."""
    bn_eps: float = Field(1e-5, gt=0.0, le=1.0)
    bn_position: Literal["before", "after"] = "before"
    init: Literal["he", "xavier"] = "he"
    dropout: float = Field(0.5, ge=0.0, lt=1.0)

    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    """Training targets (1 - s) * one_hot + s / C; reported losses stay plain cross-entropy."""

    # Optimization
    optimizer: Literal["sgd", "momentum", "rmsprop", "adam"] = "adam"
    lr: float = Field(1e-2, gt=0.0, le=100.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    eps: float = Field(1e-8, gt=0.0, le=1.0)
    """Adam and RMSProp denominator epsilon (added outside the square root, as in PyTorch)."""
    rms_decay: float = Field(0.99, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-3, ge=0.0, le=10.0)
    """L2 on weight matrices only (not biases, not BN gamma/beta), added to the gradient."""

    # Schedule: effective lr = base lr * factor(steps completed)
    schedule: Literal["constant", "step", "exponential", "cosine", "range_test"] = "cosine"
    lr_step_size: int = Field(1000, ge=1, le=MAX_STEPS)
    """Steps per decay period of 'step' (a jump) and 'exponential' (smooth)."""
    lr_gamma: float = Field(0.5, gt=0.0, le=1.0)
    """Factor the lr is multiplied by every lr_step_size steps ('step', 'exponential')."""
    lr_min_factor: float = Field(0.0, ge=0.0, le=1.0)
    """Floor of the 'cosine' factor, reached at the last step."""
    lr_range_max: float = Field(10.0, gt=0.0, le=100.0)
    """'range_test': the rate of the last step; the rate grows exponentially from ``lr`` to it
    (the learning-rate range test, engine/lr_find.py)."""
    lr_range_start: int = Field(0, ge=0, le=MAX_STEPS)
    """'range_test': the position the range starts at (a range test on a fork starts at the
    fork step); it ends at the run's last step."""

    # Loop
    batch_size: int = Field(64, ge=1, le=1_000_000)
    epochs: int = Field(100, ge=1, le=1_000_000)
    max_steps: int | None = Field(None, ge=1, le=MAX_STEPS)
    """When set, the run ends after this many steps, whatever `epochs` says."""
    eval_every: int = Field(50, ge=1, le=MAX_STEPS)
    """Steps between validation evaluations (read by the worker; the engine never evaluates
    on its own)."""
    health_every: int = Field(50, ge=0, le=MAX_STEPS)
    """Steps between per-layer health measurements (engine/health.py; 0 = off). Read by the
    worker, which passes ``health=True`` to every health_every-th step. A measured step costs
    about 90 us more in a tight loop (3 layers), several times that once in a while with cold
    caches, plus its rows' insert: at 25 the default digits and spirals runs lost 3.2-3.6% of
    their steps/s on a quiet machine, over the 3% budget; 50 (the default eval_every: one
    measurement per evaluation) halves it (bench/diagnostics_cost.py)."""
    seed: int = Field(0, ge=0, le=INT64_MAX)
    """Seeds weight init, shuffling and dropout: the same seed reproduces a run bit for bit."""
    dtype: Literal["float32", "float64"] = "float32"

    @field_validator("dataset")
    @classmethod
    def _no_nul(cls, dataset: str) -> str:
        # A NUL cannot be in a file name: the OS would refuse the path (ValueError, a 500 once).
        if "\x00" in dataset:
            raise ValueError("dataset must not contain a NUL character")
        return dataset

    @field_validator("hidden")
    @classmethod
    def _widths_positive(cls, hidden: list[int]) -> list[int]:
        for i, width in enumerate(hidden):
            if width < 1:
                raise ValueError(f"hidden[{i}] = {width}: every layer width must be >= 1")
            if width > 65536:
                raise ValueError(f"hidden[{i}] = {width}: widths above 65536 are not supported")
        return hidden

    @field_validator("lr", "bn_eps", "eps", "lr_gamma")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _range_grows(self) -> RunConfig:
        if self.schedule == "range_test" and not self.lr_range_max > self.lr:
            raise ValueError(
                f"lr_range_max ({self.lr_range_max}) must be above lr ({self.lr}) for a range test"
            )
        return self

    @model_validator(mode="after")
    def _batchnorm_needs_two(self) -> RunConfig:
        # Batch statistics of one sample are degenerate (variance 0, x_hat = 0): training would
        # silently learn nothing through the BN layers.
        if self.batchnorm and self.hidden and self.batch_size < 2:
            raise ValueError(
                "batch_size must be >= 2 when batchnorm is on (one sample has no variance)"
            )
        return self
