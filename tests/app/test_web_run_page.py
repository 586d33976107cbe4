"""The run page's server side (app/web/run_page.py, fragments.py, present.py): what it says about
a run, what its form posts do, and what the stream's fragments hook renders."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import crud
from app.db import Database
from app.web import present
from app.web.fragments import Fragments
from engine import RunConfig, Trainer, state_to_bytes


def state_blob() -> bytes:
    """A real Trainer state of make_run's config (a fork reads its checkpoint)."""
    return state_to_bytes(Trainer(RunConfig(hidden=[8], max_steps=1000)).state_dict())


def make_run(client: TestClient, **config: Any) -> int:
    body = {"name": "nursed", "config": {"hidden": [8], "max_steps": 1000, **config}}
    response = client.post("/api/runs", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0046, "0.0046"),
        (1.5e-4, "1.5e-4"),
        (1e-8, "1e-8"),
        (0.003, "0.003"),
        (123456.0, "1.23e5"),
        (1500.0, "1500"),
        (999.5, "1000"),
        (99999.6, "1e5"),
        (0.00099996, "0.001"),
        (0.0, "0"),
        (None, "\u2013"),
        ("NaN", "NaN"),
        (float("inf"), "Infinity"),
    ],
)
def test_numbers_read_down_to_1e8(value: Any, text: str) -> None:
    assert present.number(value) == text


def test_lr_says_how_it_is_made() -> None:
    run = {"lr": 0.0046, "lr_base": 0.01, "lr_factor": 0.46, "config": {"schedule": "cosine"}}
    assert present.lr_explained(run) == "0.0046 = 0.01 \u00d7 cosine 0.46"
    constant = {
        "lr": 1.5e-4,
        "lr_base": 1.5e-4,
        "lr_factor": 1.0,
        "config": {"schedule": "constant"},
    }
    assert present.lr_explained(constant) == "1.5e-4 (constant)"
    unknown = {"lr": 0.01, "lr_base": None, "lr_factor": None, "config": {"schedule": "cosine"}}
    assert present.lr_explained(unknown) == "0.01"


def test_chance_level_only_where_the_classes_are_known() -> None:
    assert present.classes({"dataset": "digits"}) == 10
    assert present.classes({"dataset": "moons", "n_classes": 5}) == 2
    assert present.classes({"dataset": "spirals", "n_classes": 4}) == 4
    assert present.classes({"dataset": "/data/mine.csv"}) is None


def test_settings_list_every_field_and_flag_the_changed_ones() -> None:
    config = RunConfig(lr=0.003, hidden=[64]).model_dump(mode="json")
    rows = {r["name"]: r for r in present.settings_rows(config)}
    assert list(rows) == list(RunConfig.model_fields)
    assert {name for name, r in rows.items() if r["changed"]} == {"lr", "hidden"}
    assert rows["hidden"]["value"] == "[64]"
    assert rows["batchnorm"]["value"] == "true"


def test_page_renders_settings_data_and_no_js_hx_vals(client: TestClient) -> None:
    run_id = make_run(client, lr=1.5e-4, schedule="constant", dataset="moons")
    html = client.get(f"/runs/{run_id}").text
    assert "js:" not in html  # no hx-vals='js:...' (a CSP without unsafe-eval is coming)
    data = json.loads(re.search(r'id="page-data" type="application/json">(.*?)</script>', html)[1])
    assert data["columns"] == [
        "step",
        "time",
        "lr",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "train_eval_loss",
        "train_eval_acc",
    ]
    assert data["active"] == ["queued", "running", "paused"]
    assert data["classes"] == 2
    assert 'id="header-lr">1.5e-4 (constant)<' in html
    assert re.search(r'class="changed"[^>]*><dt>lr</dt><dd>1.5e-4</dd>', html)
    assert 'value="0.00015"' in html  # the lr field shows the effective rate


def test_apply_on_an_unchanged_field_sends_nothing(client: TestClient) -> None:
    run_id = make_run(client)
    body = {"type": "set_lr", "lr": "0.01", "shown": "0.01"}
    response = client.post(f"/runs/{run_id}/commands", data=body)
    assert response.status_code == 200
    assert "nothing sent" in response.text
    assert client.get(f"/api/runs/{run_id}/events").json() == []


def test_set_lr_answers_its_message_and_a_fresh_field(client: TestClient) -> None:
    run_id = make_run(client)
    body = {"type": "set_lr", "lr": "0.003", "shown": "0.01"}
    response = client.post(f"/runs/{run_id}/commands", data=body)
    assert response.status_code == 202
    event = client.get(f"/api/runs/{run_id}/events").json()[-1]
    assert (event["type"], event["lr"], event["step"]) == ("set_lr", 0.003, None)
    assert f'id="cmd-{event["id"]}"' in response.text
    assert "set_lr 0.003 sent" in response.text
    assert 'hx-swap-oob="true"' in response.text and 'name="shown" value="0.003"' in response.text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"type": "set_lr", "lr": "-1", "shown": "0.01"}, "lr: Input should be greater than 0"),
        ({"type": "step", "n": "0"}, "n: Input should be greater than or equal to 1"),
        ({"type": "fly"}, "type"),
    ],
)
def test_a_bad_command_is_422_naming_the_field(
    client: TestClient, body: dict[str, str], reason: str
) -> None:
    run_id = make_run(client)
    response = client.post(f"/runs/{run_id}/commands", data=body)
    assert response.status_code == 422
    assert reason in response.text and "HTTP 422" in response.text
    assert client.get(f"/api/runs/{run_id}/events").json() == []


def test_pace_full_speed_from_the_form(client: TestClient) -> None:
    run_id = make_run(client)
    response = client.post(
        f"/runs/{run_id}/commands", data={"type": "set_pace", "steps_per_second": ""}
    )
    assert response.status_code == 202
    assert client.get(f"/api/runs/{run_id}/events").json()[-1]["steps_per_second"] is None


def test_fork_form(client: TestClient, db: Database) -> None:
    run_id = make_run(client)
    refused = client.post(f"/runs/{run_id}/fork", data={"step": "0", "lr": "-1"})
    assert refused.status_code == 422 and "overrides.lr" in refused.text
    none_yet = client.post(f"/runs/{run_id}/fork", data={"step": "0"})
    assert none_yet.status_code == 409  # no worker has checkpointed step 0 yet
    with db.write() as s:
        crud.save_checkpoint(s, run_id, 0, state_blob())
    bad_more = client.post(f"/runs/{run_id}/fork", data={"step": "0", "more_steps": "many"})
    assert bad_more.status_code == 422 and "more_steps" in bad_more.text
    made = client.post(
        f"/runs/{run_id}/fork", data={"step": "0", "more_steps": "500", "pause": "1"}
    )
    assert made.status_code == 200, made.text
    child = client.get("/api/runs").json()[0]
    assert made.headers["HX-Redirect"] == f"/runs/{child['id']}"
    assert (child["parent_id"], child["config"]["max_steps"]) == (run_id, 500)
    events = client.get(f"/api/runs/{run_id}/events").json()
    assert [e["type"] for e in events] == ["pause"]  # the parent was queued: paused for the fork


def test_fragments_hook_renders_each_part_once(client: TestClient, db: Database) -> None:
    run_id = make_run(client)
    client.post(f"/runs/{run_id}/commands", data={"type": "pause"})
    hook = Fragments(db, client.app.state.templates.env)
    parts = dict(hook(run_id, {"status", "event", "metrics"}))
    assert set(parts) == {"fragment-status", "fragment-event"}
    for element in ("run-header", "run-status", "lr-fields", "pause", "resume", "stop"):
        assert f'id="{element}"' in parts["fragment-status"]
    assert re.search(r'<button id="pause"[^>]* disabled>', parts["fragment-status"]) is None
    for element in ("event-log", "fork-step", "fork", "cmd-1"):
        assert f'id="{element}"' in parts["fragment-event"]
    assert hook(run_id, {"metrics"}) == []
    assert hook(9999, {"status"}) == []
    whole = client.get(f"/runs/{run_id}/_fragments").text
    assert 'id="run-status"' in whole and 'id="event-log"' in whole


def test_checkpoints_are_labelled_best_and_before_lr(client: TestClient, db: Database) -> None:
    run_id = make_run(client, eval_every=10)
    rows = [
        {"step": s, "time": float(s), "epoch": 0.0, "lr": 0.01, "train_loss": 1.0,
         "train_acc": 0.5, "val_loss": {10: 0.9, 20: 0.4, 30: 0.7}.get(s),
         "val_acc": 0.5 if s % 10 == 0 else None}
        for s in range(1, 31)
    ]  # fmt: skip
    with db.write() as s:
        crud.append_metrics(s, run_id, rows)
        for step in (0, 20, 30):
            crud.save_checkpoint(s, run_id, step, b"state")
    with db.read() as s:
        options = present.checkpoint_options(s, crud.serialize_run(crud.get_run(s, run_id)))
    assert [o["step"] for o in options] == [30, 20, 0]
    assert options[1]["text"] == "step 20 \u00b7 val loss 0.4, acc 0.5 \u00b7 best"
    assert options[2]["text"] == "step 0"
