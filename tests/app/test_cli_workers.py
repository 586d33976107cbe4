"""``pandamode serve`` starts one worker per core unless told (issue 10)."""

from __future__ import annotations

import pytest

from app import cli


def _workers(argv: list[str]) -> int:
    return cli._settings(cli._parser().parse_args(argv)).workers


def test_serve_defaults_to_one_worker_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PANDAMODE_WORKERS", raising=False)
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 6)
    assert _workers(["serve"]) == 6
    monkeypatch.setattr(cli.os, "cpu_count", lambda: None)
    assert _workers(["serve"]) == 1
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 256)
    assert _workers(["serve"]) == 64, "within Settings' bound"


def test_the_flag_and_the_variable_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 6)
    monkeypatch.setenv("PANDAMODE_WORKERS", "3")
    assert _workers(["serve"]) == 3
    assert _workers(["serve", "--workers", "0"]) == 0
    monkeypatch.delenv("PANDAMODE_WORKERS")
    assert _workers(["serve", "--workers", "2"]) == 2
    assert _workers(["worker"]) == 1, "a worker process is one worker"
