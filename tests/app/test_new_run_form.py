"""POST /runs: the new-run form creates a run as POST /api/runs does, or names the bad field."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

HTMX = {"HX-Request": "true"}


def form(**fields: str) -> dict[str, str]:
    """What the browser posts for the form as first shown, with some fields changed."""
    base = {
        "name": "", "dataset": "digits", "hidden": "128, 128", "optimizer": "adam",
        "schedule": "cosine", "lr": "0.01", "batch_size": "64", "epochs": "100",
        "max_steps": "", "seed": "0", "pace": "50", "batchnorm": "on", "advanced": "",
    }  # fmt: skip
    base.update(fields)
    return base


def runs(client: TestClient) -> list[dict[str, Any]]:
    return client.get("/api/runs").json()


def test_form_creates_the_run_and_redirects_to_it(client: TestClient) -> None:
    advanced = json.dumps({"eval_every": 7, "schedule": "constant"})
    sent = form(
        name="from the form", hidden="64 32", lr="1.5e-4", max_steps="500", advanced=advanced
    )
    response = client.post("/runs", data=sent, headers=HTMX)
    assert response.status_code == 201, response.text
    [run] = runs(client)
    assert response.headers["HX-Redirect"] == f"/runs/{run['id']}"
    assert run["name"] == "from the form" and run["status"] == "queued"
    config = run["config"]
    assert config["hidden"] == [64, 32] and config["lr"] == 1.5e-4 and config["max_steps"] == 500
    assert config["eval_every"] == 7
    assert config["schedule"] == "constant", "the advanced JSON wins over the fields"
    events = client.get(f"/api/runs/{run['id']}/events").json()
    assert [(e["type"], e["steps_per_second"]) for e in events] == [("set_pace", 50)]


def test_same_run_as_the_json_api(client: TestClient) -> None:
    """The form and POST /api/runs store the same config for the same choices."""
    client.post("/runs", data=form(name="a", pace=""), headers=HTMX)
    client.post("/api/runs", json={"name": "b", "config": {}})
    b, a = runs(client)
    assert a["config"] == b["config"]
    assert client.get(f"/api/runs/{a['id']}/events").json() == [], "full speed: no set_pace"


def test_unticked_batchnorm_and_empty_hidden(client: TestClient) -> None:
    data = form(hidden="", advanced="")
    del data["batchnorm"]
    assert client.post("/runs", data=data, headers=HTMX).status_code == 201
    config = runs(client)[0]["config"]
    assert config["batchnorm"] is False and config["hidden"] == []


def test_bad_field_answers_the_form_with_the_error_beside_it(client: TestClient) -> None:
    response = client.post("/runs", data=form(lr="-1", hidden="64, x"), headers=HTMX)
    assert response.status_code == 422
    page = response.text
    assert page.lstrip().startswith('<form id="new-run"'), "the fragment alone, for htmx"
    assert '<li data-field="config.lr">lr: Input should be greater than 0</li>' in page
    assert 'name="lr" value="-1" step="any" class="invalid"' in page
    assert 'data-field="config.hidden.1"' in page
    assert 'name="hidden" value="64, x"' in page, "what the user typed comes back"
    assert runs(client) == [], "nothing is created"


def test_errors_from_the_advanced_json_point_at_it(client: TestClient) -> None:
    bad = json.dumps({"lr": 0, "no_such_field": 1})
    page = client.post("/runs", data=form(advanced=bad), headers=HTMX).text
    assert 'data-field="config.lr"' in page and 'data-field="config.no_such_field"' in page
    assert 'name="lr" value="0.01" step="any">' in page, "the lr field itself was fine"
    assert 'class="invalid" aria-invalid="true" aria-describedby="error-advanced"' in page
    for text, reason in (("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object")):
        response = client.post("/runs", data=form(advanced=text), headers=HTMX)
        assert response.status_code == 422 and reason in response.text
    assert runs(client) == []


def test_a_dataset_path_outside_the_data_dir_is_refused(client: TestClient) -> None:
    response = client.post("/runs", data=form(dataset="../../etc/passwd"), headers=HTMX)
    assert response.status_code == 422
    assert "dataset path must be inside the data directory" in response.text
    assert runs(client) == []


def test_whole_config_error_is_listed(client: TestClient) -> None:
    response = client.post("/runs", data=form(batch_size="1"), headers=HTMX)
    assert response.status_code == 422
    assert "batch_size must be &gt;= 2 when batchnorm is on" in response.text
    assert runs(client) == []


def test_without_javascript_a_plain_post_redirects_or_shows_the_page(client: TestClient) -> None:
    response = client.post("/runs", data=form(name="plain"), follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/runs/{runs(client)[0]['id']}"
    response = client.post("/runs", data=form(epochs="0"), follow_redirects=False)
    assert response.status_code == 422
    assert "<h1>Runs</h1>" in response.text and 'data-field="config.epochs"' in response.text
    assert len(runs(client)) == 1


def test_form_options_and_defaults_come_from_runconfig(client: TestClient) -> None:
    page = client.get("/").text
    for optimizer in ("sgd", "momentum", "rmsprop", "adam"):
        assert f'<option value="{optimizer}"' in page
    assert '<option value="adam" selected>adam</option>' in page
    assert '<option value="cosine" selected>cosine</option>' in page
    assert 'name="hidden" value="128, 128"' in page
    assert 'hx-post="/runs"' in page and "new-run.js" not in page
    assert "hx-vals" not in page
