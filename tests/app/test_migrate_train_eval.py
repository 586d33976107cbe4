"""A database made by main before ``train_evals`` opens and keeps its rows.

The training split's eval-mode figures live in their own table (app/models.py ``TrainEval``),
created when the app starts on an older database; ``metrics`` is left exactly as it was (no row
rewritten), and its old rows read as "no eval-mode figure" (null). Runs on SQLite, and on
PostgreSQL with PANDAMODE_TEST_DB=postgresql (tests/app/conftest.py).
"""

from __future__ import annotations

import math

from sqlalchemy import inspect, text

from app import crud
from app.db import Database
from app.models import Base
from app.settings import Settings


def _main_database(url: str) -> list[tuple[object, ...]]:
    """Today's main schema with a run of 300 rows (an evaluation every 50, a NaN val loss)."""
    db = Database(url)
    Base.metadata.create_all(db.engine)
    rows = [
        (1, s, 1000.0 + s, 0.01, 1.0 / s, 0.5,
         (math.nan if s == 150 else 0.3) if s % 50 == 0 else None, 0.8 if s % 50 == 0 else None)
        for s in range(1, 301)
    ]  # fmt: skip
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE train_evals")  # main has no such table
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


def _metrics_columns(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return [c["name"] for c in inspect(conn).get_columns("metrics")]


def test_main_database_gets_the_table_and_keeps_every_row(settings: Settings) -> None:
    url = settings.database_url
    old = _main_database(url)
    db = Database(url)
    assert "train_evals" not in inspect(db.engine).get_table_names()
    columns = _metrics_columns(db)
    db.create_all()
    db.create_all()  # idempotent: the second start finds the table there
    assert "train_evals" in inspect(db.engine).get_table_names()
    assert _metrics_columns(db) == columns, "metrics is left as it was"
    with db.engine.connect() as conn:
        kept = conn.exec_driver_sql(
            "SELECT run_id, step, time, lr, train_loss, train_acc, val_loss, val_acc "
            "FROM metrics ORDER BY run_id, step"
        ).fetchall()
    assert len(kept) == 300
    for row, was in zip(kept, old, strict=True):
        assert row[:6] == was[:6] and row[7] == was[7]
    with db.read() as s:
        rows = crud.metric_rows(s, 1)
        assert [r[0] for r in rows] == list(range(1, 301))
        assert rows[49][7:] == (None, None), "an old evaluation: no eval-mode figure"
        assert math.isnan(rows[149][5]) and rows[149][7] is None
    # The new figures are stored from now on, beside the old rows.
    with db.write() as s:
        crud.append_metrics(
            s,
            1,
            [{"step": 350, "time": 1350.0, "lr": 0.01, "train_loss": 0.1, "train_acc": 0.9,
              "val_loss": 0.2, "val_acc": 0.85, "train_eval_loss": 0.05, "train_eval_acc": 0.97}],
        )  # fmt: skip
    with db.read() as s:
        assert crud.metric_rows(s, 1, after=300)[0][7:] == (0.05, 0.97)
    db.dispose()
