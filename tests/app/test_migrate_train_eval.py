"""A database made by main before the eval-mode training columns opens and keeps its rows.

Today's main has ``metrics`` without ``train_eval_loss`` / ``train_eval_acc`` (a WITHOUT ROWID
table on SQLite). Starting the app adds them with ALTER TABLE ADD COLUMN (app/migrate.py): every
stored row keeps every value, and reads as "no eval-mode figure" (null) in the new columns.
Runs on SQLite, and on PostgreSQL with PANDAMODE_TEST_DB=postgresql (tests/app/conftest.py).
"""

from __future__ import annotations

import math

from sqlalchemy import text

from app import crud
from app.db import Database
from app.models import Base
from app.settings import Settings

# The metrics table exactly as main's SQLAlchemy DDL made it on SQLite (before these columns).
MAIN_METRICS_SQLITE = """
CREATE TABLE metrics (
    run_id INTEGER NOT NULL, step INTEGER NOT NULL, time FLOAT NOT NULL, lr FLOAT,
    train_loss FLOAT, train_acc FLOAT, val_loss FLOAT, val_acc FLOAT,
    PRIMARY KEY (run_id, step),
    FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
) WITHOUT ROWID
"""
MAIN_EVAL_INDEX = "CREATE INDEX ix_metrics_eval ON metrics (run_id, step) WHERE val_acc IS NOT NULL"
NEW = ("train_eval_loss", "train_eval_acc")


def _main_database(url: str) -> list[tuple[object, ...]]:
    """Today's main schema with a run of 300 rows (an evaluation every 50, a NaN val loss)."""
    db = Database(url)
    Base.metadata.create_all(db.engine)  # every other table as today
    rows = [
        (1, s, 1000.0 + s, 0.01, 1.0 / s, 0.5,
         (math.nan if s == 150 else 0.3) if s % 50 == 0 else None, 0.8 if s % 50 == 0 else None)
        for s in range(1, 301)
    ]  # fmt: skip
    with db.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TABLE metrics")
            conn.exec_driver_sql(MAIN_METRICS_SQLITE)
            conn.exec_driver_sql(MAIN_EVAL_INDEX)
        else:
            conn.exec_driver_sql(f"ALTER TABLE metrics DROP COLUMN {NEW[0]}, DROP COLUMN {NEW[1]}")
        conn.execute(
            text(
                "INSERT INTO runs (id, name, status, config, created_at, updated_at, step) "
                "VALUES (1, 'main', 'finished', '{}', 0, 0, 300)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO metrics (run_id, step, time, lr, train_loss, train_acc, val_loss, "
                "val_acc) VALUES (:r, :s, :t, :lr, :tl, :ta, :vl, :va)"
            ),
            [
                dict(zip(("r", "s", "t", "lr", "tl", "ta", "vl", "va"), r, strict=True))
                for r in rows
            ],
        )
    db.dispose()
    return rows


def _columns(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            return [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(metrics)")]
        return list(
            conn.execute(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'metrics' ORDER BY ordinal_position"
                )
            ).scalars()
        )


def test_main_database_gets_the_columns_and_keeps_every_row(settings: Settings) -> None:
    url = settings.database_url
    old = _main_database(url)
    db = Database(url)
    assert not set(NEW) & set(_columns(db))
    db.create_all()
    db.create_all()  # idempotent: the second start finds the columns there
    assert _columns(db)[-2:] == list(NEW)
    with db.engine.connect() as conn:
        kept = conn.exec_driver_sql(
            "SELECT run_id, step, time, lr, train_loss, train_acc, val_loss, val_acc, "
            "train_eval_loss, train_eval_acc FROM metrics ORDER BY run_id, step"
        ).fetchall()
        if conn.dialect.name == "sqlite":
            ddl = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'metrics'"
            ).scalar_one()
            assert "WITHOUT ROWID" in ddl.upper()
    assert len(kept) == 300
    for row, was in zip(kept, old, strict=True):
        assert row[8:] == (None, None)
        assert row[:6] == was[:6] and row[7] == was[7]
    with db.read() as s:
        rows = crud.metric_rows(s, 1)
        assert [r[0] for r in rows] == list(range(1, 301))
        assert math.isnan(rows[149][5]) and rows[149][7] is None, "NaN val loss, no eval figure"
    # The new columns take values from now on, beside the old rows.
    with db.write() as s:
        crud.append_metrics(
            s,
            1,
            [{"step": 301, "time": 1301.0, "lr": 0.01, "train_loss": 0.1, "train_acc": 0.9,
              "val_loss": 0.2, "val_acc": 0.85, "train_eval_loss": 0.05, "train_eval_acc": 0.97}],
        )  # fmt: skip
    with db.read() as s:
        assert crud.metric_rows(s, 1, after=300)[0][7:] == (0.05, 0.97)
    db.dispose()
