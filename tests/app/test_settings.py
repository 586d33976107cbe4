"""Settings: env prefix, the default SQLite URL, and the round trip to worker subprocesses."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings

pytestmark = pytest.mark.timeout(10)


def test_defaults_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("HOST", "PORT", "DATA_DIR", "DB_URL", "TOKEN", "WORKERS"):
        monkeypatch.delenv(f"PANDAMODE_{name}", raising=False)
    settings = Settings()
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.database_url == f"sqlite:///{tmp_path / 'pandamode-data' / 'pandamode.db'}"
    assert not settings.needs_token
    monkeypatch.setenv("PANDAMODE_HOST", "0.0.0.0")
    monkeypatch.setenv("PANDAMODE_PORT", "9001")
    monkeypatch.setenv("PANDAMODE_DB_URL", "postgresql+psycopg://u@h/db")
    settings = Settings()
    assert settings.port == 9001 and settings.needs_token
    assert settings.database_url == "postgresql+psycopg://u@h/db"


def test_children_rebuild_the_same_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    parent = Settings(data_dir=tmp_path, lease_seconds=2.5, sqlite_wal=False, token="secret")
    env = parent.to_env()
    assert "PANDAMODE_TOKEN" not in env, "workers never get the web token"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    child = Settings()
    assert child.database_url == parent.database_url
    assert child.lease_seconds == 2.5 and child.sqlite_wal is False
    assert child.model_dump(exclude={"token", "data_dir", "db_url"}) == parent.model_dump(
        exclude={"token", "data_dir", "db_url"}
    )
