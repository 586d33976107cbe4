"""How a run reads in the runs list and on the compare page (app/web/run_summary.py)."""

from __future__ import annotations

import pytest

from app.web.run_summary import config_table, dataset_name, layers, rate, setting
from engine import RunConfig


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.5e-4, "1.5e-4"),
        (1e-8, "1e-8"),
        (1.234e-6, "1.23e-6"),
        (0.0046, "0.0046"),
        (0.001, "0.001"),
        (0.01, "0.01"),
        (3.0, "3"),
        (0.0, "0"),
        (None, "\u2013"),
        ("NaN", "NaN"),
    ],
)
def test_rate_is_readable_down_to_1e8(value: object, text: str) -> None:
    assert rate(value) == text


def test_layers_of_builtin_datasets_include_input_and_classes() -> None:
    assert layers(RunConfig().model_dump()) == "64-128-128-10"
    assert layers({"dataset": "spirals", "hidden": [16], "n_classes": 5}) == "2-16-5"
    assert layers({"dataset": "moons", "hidden": [], "n_classes": 7}) == "2-2"
    # A file's shape is unknown until it is read: the hidden widths alone.
    assert layers({"dataset": "/data/x.csv", "hidden": [128, 128]}) == "128, 128"
    assert dataset_name({"dataset": "/data/dir/x.csv"}) == "x.csv"


def test_config_table_splits_differing_and_common_fields_in_config_order() -> None:
    a = RunConfig(lr=0.01).model_dump(mode="json")
    b = RunConfig(lr=0.003, hidden=[64]).model_dump(mode="json")
    c = {**RunConfig().model_dump(mode="json"), "retired_field": 1}
    differ, same = config_table([a, b, c])
    assert [field for field, _ in differ] == ["hidden", "lr", "retired_field"]
    assert dict(differ)["lr"] == [0.01, 0.003, 0.01]
    assert dict(differ)["retired_field"] == [None, None, 1]
    assert "optimizer" in dict(same) and "lr" not in dict(same)


def test_setting_cells() -> None:
    assert setting([128, 128]) == "128, 128"
    assert setting(True) == "on"
    assert setting(None) == "\u2013"
    assert setting(1e-8) == "1e-8"
