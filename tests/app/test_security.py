"""Who may reach the dashboard: the Host allow-list (DNS rebinding), the token for writes and,
off loopback, for reads, the cookie/origin rule, the 303 that drops ``?token=``, /healthz."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.security import url_without_token
from app.settings import Settings, is_loopback

pytestmark = pytest.mark.timeout(30)

TOKEN = "s3cret-token"
BODY = {"config": {"max_steps": 5}}
EVIL = {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}


def _client(tmp_path: Path, base_url: str, **settings: Any) -> TestClient:
    values: dict[str, Any] = {"data_dir": tmp_path, "workers": 0}
    values.update(settings)
    return TestClient(create_app(Settings(**values)), base_url=base_url)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[TestClient]:
    """The default: bound to loopback, no PANDAMODE_ALLOWED_HOSTS, reached as 127.0.0.1."""
    with _client(tmp_path, "http://127.0.0.1:8000") as client:
        yield client


@pytest.fixture
def exposed(tmp_path: Path) -> Iterator[TestClient]:
    """Bound to every address with a chosen token, reached by a name the setting allows."""
    with _client(
        tmp_path,
        "http://dash.example:8000",
        host="0.0.0.0",
        token=TOKEN,
        allowed_hosts="dash.example",
    ) as client:
        yield client


def _runs(client: TestClient) -> list[dict[str, Any]]:
    return client.get("/api/runs", headers={"X-Pandamode-Token": TOKEN}).json()


# --- DNS rebinding: the Host allow-list ---------------------------------------------------------


def test_rebinding_page_cannot_write_or_read(local: TestClient) -> None:
    refused = local.post("/api/runs", json=BODY, headers=EVIL)
    assert refused.status_code == 403
    assert "host not allowed" in refused.json()["detail"]
    assert "PANDAMODE_ALLOWED_HOSTS" in refused.json()["detail"]
    assert local.get("/api/runs", headers={"Host": "evil.example"}).status_code == 403
    assert local.get("/", headers={"Host": "evil.example:8000"}).status_code == 403
    assert local.get("/healthz", headers={"Host": "evil.example"}).status_code == 403
    assert local.get("/api/runs").json() == [], "the refused POST created nothing"


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:8000", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:9", "[::1]:8000",
             "[::1]", "127.0.0.2:8000", "localhost."],
)  # fmt: skip
def test_loopback_names_any_port(local: TestClient, host: str) -> None:
    assert local.get("/api/runs", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["testserver", "evil.example", "localhost.evil.example", "127.0.0.1.evil.example",
             "[::1", "localhost:80:80", "localhost:x", "", "10.1.2.3:8000"],
)  # fmt: skip
def test_other_hosts_refused_on_loopback(local: TestClient, host: str) -> None:
    assert local.get("/api/runs", headers={"Host": host}).status_code == 403


def test_allowed_hosts_setting_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PANDAMODE_ALLOWED_HOSTS", "dash.example, *.corp.example,box:9000")
    with _client(tmp_path, "http://127.0.0.1") as client:
        ok = ["dash.example:8000", "a.corp.example", "x.y.corp.example:1", "box:9000"]
        for host in ok:
            assert client.get("/api/runs", headers={"Host": host}).status_code == 200, host
        for host in ["corp.example", "evil.example", "box:9001", "box"]:
            assert client.get("/api/runs", headers={"Host": host}).status_code == 403, host


def test_star_allows_any_host_but_not_any_origin(tmp_path: Path) -> None:
    with _client(tmp_path, "http://anything.example", allowed_hosts="*") as client:
        assert client.get("/api/runs").status_code == 200
        assert client.post("/api/runs", json=BODY).status_code == 201
        foreign = client.post("/api/runs", json=BODY, headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403, "'*' opens Host, never the origin rule"


def test_bind_address_is_allowed(tmp_path: Path) -> None:
    with _client(tmp_path, "http://box.lan:8000", host="box.lan", token=TOKEN) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz", headers={"Host": "other.lan:8000"}).status_code == 403


def test_wildcard_bind_allows_ip_literals_and_the_host_name(tmp_path: Path) -> None:
    import socket

    with _client(tmp_path, "http://10.1.2.3:8000", host="0.0.0.0", token=TOKEN) as client:
        for host in ["10.1.2.3:8000", "[fd00::5]:8000", f"{socket.gethostname()}:8000"]:
            assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
        assert client.get("/healthz", headers={"Host": "evil.example:8000"}).status_code == 403


@pytest.mark.parametrize("value", ["a b", "*evil", "x.*.example", "host:99999", "a/b"])
def test_bad_allowed_hosts_setting_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match="PANDAMODE_ALLOWED_HOSTS"):
        Settings(data_dir=tmp_path, allowed_hosts=value)


def test_origin_is_compared_with_the_allowed_hosts(tmp_path: Path) -> None:
    """Behind a reverse proxy serving https://dash.example, Host is 127.0.0.1:8000: the page's
    Origin is accepted because the setting names it, a foreign one is still refused."""
    with _client(tmp_path, "http://127.0.0.1:8000", allowed_hosts="dash.example") as client:
        proxied = client.post("/api/runs", json=BODY, headers={"Origin": "https://dash.example"})
        assert proxied.status_code == 201
        same = client.post("/api/runs", json=BODY, headers={"Origin": "http://127.0.0.1:8000"})
        assert same.status_code == 201
        for origin in ["http://evil.example", "http://127.0.0.1:3000", "null"]:
            foreign = client.post("/api/runs", json=BODY, headers={"Origin": origin})
            assert foreign.status_code == 403, origin


# --- the token: writes, and reads off loopback --------------------------------------------------


def test_loopback_needs_no_token(local: TestClient) -> None:
    assert local.post("/api/runs", json=BODY).status_code == 201
    assert local.get("/api/runs").status_code == 200
    cross = local.post("/api/runs", json=BODY, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403, "a foreign page cannot post to the local dashboard"


@pytest.mark.parametrize("path", ["/api/runs", "/", "/api/runs/1/stream", "/openapi.json", "/docs"])
def test_reads_off_loopback_need_the_token(exposed: TestClient, path: str) -> None:
    response = exposed.get(path)
    assert response.status_code == 401
    assert response.json() == {"detail": "token required"}


def test_healthz_stays_open_off_loopback(exposed: TestClient) -> None:
    assert exposed.get("/healthz").json()["status"] == "ok"


def test_writes_need_the_token_and_refusals_change_nothing(exposed: TestClient) -> None:
    assert exposed.post("/api/runs", json=BODY).status_code == 401
    bad = exposed.post("/api/runs", json=BODY, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json() == {"detail": "invalid token"}
    assert exposed.get("/api/runs", params={"token": "nope"}).status_code == 401
    assert _runs(exposed) == []


def test_open_reads_setting(tmp_path: Path) -> None:
    with _client(
        tmp_path, "http://10.0.0.7:8000", host="0.0.0.0", token=TOKEN, open_reads=True
    ) as client:
        assert client.get("/api/runs").status_code == 200
        assert client.get("/").status_code == 200
        assert client.post("/api/runs", json=BODY).status_code == 401, "writes stay guarded"


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
    assert exposed.get("/api/runs", headers=headers, params=params).status_code == 200


def test_cookie_from_token_visit_needs_same_origin_to_write(exposed: TestClient) -> None:
    visit = exposed.get("/api/runs", params={"token": TOKEN})
    assert visit.status_code == 200, "a script's GET with ?token= is answered, not redirected"
    assert "pandamode_token" in visit.headers["set-cookie"]
    assert "HttpOnly" in visit.headers["set-cookie"]
    assert "SameSite=Strict" in visit.headers["set-cookie"]
    assert exposed.cookies.get("pandamode_token") == TOKEN
    assert exposed.get("/api/runs").status_code == 200, "the cookie alone opens reads"
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
    with TestClient(app, base_url="http://10.1.2.3:8000") as client:
        assert client.post("/api/runs", json=BODY).status_code == 401
        ok = client.post("/api/runs", json=BODY, headers={"X-Pandamode-Token": token})
        assert ok.status_code == 201


# --- token hygiene: the browser visit is redirected without ?token= -----------------------------

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def test_browser_visit_with_token_sets_cookie_and_drops_it_from_the_url(
    exposed: TestClient,
) -> None:
    visit = exposed.get(
        "/runs/7", params={"a": "1", "token": TOKEN, "b": "x y"}, headers=HTML,
        follow_redirects=False,
    )  # fmt: skip
    assert visit.status_code == 303
    assert visit.headers["location"] == "/runs/7?a=1&b=x+y"
    assert f"pandamode_token={TOKEN}" in visit.headers["set-cookie"]
    home = exposed.get("/", params={"token": TOKEN}, headers=HTML)
    assert home.status_code == 200, "the redirect is followed with the cookie"
    assert "token" not in str(home.url)


def test_redirect_stays_on_the_site() -> None:
    """A request line ``GET //evil.example/x?token=...`` must not become ``Location:
    //evil.example/x``, which a browser reads as another site."""
    scope = {"path": "//evil.example/x", "raw_path": b"//evil.example/x",
             "query_string": b"token=abc&b=1"}  # fmt: skip
    assert url_without_token(scope) == "/evil.example/x?b=1"


def test_loopback_ignores_token_parameters(local: TestClient) -> None:
    visit = local.get("/", params={"token": "x"}, headers=HTML, follow_redirects=False)
    assert visit.status_code == 200 and "set-cookie" not in visit.headers


# --- small pieces -------------------------------------------------------------------------------


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
