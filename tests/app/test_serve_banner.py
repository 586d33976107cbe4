"""Token hygiene of ``pandamode serve``: the printed link holds the token only when it was
generated, a wildcard bind prints a link the host can open, and the access log redacts it."""

from __future__ import annotations

import io
import logging
import logging.config
from pathlib import Path
from typing import Any

import pytest

from app import cli
from app.banner import banner
from app.log_redact import REDACTED, redact, uvicorn_log_config
from app.settings import Settings

pytestmark = pytest.mark.timeout(30)


def _served(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> dict[str, Any]:
    """Run ``cli.serve`` with uvicorn.run replaced: what it would have been handed."""
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    assert cli.serve(settings) == 0
    return seen


def test_chosen_token_is_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path, workers=0, host="0.0.0.0", token="my-own-secret")
    seen = _served(monkeypatch, settings)
    out = capsys.readouterr().out
    assert "my-own-secret" not in out
    assert "http://127.0.0.1:8000/" in out, "a link usable from the host (docker -p 127.0.0.1)"
    assert "0.0.0.0" not in out
    assert "?token=<your PANDAMODE_TOKEN>" in out
    assert seen["app"].state.settings.token == "my-own-secret"


def test_generated_token_is_printed_once_in_the_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = _served(monkeypatch, Settings(data_dir=tmp_path, workers=0, host="0.0.0.0"))
    token = seen["app"].state.settings.token
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:8000/?token={token}" in out
    assert out.count(token) == 2, "the local link and the one for other machines"


def test_loopback_link_has_no_token(tmp_path: Path) -> None:
    lines = banner(Settings(data_dir=tmp_path, port=8123), generated_token=False)
    assert lines == ["pandamode: serving on http://127.0.0.1:8123/"]
    v6 = banner(Settings(data_dir=tmp_path, host="::1"), generated_token=False)
    assert v6 == ["pandamode: serving on http://[::1]:8000/"]


def test_redact() -> None:
    assert redact("GET /runs/1?a=1&token=abc-DEF_1&b=2") == f"GET /runs/1?a=1&token={REDACTED}&b=2"
    assert redact("/?TOKEN=x") == f"/?TOKEN={REDACTED}"
    assert redact("/?mytoken=x") == "/?mytoken=x", "only the token parameter itself"


def test_uvicorn_access_log_redacts_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log config ``serve`` hands uvicorn, applied; an access record as uvicorn logs it."""
    seen = _served(monkeypatch, Settings(data_dir=tmp_path, workers=0))
    assert seen["log_config"] == uvicorn_log_config()
    stream = io.StringIO()
    config = uvicorn_log_config()
    config["handlers"]["access"]["stream"] = stream
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    logging.config.dictConfig(config)
    try:
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/?token=abc123", "1.1", 303
        )
    finally:
        for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate
    line = stream.getvalue()
    assert "abc123" not in line
    assert f"/?token={REDACTED}" in line and "303" in line


def test_allowed_hosts_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PANDAMODE_ALLOWED_HOSTS", raising=False)
    args = cli._parser().parse_args(["serve", "--allowed-hosts", "dash.example,*.corp.example"])
    assert cli._settings(args).allowed_hosts == "dash.example,*.corp.example"
    assert cli.main(["serve", "--allowed-hosts", "a b"]) == cli.EXIT_BAD_INPUT
