"""Trainer.evaluate_train: the training split measured in evaluation mode (issue 8)."""

from __future__ import annotations

import numpy as np
import pytest

from engine import RunConfig, Trainer
from engine.layers import softmax_cross_entropy


def _trained(steps: int = 300, **overrides: object) -> tuple[Trainer, list[float]]:
    t = Trainer(RunConfig(max_steps=steps, **overrides))
    losses = [t.step().loss for _ in range(steps)]
    return t, losses


def test_eval_mode_train_loss_is_below_the_training_mode_loss_with_dropout() -> None:
    t, losses = _trained(dropout=0.5)
    got = t.evaluate_train()
    training_mode = float(np.mean(losses[-50:]))  # what the per-step curve shows at the end
    assert got["loss"] < training_mode
    # Training mode on the very same rows (dropout masks, BN batch statistics) is higher too.
    n = t.train_eval_rows()
    x, y = t.data.x_train[:n], t.data.y_train[:n]
    clone = Trainer(t.cfg)
    clone.load_state_dict(t.state_dict())
    logits, _ = clone.model.forward(x, train=True, rng=np.random.default_rng(0))
    assert got["loss"] < softmax_cross_entropy(logits, y)[0]


def test_equals_model_evaluate_on_the_first_rows_as_many_as_validation() -> None:
    t, _ = _trained(steps=100, dropout=0.5)
    n_val = t.data.x_val.shape[0]
    assert t.train_eval_rows() == n_val < t.data.x_train.shape[0]
    loss, acc = t.model.evaluate(t.data.x_train[:n_val], t.data.y_train[:n_val])
    assert t.evaluate_train() == {"loss": loss, "acc": acc}
    # Hand computation: eval-mode logits (no dropout, BN running statistics) -> cross-entropy.
    logits, _ = t.model.forward(t.data.x_train[:n_val], train=False)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = t.data.y_train[:n_val]
    assert loss == pytest.approx(float(-np.mean(np.log(p[np.arange(n_val), y]))), rel=1e-9)
    assert acc == pytest.approx(float(np.mean(logits.argmax(axis=1) == y)))


def test_same_rows_after_a_restart_and_no_effect_on_the_steps() -> None:
    a = Trainer(RunConfig(max_steps=100, dropout=0.3))
    for _ in range(60):
        a.step()
    b = Trainer(a.cfg)  # a restart: a fresh Trainer loading the state
    b.load_state_dict(a.state_dict())
    assert b.evaluate_train() == a.evaluate_train()
    # Measuring draws nothing from the run's RNG: the next steps are the same as without it.
    c = Trainer(a.cfg)
    c.load_state_dict(a.state_dict())
    c.evaluate_train()
    assert [c.step().loss for _ in range(5)] == [b.step().loss for _ in range(5)]


def test_train_subset_measures_the_subset() -> None:
    t = Trainer(RunConfig(train_subset=20, batch_size=20, max_steps=30))
    assert t.train_eval_rows() == 20
    loss, acc = t.model.evaluate(t.data.x_train, t.data.y_train)
    assert t.evaluate_train() == {"loss": loss, "acc": acc}
