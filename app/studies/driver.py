"""The study driver: one thread in the server that alone asks Optuna for trials and tells it
their outcomes (docs/architecture.md, "Studies").

Every ``interval`` seconds it gives each active study one step of its mode (``MODES``: the
``search`` mode is app/studies/search.py; another mode, e.g. population-based training, adds
a function ``step(driver, study_id)`` there). A step reads the study's state from the database
and acts only through ordinary runs and ordinary commands, so everything it does is idempotent:
a server killed at any point resumes its studies with no trial duplicated or lost.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from pydantic import ValidationError

from app.admission import Unrunnable, check_runnable
from app.crud import studies as crud_studies
from app.db import Database
from app.models import Study
from app.studies.sampling import load_study, open_storage
from app.studies.space import space_from_json
from engine import RunConfig

log = logging.getLogger(__name__)

ModeStep = Callable[["StudyDriver", int], None]
MODES: dict[str, ModeStep] = {}


def register_mode(name: str, step: ModeStep) -> None:
    """Make ``step`` the driver's step for studies of mode ``name``."""
    MODES[name] = step


class StudyDriver:
    """Drives every active study of one database from a background thread."""

    def __init__(
        self,
        db: Database,
        database_url: str,
        *,
        interval: float = 0.5,
        memory_limit: int | None = None,
    ) -> None:
        self.db = db
        self.database_url = database_url
        self.interval = interval
        # Bytes a run may need here (app.limits.run_memory_limit): every drawn config is checked
        # against it, so a draw too large becomes a failed trial, never a run that kills workers.
        self.memory_limit = memory_limit
        self._storage: BaseStorage | None = None
        self._studies: dict[int, optuna.Study] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    @property
    def storage(self) -> BaseStorage:
        """Optuna's storage (opened on first use, in the driver's thread)."""
        if self._storage is None:
            self._storage = open_storage(self.database_url)
        return self._storage

    def optuna_study(self, study: Study) -> optuna.Study:
        """The Optuna study behind ``study`` (loaded once, then kept)."""
        cached = self._studies.get(study.id)
        if cached is None:
            cached = load_study(
                self.storage,
                study.optuna_name,
                sampler=study.sampler,
                pruner=study.pruner,
                params=space_from_json(json.loads(study.space)),
                seed=study.seed,
                options=json.loads(study.options or "{}"),
                base=json.loads(study.config),
            )
            self._studies[study.id] = cached
        return cached

    def admit(
        self, base: dict[str, Any], values: dict[str, Any]
    ) -> tuple[dict[str, Any], str | None]:
        """The config of a draw (``values`` over the study's ``base``) and why it cannot be a
        run, or None: RunConfig refuses the combination (e.g. batch_size 1 with batchnorm), or
        it cannot run here (``refusal``). A refused draw keeps the base config and becomes a
        failed trial saying why."""
        try:
            config = RunConfig(**{**base, **values}).model_dump(mode="json")
        except ValidationError as exc:
            first = exc.errors()[0]
            return base, f"the sampled settings are invalid: {first['loc']}: {first['msg']}"
        return config, self.refusal(config)

    def refusal(self, config: dict[str, Any]) -> str | None:
        """Why a drawn config cannot run here (app/admission.py: its data, the memory limit),
        or None when it can; a trial with such a draw fails saying why."""
        try:
            check_runnable(RunConfig(**config), self.memory_limit)
        except Unrunnable as exc:
            return f"the sampled settings cannot run here: {exc.field}: {exc}"
        return None

    def forget(self, study_id: int) -> None:
        """Drop a study that has ended from the cache."""
        self._studies.pop(study_id, None)

    def start(self) -> None:
        """Start the driving thread."""
        self._thread = threading.Thread(target=self._loop, name="study-driver", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Step now rather than at the next interval (a study was just created or commanded)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current step."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if isinstance(self._storage, RDBStorage):  # its own connection pool
            self._storage.engine.dispose()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self.tick()
            self._wake.wait(self.interval)
            self._wake.clear()

    def tick(self) -> None:
        """One step of every active study; an error in one is logged and retried next tick."""
        try:
            with self.db.read() as s:
                ids = crud_studies.active_study_ids(s)
                modes = {i: crud_studies.get_study(s, i).mode for i in ids}  # type: ignore[union-attr]
        except Exception:
            log.exception("study driver: cannot read the studies")
            return
        for study_id in ids:
            if self._stopping.is_set():
                return
            step = MODES.get(modes[study_id])
            if step is None:
                continue
            try:
                step(self, study_id)
            except Exception:
                log.exception("study driver: study %s", study_id)
                self.forget(study_id)  # reloaded from storage next time
