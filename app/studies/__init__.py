"""Caviar mode: studies of many ordinary runs, searched with Optuna (docs/studies.md).

``space`` checks and converts a search space, ``sampling`` holds Optuna's storage, samplers and
pruners, ``driver`` is the one thread in the server that asks and tells, ``search`` its step for
a search study, ``narrow`` makes a study around the best trials of another, ``pbt`` the step of a
population-based training study.
"""

from app.studies import pbt as _pbt  # registers the "pbt" mode with the driver
from app.studies import search as _search  # registers the "search" mode with the driver
from app.studies.driver import MODES, StudyDriver, register_mode

__all__ = ["MODES", "StudyDriver", "_pbt", "_search", "register_mode"]
