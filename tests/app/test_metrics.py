"""Metrics: columnar endpoint, ``after``, CSV, and min-max downsampling that keeps extremes."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import crud
from app.db import Database
from app.series import COLUMNS, restore_nan, to_columns

pytestmark = pytest.mark.timeout(30)


def _rows(n: int, *, spike: int | None = None, nan_at: int | None = None) -> list[dict]:
    rows = []
    for step in range(1, n + 1):
        loss = 1.0 / step
        if step == spike:
            loss = 50.0
        if step == nan_at:
            loss = math.nan
        evaluated = step % 100 == 0
        rows.append({
            "step": step, "time": 1000.0 + step, "epoch": step / 10, "lr": 0.1,
            "train_loss": loss, "train_acc": 0.5,
            "val_loss": loss * 2 if evaluated else None, "val_acc": 0.4 if evaluated else None,
        })  # fmt: skip
    return rows


@pytest.fixture
def run_id(db: Database) -> int:
    with db.write() as s:
        rid = crud.create_run(s, config={"lr": 0.1}).id
        crud.append_metrics(s, rid, _rows(1000, spike=777, nan_at=1000))
    return rid


def test_columnar_metrics_and_after(client: TestClient, run_id: int) -> None:
    body = client.get(f"/api/runs/{run_id}/metrics").json()
    assert list(body) == [*COLUMNS, "exact"]
    assert body["exact"] is True
    assert body["step"] == list(range(1, 1001))
    assert body["train_loss"][776] == 50.0
    assert body["train_loss"][999] == "NaN"
    assert body["val_loss"][98] is None and body["val_loss"][99] == pytest.approx(0.02)
    after = client.get(f"/api/runs/{run_id}/metrics", params={"after": 990}).json()
    assert after["step"] == list(range(991, 1001))
    assert client.get(f"/api/runs/{run_id}/metrics", params={"after": -1}).status_code == 422


def test_downsampled_metrics_keep_extremes(client: TestClient, run_id: int) -> None:
    body = client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 50}).json()
    steps = body["step"]
    assert len(steps) <= 50
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] == 1000
    assert 777 in steps, "the spike survives"
    assert "NaN" in body["train_loss"], "the divergence survives"
    assert client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 2}).status_code == 422


def test_csv_has_every_row(client: TestClient, run_id: int) -> None:
    response = client.get(f"/api/runs/{run_id}/metrics.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(response.text)))
    assert table[0] == [
        "step", "time", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
        "train_eval_loss", "train_eval_acc",
    ]  # fmt: skip
    assert len(table) == 1001
    assert table[100][0] == "100" and table[100][5] != "" and table[99][5] == ""
    assert table[1000][3] == "NaN"


def test_append_is_idempotent(db: Database, run_id: int) -> None:
    with db.write() as s:
        crud.append_metrics(s, run_id, [{**r, "train_loss": 9.0} for r in _rows(5)])
    with db.read() as s:
        assert crud.count_metrics(s, run_id) == 1000
        assert crud.metric_rows(s, run_id, after=0, limit=1)[0][3] == 1.0
        assert crud.get_run(s, run_id).step == 1000


def test_non_finite_encoding() -> None:
    cols = to_columns(
        [
            (1, 0.0, 0.1, math.inf, 0.5, -math.inf, 0.5, math.inf, 0.5),
            (2, 0.0, 0.1, None, 0.5, None, None, None, None),
        ]
    )
    assert cols["train_loss"] == ["Infinity", None]
    assert cols["val_loss"] == ["-Infinity", None]
    assert cols["train_eval_loss"] == ["Infinity", None]
    restored = restore_nan((2, 0.0, 0.1, None, 0.5, None, 0.3, None, 0.4))
    assert math.isnan(restored[3]) and math.isnan(restored[5]) and math.isnan(restored[7])
    kept = restore_nan((3, 0.0, 0.1, 1.0, 0.5, None, None, None, None))
    assert kept[5] is None and kept[7] is None, "no evaluation stays None"


def test_before_bounds_the_range_and_must_follow_after(client: TestClient, run_id: int) -> None:
    url = f"/api/runs/{run_id}/metrics"
    body = client.get(url, params={"after": 100, "before": 201}).json()
    assert body["step"] == list(range(101, 201)) and body["exact"] is True
    zoomed = client.get(url, params={"after": 100, "before": 201, "max_points": 500}).json()
    assert zoomed == body, "a range that fits comes back exact"
    overview = client.get(url, params={"before": 901, "max_points": 50}).json()
    assert overview["exact"] is False and len(overview["step"]) <= 50
    assert overview["step"][0] == 1 and overview["step"][-1] == 900 and 777 in overview["step"]
    for params in ({"after": 10, "before": 10}, {"after": 10, "before": 5}, {"before": 0}):
        response = client.get(url, params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"][0]["loc"] == ["query", "before"]


def test_csv_reads_in_chunks(
    client: TestClient, run_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk of the export is its own short read transaction (a slow download never holds
    one open): with 300-row chunks the 1000 rows take four reads, and all arrive in order."""
    from app.api import metrics as metrics_api

    reads: list[int] = []
    real = crud.metric_rows

    def counting(*args: Any, **kwargs: Any) -> list[Any]:
        rows = real(*args, **kwargs)
        reads.append(len(rows))
        return rows

    monkeypatch.setattr(metrics_api, "CSV_CHUNK", 300)
    monkeypatch.setattr(metrics_api.crud, "metric_rows", counting)
    table = list(csv.reader(io.StringIO(client.get(f"/api/runs/{run_id}/metrics.csv").text)))
    assert [int(r[0]) for r in table[1:]] == list(range(1, 1001))
    assert reads == [300, 300, 300, 100]
