"""/compare: runs side by side; bad ids are a 422 page, a missing run a 404 page."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.web.compare import BadIds, parse_ids


def make(client: TestClient, tiny: dict[str, Any], name: str, **config: Any) -> int:
    body = {"name": name, "config": {**tiny, **config}}
    return int(client.post("/api/runs", json=body).json()["id"])


def test_parse_ids_accepts_commas_and_repeats() -> None:
    assert parse_ids(["3,5", "7", "5"]) == [3, 5, 7]
    assert parse_ids([" 2 , 1 "]) == [2, 1]
    for bad in (["3"], [], ["3,x"], ["3,-1"], ["3,0"], [",".join(map(str, range(1, 10)))]):
        with pytest.raises(BadIds, match="ids"):
            parse_ids(bad)


def test_compare_shows_runs_and_the_settings_that_differ(
    client: TestClient, tiny: dict[str, Any]
) -> None:
    a = make(client, tiny, "slow", lr=0.001)
    b = make(client, tiny, "fast", lr=0.03)
    response = client.get(f"/compare?ids={a},{b}")
    assert response.status_code == 200
    page = response.text
    data = json.loads(re.search(r'id="compare-data"[^>]*>(.*?)</script>', page).group(1))
    assert [r["id"] for r in data["runs"]] == [a, b]
    assert [r["label"] for r in data["runs"]] == [f"#{a} slow", f"#{b} fast"]
    assert len({r["colour"] for r in data["runs"]}) == 2
    # Which columns are charted comes from Python (app/series.py names), as page data.
    assert [c["column"] for c in data["charts"]] == ["val_loss", "val_acc"]
    for chart in data["charts"]:
        assert f'id="{chart["id"]}" class="chart"' in page
    differ = page.split('id="settings-differ"')[1].split("</tbody>")[0]
    assert re.findall(r'data-field="(\w+)"', differ) == ["lr"]
    assert "1 setting differs" in differ
    assert "0.001" in differ and "0.03" in differ
    assert f'href="/runs/{a}"' in page and f'href="/runs/{b}"' in page
    assert "settings in common" in page
    # The checkbox form sends ids=1&ids=2: the same page.
    assert client.get(f"/compare?ids={a}&ids={b}").text == page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "tick at least two runs"),
        ("?ids=1", "tick at least two runs"),
        ("?ids=1,abc", "&#39;abc&#39; is not a run id"),
        ("?ids=1,2,3,4,5,6,7,8,9", "at most 8 runs"),
    ],
)
def test_bad_ids_are_422_with_a_clear_message(client: TestClient, query: str, message: str) -> None:
    response = client.get("/compare" + query)
    assert response.status_code == 422
    assert message in response.text and 'id="compare-error"' in response.text
    assert "compare.js" not in response.text


def test_missing_run_is_404(client: TestClient, tiny: dict[str, Any]) -> None:
    a = make(client, tiny, "here")
    response = client.get(f"/compare?ids={a},{a + 41}")
    assert response.status_code == 404
    assert f"run {a + 41} not found" in response.text


def test_a_long_name_is_cut_in_the_legend_only(client: TestClient, tiny: dict[str, Any]) -> None:
    long = "a very long run name " * 6
    a = make(client, tiny, long)
    b = make(client, tiny, "short")
    page = client.get(f"/compare?ids={a},{b}").text
    runs = json.loads(re.search(r'id="compare-data"[^>]*>(.*?)</script>', page).group(1))["runs"]
    assert runs[0]["label"].endswith("\u2026") and len(runs[0]["label"]) == 40
    assert runs[1]["label"] == f"#{b} short"
    assert f'title="{long}"' in page, "the table keeps the full name"
