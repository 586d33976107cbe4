"""Search spaces and Optuna's samplers as a study uses them (app/studies/space.py, sampling.py):
the right scale for each parameter (checked with seeded goodness-of-fit tests), a grid that
covers its grid exactly once, reproducible draws, and bad spaces refused naming the field."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from optuna.storages import InMemoryStorage
from scipy import stats

from app.studies.sampling import load_study
from app.studies.space import (
    SpaceError,
    config_values,
    distributions,
    grid_size,
    grid_space,
    parse_space,
)

BASE: dict[str, Any] = {"dataset": "spirals", "hidden": [8]}


def _draws(
    space: dict[str, Any], n: int, *, sampler: str = "random", seed: int = 3, grid_points: int = 5
) -> list[dict[str, Any]]:
    params = parse_space(space, BASE)
    study = load_study(
        InMemoryStorage(),
        "s",
        sampler=sampler,
        pruner=None,
        params=params,
        seed=seed,
        options={"grid_points": grid_points},
        base=BASE,
    )
    out = []
    for _ in range(n):
        trial = study.ask(distributions(params))
        out.append({**config_values(params, trial.params), "_drawn": dict(trial.params)})
        study.tell(trial, 1.0)
    return out


def test_log_uniform_learning_rates_are_uniform_in_log_space() -> None:
    draws = _draws({"lr": {"low": 1e-4, "high": 1.0, "log": True}}, 400)
    logs = np.log10([d["lr"] for d in draws])
    assert logs.min() >= -4 and logs.max() <= 0
    # Uniform on [-4, 0] in log10: a linear-scale draw would put ~90% above 0.1 (log10 > -1).
    assert stats.kstest(logs, stats.uniform(loc=-4, scale=4).cdf).pvalue > 0.01
    assert 0.15 < np.mean(logs < -3) < 0.35, "a quarter of the draws in the lowest decade"


def test_a_linear_range_is_not_log_uniform() -> None:
    """The same test tells the scales apart (it could fail)."""
    draws = _draws({"lr": {"low": 1e-4, "high": 1.0}}, 400)
    logs = np.log10([d["lr"] for d in draws])
    assert stats.kstest(logs, stats.uniform(loc=-4, scale=4).cdf).pvalue < 1e-6


def test_log_one_minus_draws_one_minus_x_log_uniformly() -> None:
    draws = _draws({"momentum": {"low": 0.9, "high": 0.999, "log_one_minus": True}}, 400)
    x = np.array([d["momentum"] for d in draws])
    u = np.array([d["_drawn"]["1-momentum"] for d in draws])
    assert np.allclose(x, 1 - u), "both recorded: x = 1 - u"
    assert x.min() >= 0.9 and x.max() <= 0.999
    logs = np.log10(1 - x)  # in [-3, -1]
    assert stats.kstest(logs, stats.uniform(loc=-3, scale=2).cdf).pvalue > 0.01
    # As many draws between 0.99 and 0.999 as between 0.9 and 0.99.
    assert 0.4 < np.mean(x > 0.99) < 0.6


def test_int_fields_draw_ints_and_choices_draw_their_values() -> None:
    space = {
        "batch_size": {"low": 8, "high": 128, "log": True},
        "hidden": {"choices": [[8], [16, 16]]},
        "optimizer": {"choices": ["adam", "sgd"]},
    }
    draws = _draws(space, 60)
    assert all(isinstance(d["batch_size"], int) and 8 <= d["batch_size"] <= 128 for d in draws)
    assert {tuple(d["hidden"]) for d in draws} == {(8,), (16, 16)}
    assert {d["optimizer"] for d in draws} == {"adam", "sgd"}


def test_grid_covers_its_grid_exactly_once() -> None:
    space = {
        "lr": {"low": 1e-3, "high": 1e-1, "log": True},
        "optimizer": {"choices": ["adam", "momentum"]},
        "beta1": {"low": 0.9, "high": 0.999, "log_one_minus": True},
    }
    params = parse_space(space, BASE)
    grid = grid_space(params, 3)
    assert np.allclose(grid["lr"], [1e-3, 1e-2, 1e-1]), "log-spaced, ends included"
    assert np.allclose(grid["1-beta1"], [1e-3, 1e-2, 1e-1])
    size = grid_size(params, 3)
    assert size == 3 * 2 * 3
    draws = _draws(space, size, sampler="grid", grid_points=3)
    seen = [tuple(sorted(d["_drawn"].items())) for d in draws]
    assert len(set(seen)) == size, "no point twice"
    expected = {
        tuple(sorted(zip(grid, combo, strict=True))) for combo in itertools.product(*grid.values())
    }
    assert set(seen) == expected


def test_int_grid_is_distinct_rounded_values() -> None:
    params = parse_space({"batch_size": {"low": 2, "high": 5}}, BASE)
    assert grid_space(params, 10) == {"batch_size": [2, 3, 4, 5]}


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_same_seed_same_draws(sampler: str) -> None:
    space = {"lr": {"low": 1e-4, "high": 1.0, "log": True}, "dropout": {"low": 0.0, "high": 0.5}}
    first = _draws(space, 15, sampler=sampler, seed=11)
    assert first == _draws(space, 15, sampler=sampler, seed=11)
    assert first != _draws(space, 15, sampler=sampler, seed=12)


def test_a_reloaded_study_draws_new_values() -> None:
    """After a server restart the sampler is seeded from the trials asked so far: it does not
    draw the first values again."""
    storage = InMemoryStorage()
    params = parse_space({"lr": {"low": 1e-4, "high": 1.0, "log": True}}, BASE)

    def ask(n: int) -> list[float]:
        study = load_study(
            storage,
            "s",
            sampler="random",
            pruner=None,
            params=params,
            seed=5,
            options={},
            base=BASE,
        )
        return [study.ask(distributions(params)).params["lr"] for _ in range(n)]

    before, after = ask(3), ask(3)
    assert not set(before) & set(after)
    assert len(storage.get_all_trials(0)) == 6


@pytest.mark.parametrize(
    ("space", "loc", "words"),
    [
        ({"nope": {"low": 0, "high": 1}}, ("nope",), "no field"),
        ({"dataset": {"choices": ["digits", "moons"]}}, ("dataset",), "cannot be searched"),
        ({"seed": {"low": 0, "high": 9}}, ("seed",), "cannot be searched"),
        ({"lr": {"low": 0.1, "high": 0.1}}, ("lr", "high"), "empty range"),
        ({"lr": {"low": 0.1, "high": 0.01}}, ("lr", "high"), "empty range"),
        (
            {"weight_decay": {"low": 0.0, "high": 0.1, "log": True}},
            ("weight_decay", "low"),
            "low > 0",
        ),
        ({"lr": {"low": 1e-3, "high": 1000.0, "log": True}}, ("lr", "high"), "not a valid lr"),
        ({"batch_size": {"low": 8.5, "high": 64}}, ("batch_size", "low"), "integer"),
        (
            {"lr": {"low": 0.1, "high": 0.5, "log_one_minus": True}},
            ("lr", "log_one_minus"),
            "averaging",
        ),
        ({"momentum": {"low": 0.5, "high": 1.0, "log_one_minus": True}}, ("momentum",), "< 1"),
        ({"optimizer": {"choices": ["adam", "lion"]}}, ("optimizer", "choices", 1), "valid"),
        ({"optimizer": {"choices": ["adam", "adam"]}}, ("optimizer", "choices"), "distinct"),
        ({"activation": {"low": 0, "high": 1}}, ("activation",), "not a number"),
    ],
)
def test_bad_spaces_name_the_field(space: dict[str, Any], loc: tuple[Any, ...], words: str) -> None:
    with pytest.raises(SpaceError) as caught:
        parse_space(space, BASE)
    assert caught.value.loc == loc
    assert words in caught.value.msg


def test_values_are_checked_with_the_base_config() -> None:
    """batch_size 1 is a valid int, but not with batchnorm on (RunConfig's own rule)."""
    with pytest.raises(SpaceError) as caught:
        parse_space({"batch_size": {"low": 1, "high": 64}}, {**BASE, "batchnorm": True})
    assert caught.value.loc == ("batch_size", "low")
    parse_space({"batch_size": {"low": 1, "high": 64}}, {**BASE, "batchnorm": False})
