"""Optuna behind a study: where its state is kept, and the sampler and pruner a study names.

Storage (docs/architecture.md, "Studies"): Optuna's FAQ advises against SQLite for parallel
optimization, so pandamode never lets several processes ask and tell: ONE study driver, in the
server process, does (app/studies/driver.py); workers only train ordinary runs. Its state is
kept in Optuna's JournalStorage, a file beside the SQLite database (``<db>.optuna.log``, in the
data directory by default), or, on PostgreSQL, in Optuna's RDBStorage on the same database, in
a schema of its own (``optuna``): Optuna's tables are called ``studies`` and ``trials`` too.

Samplers are seeded from the study: the same study on a fresh database draws the same trials.
After a server restart the sampler is seeded from the study's seed and the number of trials it
has, so it goes on with new values instead of drawing the first ones again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner
from optuna.samplers import BaseSampler, GridSampler, RandomSampler, TPESampler
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.studies.space import DEFAULT_GRID_POINTS, Param, grid_space

SAMPLERS = ("random", "grid", "tpe")
PRUNERS = ("median", "hyperband")
OPTUNA_SCHEMA = "optuna"
JOURNAL_SUFFIX = ".optuna.log"
LOCK_GRACE = 10

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger(__name__)


def journal_path(database_url: str) -> Path | None:
    """Where a SQLite database's Optuna journal lives (None for an in-memory database)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).with_name(Path(url.database).name + JOURNAL_SUFFIX)


def open_storage(database_url: str) -> BaseStorage:
    """Optuna's storage for the studies of this database (see the module docstring)."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}"))
        finally:
            engine.dispose()
        return RDBStorage(
            database_url,
            engine_kwargs={"connect_args": {"options": f"-c search_path={OPTUNA_SCHEMA}"}},
        )
    path = journal_path(database_url)
    if path is None:
        return InMemoryStorage()
    # Only the driver writes it; a lock left by a killed server is broken after LOCK_GRACE s.
    lock = JournalFileOpenLock(str(path), grace_period=LOCK_GRACE)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))


class _AskTellGrid(GridSampler):
    """A GridSampler for ask-and-tell: the study's n_trials is capped at the grid's size, so
    there is nothing to stop here (Optuna's own ``after_trial`` calls ``study.stop()``, which
    raises outside ``study.optimize``)."""

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None


def make_sampler(
    name: str, params: list[Param], seed: int, *, grid_points: int, asked: int = 0
) -> BaseSampler:
    """The sampler ``name``, seeded from the study's seed and the trials already asked."""
    derived = (seed + 1_000_003 * asked) % 2**32
    if name == "random":
        return RandomSampler(seed=derived)
    if name == "tpe":
        return TPESampler(seed=derived)
    if name == "grid":
        return _AskTellGrid(grid_space(params, grid_points), seed=derived)
    raise ValueError(f"unknown sampler {name!r}")


def make_pruner(name: str | None, options: dict[str, Any], base: dict[str, Any]) -> BasePruner:
    """The pruner ``name`` (None: never prune). Steps are training steps: a trial reports its
    validation loss at each evaluation, every ``eval_every`` steps."""
    if name is None:
        return NopPruner()
    if name == "median":
        return MedianPruner(
            n_startup_trials=int(options.get("n_startup_trials", 5)),
            n_warmup_steps=int(options.get("n_warmup_steps", 0)),
        )
    if name == "hyperband":
        return HyperbandPruner(
            min_resource=max(
                int(base.get("eval_every", 50)), int(options.get("n_warmup_steps", 0))
            ),
            max_resource=base.get("max_steps") or "auto",
            reduction_factor=int(options.get("reduction_factor", 3)),
        )
    raise ValueError(f"unknown pruner {name!r}")


def load_study(
    storage: BaseStorage,
    optuna_name: str,
    *,
    sampler: str,
    pruner: str | None,
    params: list[Param],
    seed: int,
    options: dict[str, Any],
    base: dict[str, Any],
) -> Study:
    """The Optuna study (created on first use), minimizing the validation loss."""
    try:
        asked = len(storage.get_all_trials(storage.get_study_id_from_name(optuna_name)))
    except KeyError:
        asked = 0
    return optuna.create_study(
        storage=storage,
        study_name=optuna_name,
        direction=StudyDirection.MINIMIZE,
        load_if_exists=True,
        sampler=make_sampler(
            sampler,
            params,
            seed,
            grid_points=int(options.get("grid_points", DEFAULT_GRID_POINTS)),
            asked=asked,
        ),
        pruner=make_pruner(pruner, options, base),
    )
