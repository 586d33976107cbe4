"""The tables (docs/architecture.md, "Database"). Times are unix seconds (floats).

Plain portable column types only, so the same metadata works on SQLite and PostgreSQL; the few
dialect-specific choices (WITHOUT ROWID, partial-index WHERE) are dialect kwargs that the other
dialect ignores.
"""

from __future__ import annotations

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RUN_STATUSES = ("queued", "running", "paused", "finished", "stopped", "failed", "diverged")
TERMINAL_STATUSES = ("finished", "stopped", "failed", "diverged")


class Base(DeclarativeBase):
    """Declarative base shared by every table."""


class Run(Base):
    """One training run: its config, where it stands, and who holds it (worker_id + lease)."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    config: Mapped[str] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    parent_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    step: Mapped[int] = mapped_column(Integer, default=0)
    lr: Mapped[float | None] = mapped_column(Float, nullable=True)
    total_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    best_val_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    best_val_acc: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Workers that died holding the run (lease expired) in a row without it making progress,
    # and the committed step at the last such takeover (app/crud/leases.py claim_run).
    crashes: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    crash_step: Mapped[int | None] = mapped_column(Integer, nullable=True)


_EVALUATED = text("val_acc IS NOT NULL")


class Metric(Base):
    """One row per completed step; (run_id, step) is the key that makes replays idempotent.

    SQLite stores NaN as NULL, so a NULL ``train_loss`` means a non-finite loss (it is always set
    otherwise) and a NULL ``val_loss`` beside a set ``val_acc`` means a non-finite validation loss.

    On SQLite the table is WITHOUT ROWID: the rows live in the (run_id, step) b-tree itself
    instead of a rowid table plus a separate key index (a third less space per step). The epoch
    is not stored (step / steps per epoch, never served). ``ix_metrics_eval`` is a partial index
    of the evaluation rows only, so "every evaluation in a range" and "the latest evaluation"
    never scan the training rows between them.
    """

    __tablename__ = "metrics"
    __table_args__ = (
        Index(
            "ix_metrics_eval",
            "run_id",
            "step",
            sqlite_where=_EVALUATED,
            postgresql_where=_EVALUATED,
        ),
        {"sqlite_with_rowid": False},
    )

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[float] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float, nullable=True)
    train_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    train_acc: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_acc: Mapped[float | None] = mapped_column(Float, nullable=True)


class TrainEval(Base):
    """The training split measured like validation at an evaluation step (evaluation mode, a
    fixed subset as large as the validation split: engine ``Trainer.evaluate_train``).

    Read as the ``train_eval_*`` columns of that step's metric row (app/crud/lineage.py). A table
    of its own rather than two columns on ``metrics``: on SQLite two more columns cost every
    row 2 header bytes even when NULL (+2.4 MB per 1M steps, bench/long_runs.py), while these
    rows exist only at evaluations (+0.3 MB per 1M steps at one evaluation per 100 steps).
    A NULL ``train_eval_loss`` is a NaN (SQLite stores NaN as NULL), as for ``val_loss``.
    """

    __tablename__ = "train_evals"
    __table_args__ = ({"sqlite_with_rowid": False},)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_eval_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    train_eval_acc: Mapped[float] = mapped_column(Float)


class MetricRollup(Base):
    """Where a bucket of a run's own rows has its extremes, kept as the run grows.

    Bucket ``bucket`` of width ``width`` holds steps ``bucket * width + 1 .. (bucket + 1) * width``
    (widths in ``app.crud.rollups.WIDTHS``). Updated in the same transaction as the rows it
    summarizes, so an overview of any range reads a few thousand of these instead of every row.
    ``lo_*`` is the lowest finite training loss (NULL when the bucket has none), ``hi_*`` the
    highest, a non-finite loss counting as +infinity (stored as such: a divergence is never lost);
    ``val_*`` the same over evaluation rows (NULL when the bucket has none).
    """

    __tablename__ = "metric_rollups"
    __table_args__ = ({"sqlite_with_rowid": False},)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    width: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
    lo_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lo_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    hi_step: Mapped[int] = mapped_column(Integer)
    hi_loss: Mapped[float] = mapped_column(Float)
    val_n: Mapped[int] = mapped_column(Integer)
    val_lo_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    val_lo_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_hi_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    val_hi_loss: Mapped[float | None] = mapped_column(Float, nullable=True)


class Event(Base):
    """A user command (pending until a worker applies it) or a worker status change."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run_pending", "run_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text, default="{}")
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)
    applied_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class Checkpoint(Base):
    """A serialized Trainer state (engine.state_to_bytes) and its hash, checked before loading."""

    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_run_step", "run_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    state: Mapped[bytes] = mapped_column(LargeBinary)


class RunPicture(Base):
    """The latest evaluation pictures of a run: one row per run, replaced as it trains.

    Written by the worker in the same transaction as the evaluation rows they belong to
    (app/worker/pictures.py). ``confusion`` is the validation confusion matrix at evaluation
    ``step`` (JSON rows = true class, ``labels`` the original class labels). The decision
    regions of a 2-D dataset, refreshed every few seconds of training, not at every evaluation
    (a grid's forward pass costs as much as dozens of steps): ``regions`` holds the predicted
    classes then the winning probabilities (0..255) of a ``regions_size`` square grid, as uint8,
    row 0 at the top; ``regions_extent`` is its JSON ``[x0, x1, y0, y1]``; ``points`` /
    ``point_labels`` are the training points drawn on top (float32 pairs, uint8 classes).
    """

    __tablename__ = "run_pictures"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer)
    labels: Mapped[str] = mapped_column(Text)
    confusion: Mapped[str] = mapped_column(Text)
    regions_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    regions_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    regions: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    regions_extent: Mapped[str | None] = mapped_column(Text, nullable=True)
    points: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    point_labels: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class LayerHealth(Base):
    """One layer's health at one measured step (engine/health.py; every ``health_every`` steps).

    (run_id, step, layer) is the key that makes a replay after a crash, or a fork, idempotent
    (inserted with ON CONFLICT DO NOTHING, in the transaction of the step's metric row). WITHOUT
    ROWID on SQLite as ``metrics``: the rows live in the key's b-tree, and "after step S" or "the
    latest step" is one range scan. NULL in ``act_*``, ``dead_frac``, ``bn_shift`` means "does not
    apply" (no ReLU, no BN); SQLite stores NaN as NULL too, so ``nan_mask`` has bit k set when
    column k of ``app.crud.health.VALUES`` was NaN (0 almost always), and readers restore it.
    """

    __tablename__ = "layer_health"
    __table_args__ = ({"sqlite_with_rowid": False},)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer: Mapped[int] = mapped_column(Integer, primary_key=True)
    grad_norm: Mapped[float | None] = mapped_column(Float, nullable=True)
    weight_norm: Mapped[float | None] = mapped_column(Float, nullable=True)
    update_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    act_mean: Mapped[float | None] = mapped_column(Float, nullable=True)
    act_std: Mapped[float | None] = mapped_column(Float, nullable=True)
    dead_frac: Mapped[float | None] = mapped_column(Float, nullable=True)
    bn_shift: Mapped[float | None] = mapped_column(Float, nullable=True)
    nan_mask: Mapped[int] = mapped_column(Integer, default=0)


STUDY_STATUSES = ("running", "paused", "stopping", "stopped", "finished")


class Study(Base):
    """A study (caviar mode, docs/studies.md): many ordinary runs with sampled settings.

    ``config`` is the base RunConfig (JSON) every trial starts from, ``space`` the distributions
    (JSON, app/studies/space.py) its trials' settings are drawn from. The study driver in the
    server (app/studies/driver.py) alone asks Optuna for trials and tells it their outcomes;
    Optuna's own state lives in its storage under ``optuna_name`` (a journal file beside a
    SQLite database, its RDB storage in schema ``optuna`` on PostgreSQL). ``parent_study_id``
    links a study narrowed around the best trials of another (coarse to fine). ``options`` is
    JSON for the rest (grid points, pruner settings).
    """

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    config: Mapped[str] = mapped_column(Text)
    space: Mapped[str] = mapped_column(Text)
    n_trials: Mapped[int] = mapped_column(Integer)
    parallel: Mapped[int] = mapped_column(Integer)
    sampler: Mapped[str] = mapped_column(String(16))
    pruner: Mapped[str | None] = mapped_column(String(16), nullable=True)
    seed: Mapped[int] = mapped_column(Integer)
    options: Mapped[str] = mapped_column(Text, default="{}")
    optuna_name: Mapped[str] = mapped_column(String(100), unique=True)
    parent_study_id: Mapped[int | None] = mapped_column(
        ForeignKey("studies.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class StudyTrial(Base):
    """One trial of a study: the ordinary run that trains it and what Optuna was told.

    A table of its own rather than columns on ``runs``: most runs are no trial, and the run
    stays an ordinary run (commands, fork, checkpoints). ``number`` is Optuna's trial number
    in the study (0, 1, ...; unique per study, so a trial is never created twice), ``params``
    the RunConfig values it set, ``sampled`` what Optuna drew (``1-momentum`` for a
    log_one_minus parameter). ``state`` is null until Optuna was told the outcome (then
    complete, pruned or fail, with ``value``); ``reported_step`` the last evaluation reported
    to the pruner; ``pruned_reason`` set when the pruner (or a study stop) ended it.
    A member of a PBT study (app/studies/pbt.py) has no Optuna trial (``optuna_trial_id``
    -1): PBT draws its own values; its ``reported_step`` is the last perturbation step at
    which it was ranked, and its ``pruned_reason`` says which exploit replaced it.
    """

    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("study_id", "number", name="uq_trials_study_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), unique=True)
    number: Mapped[int] = mapped_column(Integer)
    optuna_trial_id: Mapped[int] = mapped_column(Integer)
    params: Mapped[str] = mapped_column(Text)
    sampled: Mapped[str] = mapped_column(Text)
    state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    told_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    reported_step: Mapped[int] = mapped_column(Integer, default=0)
    pruned_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


class StudyMove(Base):
    """One exploit of population-based training (app/studies/pbt.py, docs/studies.md): the
    member ``member_run_id`` is replaced by a fork of ``source_run_id``.

    Written in two steps, both by the study driver: ``waiting`` while a ``checkpoint`` command
    (``checkpoint_event_id``) asks the source for a checkpoint of its latest state, then
    ``done`` (the fork is ``child_run_id``) or ``cancelled`` (``note`` says why). ``round`` is
    the perturbation step for PBT's own moves (null for one asked by hand, ``by`` = "user"):
    (member_run_id, round) is unique, so a restarted driver never exploits a member twice at
    the same step. ``member_loss`` and ``source_loss`` are the latest validation losses the
    ranking compared.
    """

    __tablename__ = "study_moves"
    __table_args__ = (UniqueConstraint("member_run_id", "round", name="uq_study_moves_round"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    member_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    source_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    round: Mapped[int | None] = mapped_column(Integer, nullable=True)
    by: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    checkpoint_event_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    child_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
    )
    member_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    source_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    done_at: Mapped[float | None] = mapped_column(Float, nullable=True)
