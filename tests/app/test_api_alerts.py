"""Alerts over HTTP: listing the open ones, acting (the ordinary command or fork) and dismissing,
the refusals (404, 409, 422), the autopilot command, and the run page's notices and toggles."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from app import crud
from app.db import Database
from app.web.fragments import Fragments
from engine import RunConfig, Trainer, state_to_bytes

CONFIG = {"hidden": [8], "max_steps": 1000}


def make_run(client: TestClient, **body: Any) -> int:
    response = client.post("/api/runs", json={"config": CONFIG, **body})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def add_alert(
    db: Database, rid: int, action: dict[str, Any], step: int = 40, kind: str = "divergence"
) -> int:
    """An alert as a worker records it (app/worker/alerts.py)."""
    payload = {
        "kind": kind,
        "detector": "loss_spike",
        "message": "divergence coming: the loss doubled",
        "action": action,
    }
    with db.write() as s:
        return crud.record_worker_event(s, rid, "alert", step, payload).id


SET_LR = {"type": "set_lr", "lr": 0.003, "label": "divide lr by 3 (to 0.003)"}


def test_open_alerts_are_listed_newest_first(client: TestClient, db: Database) -> None:
    rid = make_run(client)
    first = add_alert(db, rid, SET_LR, 40)
    second = add_alert(db, rid, SET_LR, 60, kind="update_ratio")
    listed = client.get(f"/api/runs/{rid}/alerts").json()
    assert [a["id"] for a in listed] == [second, first]
    assert listed[1]["kind"] == "divergence" and listed[1]["action"]["lr"] == 0.003
    assert client.get("/api/runs/999/alerts").status_code == 404


def test_a_newer_alert_of_a_kind_supersedes_the_older_one(client: TestClient, db: Database) -> None:
    """A run left broken repeats its advice: only the newest alert of each kind is open (the
    older one's numbers and action are stale), also once that newest one is dismissed."""
    rid = make_run(client)
    older = add_alert(db, rid, SET_LR, 40)
    other = add_alert(db, rid, SET_LR, 50, kind="plateau")
    newer = add_alert(db, rid, SET_LR, 60)
    listed = client.get(f"/api/runs/{rid}/alerts").json()
    assert [a["id"] for a in listed] == [newer, other] and older not in [a["id"] for a in listed]
    assert client.post(f"/api/runs/{rid}/alerts/{newer}/dismiss").status_code == 200
    assert [a["id"] for a in client.get(f"/api/runs/{rid}/alerts").json()] == [other]


def test_acting_queues_the_ordinary_set_lr_and_closes_the_alert(
    client: TestClient, db: Database
) -> None:
    rid = make_run(client)
    alert = add_alert(db, rid, SET_LR)
    response = client.post(f"/api/runs/{rid}/alerts/{alert}/act")
    assert response.status_code == 202, response.text
    command = response.json()["command"]
    assert command["type"] == "set_lr" and command["lr"] == 0.003
    assert command["source"] == "user" and command["state"] == "pending"
    events = client.get(f"/api/runs/{rid}/events").json()
    assert any(e["id"] == command["id"] for e in events), "an ordinary command in the events"
    handled = [e for e in events if e["type"] == "alert_handled"]
    assert handled[0]["alert_id"] == alert and handled[0]["how"] == "acted"
    assert client.get(f"/api/runs/{rid}/alerts").json() == []
    again = client.post(f"/api/runs/{rid}/alerts/{alert}/act")
    assert again.status_code == 409 and "already" in again.json()["detail"]
    assert client.post(f"/api/runs/{rid}/alerts/{alert}/dismiss").status_code == 409


def test_unknown_alerts_are_404(client: TestClient, db: Database) -> None:
    rid, other = make_run(client, pace=5), make_run(client)
    alert = add_alert(db, other, SET_LR)
    assert client.post(f"/api/runs/{rid}/alerts/{alert}/act").status_code == 404
    assert client.post(f"/api/runs/{rid}/alerts/12345/dismiss").status_code == 404
    pace = client.get(f"/api/runs/{rid}/events").json()[0]["id"]  # an event, not an alert
    assert client.post(f"/api/runs/{rid}/alerts/{pace}/act").status_code == 404
    assert client.post(f"/api/runs/999/alerts/{alert}/act").status_code == 404


def test_a_refused_action_leaves_the_alert_open(client: TestClient, db: Database) -> None:
    """A rate above the API's limit is a 422 naming the field; nothing is queued."""
    rid = make_run(client)
    alert = add_alert(db, rid, {"type": "set_lr", "lr": 300.0, "label": "multiply lr by 3"})
    before = len(client.get(f"/api/runs/{rid}/events").json())
    response = client.post(f"/api/runs/{rid}/alerts/{alert}/act")
    assert response.status_code == 422 and "lr" in response.text
    events = client.get(f"/api/runs/{rid}/events").json()
    assert not [e for e in events if e["type"] == "set_lr"]
    assert len(events) == before + 1 and events[-1]["state"] == "error"  # the failed mark
    assert [a["id"] for a in client.get(f"/api/runs/{rid}/alerts").json()] == [alert]


def test_dismiss_closes_without_acting(client: TestClient, db: Database) -> None:
    rid = make_run(client)
    alert = add_alert(db, rid, SET_LR)
    response = client.post(f"/api/runs/{rid}/alerts/{alert}/dismiss")
    assert response.status_code == 200 and response.json()["dismissed"] is True
    events = client.get(f"/api/runs/{rid}/events").json()
    assert not [e for e in events if e["type"] == "set_lr"]
    assert client.get(f"/api/runs/{rid}/alerts").json() == []


def test_a_fork_action_goes_back_to_its_checkpoint_with_the_new_rate(
    client: TestClient, db: Database
) -> None:
    rid = make_run(client)
    state = state_to_bytes(Trainer(RunConfig(**CONFIG)).state_dict())
    with db.write() as s:
        crud.save_checkpoint(s, rid, 0, state)
    action = {"type": "fork", "step": 0, "lr": 3e-4, "label": "go back to step 0 with lr 3e-4"}
    alert = add_alert(db, rid, action)
    response = client.post(f"/api/runs/{rid}/alerts/{alert}/act")
    assert response.status_code == 202, response.text
    child = response.json()["run"]
    assert child["parent_id"] == rid and child["parent_step"] == 0
    child_events = client.get(f"/api/runs/{child['id']}/events").json()
    assert [e["lr"] for e in child_events if e["type"] == "set_lr"] == [3e-4]


def test_an_ended_run_has_no_open_command_alerts(client: TestClient, db: Database) -> None:
    rid = make_run(client)
    alert = add_alert(db, rid, SET_LR)
    client.post(f"/api/runs/{rid}/commands", json={"type": "stop"})
    assert client.get(f"/api/runs/{rid}/alerts").json() == []
    response = client.post(f"/api/runs/{rid}/alerts/{alert}/act")
    assert response.status_code == 409 and "stopped" in response.json()["detail"]


def test_autopilot_commands_are_validated(client: TestClient) -> None:
    rid = make_run(client)
    bad = client.post(
        f"/api/runs/{rid}/commands", json={"type": "autopilot", "policy": "yolo", "on": True}
    )
    assert bad.status_code == 422 and "policy" in bad.text
    missing = client.post(
        f"/api/runs/{rid}/commands", json={"type": "autopilot", "policy": "early_stopping"}
    )
    assert missing.status_code == 422 and "on" in missing.text
    ok = client.post(
        f"/api/runs/{rid}/commands",
        json={"type": "autopilot", "policy": "early_stopping", "on": True},
    )
    assert ok.status_code == 202 and ok.json()["policy"] == "early_stopping"
    created = client.post("/api/runs", json={"config": CONFIG, "autopilot": ["nope"]})
    assert created.status_code == 422 and "autopilot" in created.text
    assert len(client.get("/api/runs").json()) == 1, "the refused run was not created"


def test_a_run_created_with_autopilot_queues_its_switches(client: TestClient) -> None:
    rid = make_run(client, autopilot=["pause_on_spike", "early_stopping", "pause_on_spike"])
    events = client.get(f"/api/runs/{rid}/events").json()
    switches = [(e["policy"], e["on"]) for e in events if e["type"] == "autopilot"]
    assert switches == [("pause_on_spike", True), ("early_stopping", True)]


def test_page_shows_notices_and_toggles_and_the_push_drops_a_handled_alert(
    client: TestClient, db: Database
) -> None:
    rid = make_run(client, autopilot=["early_stopping"])
    alert = add_alert(db, rid, SET_LR)
    page = client.get(f"/runs/{rid}").text
    assert f'id="alert-{alert}"' in page and "divide lr by 3 (to 0.003)" in page
    assert f'hx-post="/runs/{rid}/alerts/{alert}/act"' in page
    assert 'id="autopilot-early_stopping" class="toggle on" aria-pressed="true"' in page
    assert 'id="autopilot-reduce_lr_on_plateau" class="toggle" aria-pressed="false"' in page
    answer = client.post(f"/runs/{rid}/alerts/{alert}/act")
    assert answer.status_code == 202 and "command #" in answer.text
    fragments = Fragments(db, client.app.state.templates.env)  # type: ignore[attr-defined]
    html = dict(fragments(rid, {"event"}))["fragment-event"]
    assert 'id="run-alerts"' in html and f'id="alert-{alert}"' not in html
    assert "No open alerts" in html
    refused = client.post(f"/runs/{rid}/alerts/{alert}/act")
    assert refused.status_code == 409 and "already" in refused.text


def test_toggle_posts_the_autopilot_command(client: TestClient) -> None:
    rid = make_run(client)
    body = {"type": "autopilot", "policy": "pause_on_spike", "on": "true"}
    answer = client.post(f"/runs/{rid}/commands", data=body)
    assert answer.status_code == 202, answer.text
    page = client.get(f"/runs/{rid}").text
    assert 'id="autopilot-pause_on_spike" class="toggle on"' in page
