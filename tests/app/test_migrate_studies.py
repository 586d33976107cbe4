"""A database made by main before studies opens, gets the ``studies`` and ``trials`` tables,
and keeps its runs (issue 10). SQLite, and PostgreSQL with PANDAMODE_TEST_DB=postgresql."""

from __future__ import annotations

from sqlalchemy import Table, inspect, text

from app import crud
from app.db import Database
from app.models import Base
from app.settings import Settings

NEW = ("studies", "trials")


def _main_tables() -> list[Table]:
    """Today's tables less the study tables and any table that refers to them (those came
    later: a PBT study's moves)."""
    later = set(NEW)
    for table in Base.metadata.sorted_tables:  # parents come before the tables that refer
        if any(fk.column.table.name in later for fk in table.foreign_keys):
            later.add(table.name)
    return [t for t in Base.metadata.sorted_tables if t.name not in later]


def test_main_database_gets_the_study_tables_and_keeps_its_runs(settings: Settings) -> None:
    url = settings.database_url
    old = Database(url)
    tables = _main_tables()
    Base.metadata.create_all(old.engine, tables=tables)
    with old.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, name, status, config, created_at, updated_at, step) "
                "VALUES (1, 'main', 'finished', '{}', 0, 0, 300)"
            )
        )
    assert not set(NEW) & set(inspect(old.engine).get_table_names())
    old.dispose()

    db = Database(url)
    db.create_all()
    db.create_all()  # idempotent
    assert set(NEW) <= set(inspect(db.engine).get_table_names())
    with db.read() as s:
        run = crud.get_run(s, 1)
        assert run is not None and run.name == "main" and run.step == 300
        served = crud.serialize_run(run)
    assert served["study_id"] is None and served["trial"] is None
    db.dispose()
