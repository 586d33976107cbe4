"""``pandamode train`` refuses what the API refuses at creation: one line on stderr, exit 2,
no traceback and no run stored (issue 9: a batch of 5000 printed a traceback and exited 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.cli import main

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"batch_size": 5000}, "batch_size=5000 is more than the 1437 training rows"),
        ({"hidden": [16384] * 6}, "PANDAMODE_MAX_RUN_MEMORY"),
        ({"dataset": "~nosuchuser/x.csv"}, "not a usable path"),
        ({"dataset": "TEXT"}, "non-numeric feature 'red'"),
        ({"dataset": "NOTES"}, "not a dataset"),
    ],
)
def test_unrunnable_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: dict[str, Any], message: str
) -> None:
    text = tmp_path / "text.csv"
    text.write_text("a,b,label\n" + "1,2,0\n3,4,1\n" * 10 + "red,5,0\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("1,2,0\n")
    if config.get("dataset") == "TEXT":
        config = {**config, "dataset": str(text), "batch_size": 4}
    if config.get("dataset") == "NOTES":
        config = {**config, "dataset": str(notes)}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(config))
    data_dir = tmp_path / "data"
    code = main(["train", str(path), "--data-dir", str(data_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("pandamode: error:") and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (data_dir / "pandamode.db").exists()  # refused before any database is made
