"""Token rules: none on loopback; off loopback every changing request needs the token, and a
cookie-only request must come from our own origin. Also /healthz."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings, is_loopback

pytestmark = pytest.mark.timeout(30)

TOKEN = "s3cret-token"
BODY = {"config": {"max_steps": 5}}


@pytest.fixture
def exposed(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, workers=0, host="0.0.0.0", token=TOKEN)
    with TestClient(create_app(settings), base_url="http://dash.example:8000") as client:
        yield client


def test_loopback_needs_no_token(client: TestClient) -> None:
    assert client.post("/api/runs", json=BODY).status_code == 201
    cross = client.post("/api/runs", json=BODY, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403, "a foreign page cannot post to the local dashboard"


def test_reads_are_open_writes_need_the_token(exposed: TestClient) -> None:
    assert exposed.get("/api/runs").status_code == 200
    assert exposed.get("/healthz").json()["status"] == "ok"
    assert exposed.post("/api/runs", json=BODY).status_code == 401
    bad = exposed.post("/api/runs", json=BODY, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert exposed.get("/api/runs").json() == [], "refused requests change nothing"


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Authorization": f"Bearer {TOKEN}"}, {}),
        ({"X-Pandamode-Token": TOKEN}, {}),
        ({}, {"token": TOKEN}),
    ],
)
def test_token_by_header_or_query(
    exposed: TestClient, headers: dict[str, str], params: dict[str, str]
) -> None:
    response = exposed.post("/api/runs", json=BODY, headers=headers, params=params)
    assert response.status_code == 201


def test_cookie_from_token_visit_needs_same_origin(exposed: TestClient) -> None:
    visit = exposed.get("/api/runs", params={"token": TOKEN})
    assert "pandamode_token" in visit.headers["set-cookie"]
    assert "HttpOnly" in visit.headers["set-cookie"]
    assert exposed.cookies.get("pandamode_token") == TOKEN
    same = exposed.post("/api/runs", json=BODY, headers={"Origin": "http://dash.example:8000"})
    assert same.status_code == 201
    foreign = exposed.post("/api/runs", json=BODY, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert exposed.post("/api/runs", json=BODY).status_code == 403, "no Origin, cookie only"
    referer = {"Referer": "http://dash.example:8000/runs/1"}
    assert exposed.post("/api/runs", json=BODY, headers=referer).status_code == 201


def test_generated_token_when_none_given(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, workers=0, host="10.1.2.3"))
    token = app.state.settings.token
    assert token and len(token) >= 20
    with TestClient(app) as client:
        assert client.post("/api/runs", json=BODY).status_code == 401
        ok = client.post("/api/runs", json=BODY, headers={"X-Pandamode-Token": token})
        assert ok.status_code == 201


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.5.0.1", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.com", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_healthz_reports_database(client: TestClient, settings: Settings) -> None:
    body = client.get("/healthz").json()
    dialect = "postgresql" if settings.database_url.startswith("postgresql") else "sqlite"
    assert body == {"status": "ok", "database": dialect}
