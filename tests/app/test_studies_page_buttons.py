"""The study page's buttons follow the study (pause / resume / stop enabled as its status allows,
in the page, in each live refresh and in a command's answer), and a PBT study's live members get
the moves by hand in their rows (copy the best, lr x1.2 / x0.8), posted through the API's own
code, with the moves listed on the page."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.web.studies_view import member_moves, study_buttons

pytestmark = pytest.mark.timeout(120)

HX = {"HX-Request": "true"}
LR = {"lr": {"low": 1e-3, "high": 1e-1, "log": True}}


def _enabled(html: str) -> dict[str, bool]:
    """Whether each study button in ``html`` is enabled (the first of each id)."""
    out = {}
    for kind in ("pause", "resume", "stop"):
        tag = re.search(rf'<button id="study-{kind}"[^>]*>', html)
        assert tag is not None, f"no {kind} button"
        out[kind] = " disabled" not in tag.group(0)
    return out


def _study(client: TestClient, sid: int) -> dict[str, Any]:
    return client.get(f"/api/studies/{sid}").json()


def test_the_buttons_follow_the_studys_state(
    client: TestClient, tiny: dict[str, Any], wait: Callable[..., Any]
) -> None:
    """No worker: the trials stay queued while the study is paused, resumed and stopped."""
    body = {"config": tiny, "space": LR, "n_trials": 4, "parallel": 2}
    sid = client.post("/api/studies", json=body).json()["id"]
    wait(lambda: len(_study(client, sid)["trials"]) == 2, what="two trials")
    running = {"pause": True, "resume": False, "stop": True}
    assert _enabled(client.get(f"/studies/{sid}").text) == running
    assert _enabled(client.get(f"/studies/{sid}/_live").text) == running  # now in the cache

    paused = client.post(f"/studies/{sid}/commands", data={"type": "pause"}, headers=HX)
    assert paused.status_code == 202 and "pause sent" in paused.text
    assert 'id="study-buttons" data-status="paused" hx-swap-oob="true"' in paused.text
    assert _enabled(paused.text) == {"pause": False, "resume": True, "stop": True}
    live = client.get(f"/studies/{sid}/_live").text  # no stale render from the cache
    assert 'hx-swap-oob="true"' in live and _enabled(live)["resume"]
    assert _enabled(client.get(f"/studies/{sid}").text) == {**running, "pause": False,
                                                            "resume": True}  # fmt: skip

    resumed = client.post(f"/studies/{sid}/commands", data={"type": "resume"}, headers=HX)
    assert _enabled(resumed.text) == running
    stopped = client.post(f"/studies/{sid}/commands", data={"type": "stop"}, headers=HX)
    assert stopped.status_code == 202
    assert _enabled(stopped.text) == {"pause": False, "resume": False, "stop": False}
    wait(lambda: _study(client, sid)["status"] == "stopped", what="stopped")
    page = client.get(f"/studies/{sid}").text
    assert _enabled(page) == {"pause": False, "resume": False, "stop": False}
    assert 'title="the study is stopped"' in page


def test_which_buttons_apply_in_each_status() -> None:
    assert study_buttons("running") == {"pause": True, "resume": False, "stop": True}
    assert study_buttons("paused") == {"pause": False, "resume": True, "stop": True}
    for ended in ("stopping", "stopped", "finished"):
        assert not any(study_buttons(ended).values()), ended


def _member(number: int, loss: float | None, **over: Any) -> dict[str, Any]:
    return {"number": number, "run_id": 10 + number, "status": "running", "state": "running",
            "pruned_reason": None, "best_val_loss": loss, **over}  # fmt: skip


def test_each_live_member_may_copy_the_best_live_member() -> None:
    study = {"mode": "pbt", "status": "running"}
    trials = [
        _member(0, 0.5),
        _member(1, 0.2),
        _member(2, 0.1, pruned_reason="replaced by #13", status="stopped", state="pruned"),
        _member(3, None),
    ]
    moves = member_moves(study, trials, [])
    assert set(moves) == {10, 11, 13}, "a replaced member offers no move"
    assert moves[10]["source"]["run_id"] == 11 and moves[13]["source"]["run_id"] == 11
    assert moves[11]["source"] is None, "the best does not copy itself"
    waiting = [{"member_run_id": 10, "source_run_id": 11, "status": "waiting"}]
    assert member_moves(study, trials, waiting)[10]["replacing"] == waiting[0]
    assert member_moves({**study, "mode": "search"}, trials, []) == {}
    assert member_moves({**study, "status": "finished"}, trials, []) == {}


def test_pbt_moves_by_hand_from_the_page(
    client: TestClient,
    tiny: dict[str, Any],
    start_worker: Callable[[str], Any],
    wait: Callable[..., Any],
) -> None:
    body = {
        "mode": "pbt",
        "config": {**tiny, "max_steps": 100_000, "eval_every": 20},
        "space": LR,
        "parallel": 2,
        "perturbation_interval": 50_000,  # PBT itself stays out of the way
        "pace": 50,
    }
    sid = client.post("/api/studies", json=body).json()["id"]
    start_worker("w1")
    start_worker("w2")

    def evaluated() -> bool:
        trials = _study(client, sid)["trials"]
        return len(trials) == 2 and all(isinstance(t["best_val_loss"], float) for t in trials)

    wait(evaluated, timeout=30, what="both members evaluated")
    trials = _study(client, sid)["trials"]
    page = client.get(f"/studies/{sid}").text
    assert "2 members; 0 runs ended" in page, "a population, not trials done / total"
    # Which member is best moves as they train: read it off this render (member_moves's rule
    # is tested above), the member the other's "copy the best" copies.
    sources = set(re.findall(r'name="source" value="(\d+)"', page))
    assert len(sources) == 1, "one member copies the other"
    (source,) = sources
    best, other = sorted(trials, key=lambda t: t["run_id"] != int(source))
    assert 'id="study-moves"' in page and "No move yet" in page
    for t in trials:
        for factor in ("1.2", "0.8"):
            assert f'id="explore-{t["run_id"]}-{factor}"' in page
    assert f'id="exploit-{best["run_id"]}"' not in page, "the best copies nobody"
    assert f'id="exploit-{other["run_id"]}"' in page
    assert f'name="source" value="{best["run_id"]}"' in page
    assert f"copy the best (trial {best['number']})" in page

    members = f"/studies/{sid}/members"
    bad = client.post(f"{members}/{best['run_id']}/explore", data={"factor": "lots"}, headers=HX)
    assert bad.status_code == 422 and "factor" in bad.text
    itself = client.post(
        f"{members}/{best['run_id']}/exploit", data={"source": best["run_id"]}, headers=HX
    )
    assert itself.status_code == 422 and "cannot exploit itself" in itself.text
    assert _study(client, sid)["moves"] == [], "a refusal changes nothing"

    explored = client.post(f"{members}/{best['run_id']}/explore", data={"factor": "0.8"},
                           headers=HX)  # fmt: skip
    assert explored.status_code == 202 and "explore by hand: lr" in explored.text
    events = client.get(f"/api/runs/{best['run_id']}/events").json()
    set_lrs = [e for e in events if "explore by hand" in (e.get("reason") or "")]
    assert [e["type"] for e in set_lrs] == ["set_lr"]

    moved = client.post(
        f"{members}/{other['run_id']}/exploit", data={"source": best["run_id"]}, headers=HX
    )
    assert moved.status_code == 202 and "exploit queued" in moved.text, moved.text
    (move,) = _study(client, sid)["moves"]
    assert (move["member_run_id"], move["source_run_id"], move["by"]) == (
        other["run_id"], best["run_id"], "user",
    )  # fmt: skip
    waiting = client.get(f"/studies/{sid}").text  # the page: no render cache
    if _study(client, sid)["moves"][0]["status"] == "waiting":  # (the driver may be quicker)
        assert f"being replaced by a copy of trial {best['number']}" in waiting
    wait(lambda: _study(client, sid)["moves"][0]["status"] == "done", timeout=30, what="done")
    page = client.get(f"/studies/{sid}").text
    row = page[page.index(f'<tr data-move="{move["id"]}"') :]
    row = row[: row.index("</tr>")]
    assert "by hand" in row and f"trial {other['number']}" in row
    assert f"trial {best['number']}" in row and "done" in row
    child = _study(client, sid)["moves"][0]["child_run_id"]
    assert f'href="/runs/{child}"' in row
    client.post(f"/api/studies/{sid}/commands", json={"type": "stop"})
    wait(lambda: _study(client, sid)["status"] == "stopped", timeout=30, what="stopped")
    assert "exploit-" not in client.get(f"/studies/{sid}").text, "no move once it has ended"
