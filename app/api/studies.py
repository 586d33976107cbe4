"""``/api/studies``: caviar mode, many ordinary runs with settings drawn by Optuna.

The routes only store what is asked (a study row, ordinary commands to its runs, a fork); the
study driver in the server (app/studies/driver.py) creates the trials and tells Optuna how they
ended. See docs/api.md, "Studies".
"""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app import crud
from app.api.deps import MAX_DB_INT, DbDep, ReadSession, RunId, SettingsDep
from app.api.responses import EventOut, RunOut
from app.api.schemas import (
    FROZEN_ON_FORK,
    MAX_MORE_STEPS,
    Pace,
    config_for_storage,
    invalid,
    stored_config,
)
from app.crud import studies as crud_studies
from app.crud import study_moves
from app.crud.fork_rates import settle_fork_rate
from app.models import TERMINAL_STATUSES, Study
from app.studies import pbt_moves
from app.studies.narrow import narrow_space
from app.studies.pbt import DEFAULT_INTERVAL_EVALS
from app.studies.space import (
    DEFAULT_GRID_POINTS,
    MAX_CHOICES,
    MAX_GRID,
    SpaceError,
    grid_size,
    parse_space,
    space_from_json,
)
from engine import RunConfig
from engine.config import MAX_STEPS

router = APIRouter(prefix="/api/studies", tags=["studies"])

MAX_TRIALS = 1000
MAX_PARALLEL = 64
DEFAULT_TRIALS = 16
MAX_SEED = 2**31 - 1  # stored in an INTEGER column (32-bit on PostgreSQL)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _no_nul(name: str | None) -> str | None:
    # PostgreSQL text cannot hold a NUL: refused here rather than failing in the driver.
    if name is not None and "\x00" in name:
        raise ValueError("name must not contain a NUL character")
    return name


Name = Annotated[str | None, Field(default=None, max_length=200), AfterValidator(_no_nul)]


class Distribution(_Strict):
    """``{"low", "high", "log"}``, ``{"choices"}`` or ``{"low", "high", "log_one_minus"}``."""

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    log_one_minus: bool = False
    choices: list[Any] | None = Field(default=None, min_length=1, max_length=MAX_CHOICES)

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log or self.log_one_minus:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs low and high (or give choices)")
        if self.log and self.log_one_minus:
            raise ValueError("log and log_one_minus exclude each other")
        return self


class PrunerOptions(_Strict):
    """Pruner settings: median's ``n_startup_trials`` (finished trials before any pruning) and
    ``n_warmup_steps`` (steps before a trial can be pruned); hyperband's ``reduction_factor``."""

    n_startup_trials: int = Field(5, ge=0, le=MAX_TRIALS)
    n_warmup_steps: int = Field(0, ge=0, le=MAX_STEPS)
    reduction_factor: int = Field(3, ge=2, le=100)


Sampler = Literal["random", "grid", "tpe"]
Pruner = Literal["median", "hyperband"]


class StudyCreate(_Strict):
    """``POST /api/studies``: the base config, the space, and how to search it."""

    name: Name = None
    config: RunConfig = Field(default_factory=RunConfig)
    space: dict[str, Distribution] = Field(min_length=1, max_length=32)
    # Trials in all (default 16; a grid's default and cap is its size).
    n_trials: int | None = Field(default=None, ge=1, le=MAX_TRIALS)
    parallel: int = Field(default=2, ge=1, le=MAX_PARALLEL)
    sampler: Sampler = "random"
    pruner: Pruner | None = None
    mode: Literal["search", "pbt"] = "search"
    # Seeds the sampler (default: drawn at random and stored): same seed, same trials.
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    # Numbers per range on a grid (log-spaced where log).
    grid_points: int = Field(default=DEFAULT_GRID_POINTS, ge=2, le=100)
    pruner_options: PrunerOptions = Field(default_factory=PrunerOptions)
    # Steps per second at most for each trial (null: full speed), queued as its first set_pace
    # as ``POST /api/runs`` does: a study a person can watch trial by trial.
    pace: Pace | None = None
    # Mode pbt: steps between two rankings of a member (default 4 evaluations; at least
    # eval_every, below the config's max_steps). app/studies/pbt.py.
    perturbation_interval: int | None = Field(default=None, ge=1, le=MAX_STEPS)


class StudyCommand(_Strict):
    """Pause, resume or stop every unfinished trial; pause and stop also stop creating new
    ones (resume starts again)."""

    type: Literal["pause", "resume", "stop"]


class NarrowRequest(_Strict):
    """``POST /api/studies/{id}/narrow``: a study around the best ``k`` trials."""

    k: int = Field(default=3, ge=1, le=MAX_TRIALS)
    name: Name = None
    n_trials: int | None = Field(default=None, ge=1, le=MAX_TRIALS)
    parallel: int | None = Field(default=None, ge=1, le=MAX_PARALLEL)
    sampler: Sampler | None = None
    pruner: Pruner | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)


class ContinueBest(_Strict):
    """``POST /api/studies/{id}/continue-best``: optional name of the new run, and
    ``more_steps`` N to train N steps after the fork step (as ``POST /api/runs/{id}/fork``).
    Without it the run trains to the trial's ``max_steps``; when the best checkpoint is the
    trial's last step (a finished trial), as many more steps as the trial trained."""

    name: Name = None
    more_steps: int | None = Field(default=None, ge=1, le=MAX_MORE_STEPS, strict=True)


class TrialOut(BaseModel):
    """A trial: its run and what it set (``params``, RunConfig values; ``sampled``, Optuna's
    draw: ``1-momentum`` for a log_one_minus momentum); ``state`` is what Optuna was told
    (running until then), ``value`` the objective told (best validation loss)."""

    number: int
    run_id: int
    name: str
    params: dict[str, Any]
    sampled: dict[str, Any]
    status: str
    step: int
    total_steps: int | None
    lr: float | str | None
    best_val_loss: float | str | None
    best_val_acc: float | str | None
    state: Literal["running", "complete", "pruned", "fail"]
    value: float | str | None
    pruned_reason: str | None


class TreeNode(BaseModel):
    """An edge of the study's family tree: ``run_id`` was forked from ``parent_id`` at
    ``parent_step`` (both null for a run that is no fork)."""

    run_id: int
    trial: int
    parent_id: int | None
    parent_step: int | None


class MoveOut(BaseModel):
    """A PBT exploit: ``member_run_id`` replaced by ``child_run_id``, a fork of
    ``source_run_id``; ``round`` the perturbation step (null when asked ``by`` "user"),
    ``status`` waiting (for the source's checkpoint), done or cancelled (``note`` says why)."""

    id: int
    member_run_id: int
    source_run_id: int
    round: int | None
    by: Literal["pbt", "user"]
    status: Literal["waiting", "done", "cancelled"]
    child_run_id: int | None
    member_loss: float | str | None
    source_loss: float | str | None
    note: str | None
    created_at: str
    done_at: str | None


class StudyOut(BaseModel):
    """A study; ``trials`` in ``GET /api/studies/{id}`` (not in the list), ``counts`` of its
    runs by status, ``best`` the trial with the lowest validation loss so far."""

    id: int
    name: str
    status: Literal["running", "paused", "stopping", "stopped", "finished"]
    mode: str
    config: dict[str, Any]
    space: dict[str, Any]
    n_trials: int
    parallel: int
    sampler: str
    pruner: str | None
    seed: int
    options: dict[str, Any]
    parent_study_id: int | None
    created_at: str
    updated_at: str
    counts: dict[str, int]
    best: TrialOut | None
    trials: list[TrialOut] | None = None
    # In GET /api/studies/{id}: each trial run and the run it was forked from (a PBT exploit;
    # null for a first member or a search trial), and PBT's exploits.
    tree: list[TreeNode] | None = None
    moves: list[MoveOut] | None = None


def study_id_path(study_id: Annotated[int, Path(description="the study's id")]) -> int:
    """A study id from the path (one the database cannot hold is a 404, not an overflow)."""
    if not 1 <= study_id <= MAX_DB_INT:
        raise HTTPException(status_code=404, detail=f"study {study_id} not found")
    return study_id


StudyId = Annotated[int, Depends(study_id_path)]


def _study_or_404(s: Any, study_id: int) -> Study:
    study = crud_studies.get_study(s, study_id)
    if study is None:
        raise HTTPException(status_code=404, detail=f"study {study_id} not found")
    return study


def _wake(request: Request) -> None:
    driver = getattr(request.app.state, "study_driver", None)
    if driver is not None:
        driver.wake()


def _space_or_422(space: dict[str, Any], base: dict[str, Any], loc: tuple[str, ...]) -> list[Any]:
    try:
        return parse_space(space, base)
    except SpaceError as exc:
        raise invalid((*loc, *exc.loc), exc.msg, exc.value) from exc


def _store(
    db: Any,
    *,
    name: str | None,
    config: dict[str, Any],
    space: dict[str, Any],
    n_trials: int | None,
    parallel: int,
    sampler: str,
    pruner: str | None,
    seed: int | None,
    options: dict[str, Any],
    parent_study_id: int | None = None,
    loc: tuple[str, ...] = ("body",),
    mode: str = "search",
) -> dict[str, Any]:
    params = _space_or_422(space, config, (*loc, "space"))
    if sampler == "grid":
        size = grid_size(params, options["grid_points"])
        if size > MAX_GRID:
            raise invalid((*loc, "space"), f"the grid has {size} points (at most {MAX_GRID})", size)
        n_trials = min(n_trials or size, size)
    with db.write() as s:
        study = crud_studies.create_study(
            s,
            name=name,
            config=config,
            space={p.field: p.to_json() for p in params},
            n_trials=n_trials or DEFAULT_TRIALS,
            parallel=parallel,
            sampler=sampler,
            pruner=pruner,
            mode=mode,
            seed=secrets.randbelow(MAX_SEED + 1) if seed is None else seed,
            options=options,
            parent_study_id=parent_study_id,
        )
        return crud_studies.serialize_study(study, [])


@router.post("", status_code=201, response_model=StudyOut)
def create_study(
    body: StudyCreate, db: DbDep, settings: SettingsDep, request: Request
) -> dict[str, Any]:
    """Create a study: the driver creates its trials as ordinary queued runs, ``parallel`` at
    a time, until ``n_trials`` have run (a grid: each grid point once)."""
    config = config_for_storage(body.config, settings)  # 422 when it cannot run here
    space = {k: v.model_dump(exclude_defaults=True) for k, v in body.space.items()}
    options = {
        "grid_points": body.grid_points,
        "pace": body.pace,
        **body.pruner_options.model_dump(),
    }
    n_trials = body.n_trials
    if body.mode == "pbt":
        options["perturbation_interval"] = pbt_interval(body)
        n_trials = body.parallel  # the population: its size never changes
    elif body.perturbation_interval is not None:
        raise invalid(
            ("body", "perturbation_interval"), "only for mode pbt", body.perturbation_interval
        )
    out = _store(
        db,
        name=body.name,
        config=config,
        space=space,
        n_trials=n_trials,
        parallel=body.parallel,
        sampler=body.sampler,
        pruner=body.pruner,
        seed=body.seed,
        options=options,
        mode=body.mode,
    )
    _wake(request)
    return out


def pbt_interval(body: StudyCreate) -> int:
    """A PBT study's checks (422 naming the field) and its perturbation interval: a population
    of at least 2 trained to the config's max_steps, a space with a field explore may change,
    no sampler or pruner of a search, an interval of at least one evaluation that fits."""
    cfg = body.config
    if body.parallel < 2:
        raise invalid(("body", "parallel"), "PBT needs a population of at least 2", body.parallel)
    if body.n_trials is not None:
        raise invalid(("body", "n_trials"), "PBT's population is `parallel`", body.n_trials)
    if body.sampler != "random":
        raise invalid(("body", "sampler"), "PBT draws its first members at random", body.sampler)
    if body.pruner is not None:
        raise invalid(("body", "pruner"), "PBT replaces members instead of pruning", body.pruner)
    if cfg.max_steps is None:
        raise invalid(
            ("body", "config", "max_steps"), "PBT trains every member to max_steps: set it", None
        )
    if not any(field not in FROZEN_ON_FORK for field in body.space):
        raise invalid(
            ("body", "space"),
            "PBT explores only fields a fork can change; this space has none (e.g. add lr)",
            sorted(body.space),
        )
    interval = body.perturbation_interval or DEFAULT_INTERVAL_EVALS * cfg.eval_every
    if interval < cfg.eval_every:
        raise invalid(
            ("body", "perturbation_interval"),
            f"at least eval_every ({cfg.eval_every}): members are ranked by their evaluations",
            interval,
        )
    if interval >= cfg.max_steps:
        raise invalid(
            ("body", "perturbation_interval"),
            f"below max_steps ({cfg.max_steps}), or no member is ever perturbed",
            interval,
        )
    return interval


@router.get("", response_model=list[StudyOut])
def list_studies(s: ReadSession) -> list[dict[str, Any]]:
    """Studies, newest first (without their trials: ``counts`` and ``best`` sum them up)."""
    return [
        crud_studies.serialize_study(st, crud_studies.trials_of(s, st.id), with_trials=False)
        for st in crud_studies.list_studies(s)
    ]


@router.get("/{study_id}", response_model=StudyOut)
def get_study(study_id: StudyId, s: ReadSession) -> dict[str, Any]:
    """One study with its trials."""
    study = _study_or_404(s, study_id)
    rows = crud_studies.trials_of(s, study_id)
    out = crud_studies.serialize_study(study, rows)
    out["tree"] = study_moves.family_tree(rows)
    out["moves"] = [study_moves.serialize_move(m) for m in study_moves.moves_of(s, study_id)]
    return out


@router.post("/{study_id}/commands", status_code=202, response_model=StudyOut)
def study_command(
    study_id: StudyId, body: StudyCommand, db: DbDep, request: Request
) -> dict[str, Any]:
    """Queue the ordinary command for every unfinished trial run (a stop: with the reason
    "the study was stopped"); the study's status says whether new trials are created. A study
    that has ended takes no more commands (409)."""
    with db.write() as s:
        study = _study_or_404(s, study_id)
        if study.status in ("stopping", "stopped", "finished"):
            raise HTTPException(status_code=409, detail=f"study {study_id} is {study.status}")
        status = {"pause": "paused", "resume": "running", "stop": "stopping"}[body.type]
        crud_studies.set_study_status(s, study_id, status)
        payload: dict[str, Any] = {"study_id": study_id}
        if body.type == "stop":
            payload["reason"] = "the study was stopped"
        for trial, run in crud_studies.trials_of(s, study_id):
            if trial.state is not None or run.status in TERMINAL_STATUSES:
                continue
            if body.type == "stop" and trial.pruned_reason is None:
                crud_studies.set_pruned(s, trial.id, "the study was stopped")
            crud_studies.queue_command(s, run, body.type, {**payload, "trial": trial.number})
        s.expire_all()
        out = crud_studies.serialize_study(
            _study_or_404(s, study_id), crud_studies.trials_of(s, study_id)
        )
    _wake(request)
    return out


@router.post("/{study_id}/narrow", status_code=201, response_model=StudyOut)
def narrow(study_id: StudyId, body: NarrowRequest, db: DbDep, request: Request) -> dict[str, Any]:
    """A new study, linked to this one, whose ranges shrink around its best ``k`` trials
    (lowest validation loss; log ranges in log space), always inside this study's ranges."""
    with db.read() as s:
        parent = _study_or_404(s, study_id)
        rows = crud_studies.trials_of(s, study_id)
    scored = sorted(
        (r.best_val_loss, t.number, t)
        for t, r in rows
        if r.best_val_loss is not None and r.best_val_loss == r.best_val_loss
    )
    if not scored:
        raise HTTPException(
            status_code=409, detail=f"study {study_id} has no trial with a validation loss yet"
        )
    best = [crud_studies.trial_params(t) for _, _, t in scored[: body.k]]
    params = space_from_json(crud_studies.study_json(parent, "space"))
    options = crud_studies.study_json(parent, "options")
    out = _store(
        db,
        name=body.name or f"{parent.name} narrowed",
        config=crud_studies.study_json(parent, "config"),
        space=narrow_space(params, best),
        n_trials=body.n_trials or parent.n_trials,
        parallel=body.parallel or parent.parallel,
        sampler=body.sampler or parent.sampler,
        pruner=body.pruner if "pruner" in body.model_fields_set else parent.pruner,
        seed=body.seed,
        options=options,
        parent_study_id=study_id,
    )
    _wake(request)
    return out


@router.post("/{study_id}/continue-best", status_code=201, response_model=RunOut)
def continue_best(
    study_id: StudyId, db: DbDep, settings: SettingsDep, body: ContinueBest | None = None
) -> dict[str, Any]:
    """Fork the best trial (lowest validation loss) from its checkpoint at or before its best
    evaluation into a free-standing run (no study's trial) to nurse by hand. It trains
    ``more_steps`` after the fork step; by default to the trial's ``max_steps``, or, when the
    checkpoint is already there (a finished trial's best is often its last evaluation), as many
    steps again as the trial trained: a run that opened at 300/300 would end at once."""
    body = body or ContinueBest()
    with db.write() as s:
        study = _study_or_404(s, study_id)
        best = crud_studies.best_trial(crud_studies.trials_of(s, study_id))
        if best is None:
            raise HTTPException(
                status_code=409, detail=f"study {study_id} has no trial with a validation loss yet"
            )
        trial, run = best
        at = crud_studies.best_eval_step(s, run.id) or 0
        start = crud.checkpoint_step_at_or_before(s, run.id, at)
        if start is None:
            raise HTTPException(
                status_code=409, detail=f"run {run.id} has no checkpoint at or before step {at}"
            )
        config = crud.run_config(run)
        more = body.more_steps or default_more_steps(config.get("max_steps"), start, run.step)
        if more is not None:
            config = stored_config(
                {**config, "max_steps": start + more}, settings, ("body", "more_steps")
            )
        name = body.name or f"{study.name}: best (trial {trial.number})"
        child = crud.fork_run(s, run, step=start, config=config, name=name)
        if child is None:
            raise HTTPException(
                status_code=409, detail=f"run {run.id} has no checkpoint at or before step {at}"
            )
        if more is not None and child.parent_step != start:  # a damaged one was skipped
            config["max_steps"] = int(child.parent_step or 0) + more
            child.config = json.dumps(config)
        settle_fork_rate(s, run, child, new_lr=None)
        s.flush()
        return crud.serialize_run(child)


def default_more_steps(max_steps: int | None, start: int, trained: int) -> int | None:
    """Steps a continued best trains when none are asked: None (on to the trial's max_steps)
    unless the fork step is already there, then as many as the trial trained (at least 1)."""
    if max_steps is None or start < max_steps:
        return None
    return max(trained, max_steps, 1)


class ExploitRequest(_Strict):
    """``POST /api/studies/{id}/members/{run_id}/exploit``: the member to copy."""

    source: int = Field(ge=1, le=MAX_DB_INT, description="run id of the member to copy")


class ExploreRequest(_Strict):
    """``POST /api/studies/{id}/members/{run_id}/explore``: a new rate, or a factor of the
    current one (exactly one of them)."""

    lr: float | None = Field(default=None, gt=0.0, le=100.0)
    factor: float | None = Field(default=None, gt=0.0, le=100.0)

    @model_validator(mode="after")
    def _one(self) -> ExploreRequest:
        if (self.lr is None) == (self.factor is None):
            raise ValueError("give either lr or factor")
        return self


def _refused(exc: pbt_moves.MoveRefused, body: BaseModel) -> Exception:
    if exc.status == 422:
        field = exc.field or "body"
        return invalid(("body", field), exc.msg, getattr(body, field, None))
    return HTTPException(status_code=exc.status, detail=exc.msg)


@router.post("/{study_id}/members/{run_id}/exploit", status_code=202, response_model=MoveOut)
def exploit_member(
    study_id: StudyId, run_id: RunId, body: ExploitRequest, db: DbDep, request: Request
) -> dict[str, Any]:
    """Replace the member by a fork of ``source`` at the source's latest state, its settings
    explored, as PBT's own exploit does (a move PBT makes only for the bottom quarter). The
    answer is the move, waiting for the source's checkpoint; the study driver then forks."""
    with db.write() as s:
        study = _study_or_404(s, study_id)
        try:
            move = pbt_moves.request_exploit(s, study, run_id, body.source)
        except pbt_moves.MoveRefused as exc:
            raise _refused(exc, body) from exc
        out = study_moves.serialize_move(move)
    _wake(request)
    return out


@router.post("/{study_id}/members/{run_id}/explore", status_code=202, response_model=EventOut)
def explore_member(
    study_id: StudyId, run_id: RunId, body: ExploreRequest, db: DbDep
) -> dict[str, Any]:
    """Change the member's learning rate now, as PBT's explore does after an exploit: an
    ordinary ``set_lr`` whose ``reason`` says "explore by hand: lr a -> b"."""
    with db.write() as s:
        study = _study_or_404(s, study_id)
        try:
            event = pbt_moves.explore_lr(s, study, run_id, lr=body.lr, factor=body.factor)
        except pbt_moves.MoveRefused as exc:
            raise _refused(exc, body) from exc
        return crud.serialize_event(event)
