"""RunConfig: defaults, the field names the app relies on, nonsense rejected naming the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine import RunConfig

APP_FIELDS = {
    "dataset": "digits",
    "hidden": [128, 128],
    "batchnorm": True,
    "bn_position": "before",
    "optimizer": "adam",
    "batch_size": 64,
    "max_steps": None,
    "val_fraction": 0.2,
    "seed": 0,
    "dtype": "float32",
}


def test_defaults_and_field_names() -> None:
    cfg = RunConfig()
    for name, value in APP_FIELDS.items():
        assert getattr(cfg, name) == value, name
    for name in (
        "activation",
        "bn_momentum",
        "bn_eps",
        "init",
        "lr",
        "schedule",
        "weight_decay",
        "dropout",
        "epochs",
        "eval_every",
    ):
        assert name in RunConfig.model_fields
    assert cfg.lr > 0 and cfg.epochs >= 1


def test_round_trips_through_json() -> None:
    cfg = RunConfig(hidden=[], optimizer="rmsprop", max_steps=7)
    assert RunConfig.model_validate_json(cfg.model_dump_json()) == cfg


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hidden": [64, -3]}, "hidden"),
        ({"hidden": [0]}, "hidden"),
        ({"optimizer": "adagrad"}, "optimizer"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": float("inf")}, "lr"),
        ({"dropout": 1.0}, "dropout"),
        ({"bn_momentum": -0.1}, "bn_momentum"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"schedule": "linear"}, "schedule"),
        ({"activation": "gelu"}, "activation"),
        ({"bn_position": "middle"}, "bn_position"),
        ({"dtype": "float16"}, "dtype"),
        ({"weight_decay": -1e-3}, "weight_decay"),
        ({"learning_rate": 0.1}, "learning_rate"),  # extra fields are rejected
    ],
)
def test_bad_values_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        RunConfig(**overrides)
    assert field in str(info.value)


def test_batch_size_one_with_batchnorm_is_rejected() -> None:
    with pytest.raises(ValidationError, match="batch_size must be >= 2 when batchnorm"):
        RunConfig(batch_size=1)
    RunConfig(batch_size=1, batchnorm=False)  # fine without BN
    RunConfig(batch_size=1, hidden=[])  # no hidden layer, no BN layer
