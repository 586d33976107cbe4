"""The Trainer contract of docs/architecture.md: steps, lr rule, finishing, divergence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import RunConfig, StepRecord, Trainer
from engine.trainer import steps_per_epoch


def test_contract_basics() -> None:
    t = Trainer(RunConfig(max_steps=5))
    assert t.step_count == 0 and not t.finished and t.total_steps == 5
    rec = t.step()
    assert isinstance(rec, StepRecord)
    assert rec.step == 1 and t.step_count == 1
    assert isinstance(rec.loss, float) and isinstance(rec.acc, float)
    assert rec.lr == pytest.approx(t.cfg.lr)  # cosine factor is 1 at step 1
    while not t.finished:
        t.step()
    assert t.step_count == 5
    with pytest.raises(RuntimeError):
        t.step()
    ev = t.evaluate()
    assert set(ev) == {"loss", "acc"} and 0.0 <= ev["acc"] <= 1.0


def test_total_steps_from_epochs() -> None:
    t = Trainer(RunConfig(epochs=2, batch_size=64))
    n = t.data.x_train.shape[0]
    assert t.total_steps == 2 * steps_per_epoch(n, 64)


def test_same_seed_same_run_and_different_seed_differs() -> None:
    def losses(seed: int) -> list[float]:
        t = Trainer(RunConfig(max_steps=30, seed=seed, dropout=0.2))
        return [t.step().loss for _ in range(30)]

    assert losses(3) == losses(3)
    assert losses(3) != losses(4)


def test_divergence_reports_nonfinite_without_raising() -> None:
    t = Trainer(RunConfig(optimizer="sgd", lr=100.0, batchnorm=False, max_steps=60))
    with np.errstate(all="raise"):  # the engine must not leak floating-point errors
        losses = [t.step().loss for _ in range(60)]
    assert not all(math.isfinite(v) for v in losses)
    assert not math.isfinite(t.evaluate()["loss"])
