"""The study pages (app/web/studies*.py): the list, a study's page with a real study (table,
sorting, plots, the live part's refresh), the new-study form (its 422 path creates nothing),
and the buttons' routes (pause / resume / stop, narrow, continue the best)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.db import Database
from app.models import StudyTrial
from app.studies.space import Param
from app.web import studies_plots as plots
from app.web.studies import LiveCache
from app.web.studies_view import BadSort, sort_trials

pytestmark = pytest.mark.timeout(180)

HX = {"HX-Request": "true"}


def _create(client: TestClient, tiny: dict[str, Any], **body: Any) -> dict[str, Any]:
    payload = {
        "name": "web study",
        "config": {**tiny, "max_steps": 200, "eval_every": 20},
        "space": {
            "lr": {"low": 1e-3, "high": 1e-1, "log": True},
            "beta1": {"low": 0.8, "high": 0.99, "log_one_minus": True},
            "hidden": {"choices": [[8], [16, 16]]},
        },
        "n_trials": 4,
        "parallel": 2,
        "seed": 3,
        **body,
    }
    response = client.post("/api/studies", json=payload)
    assert response.status_code == 201, response.text
    return response.json()


def _study(client: TestClient, sid: int) -> dict[str, Any]:
    return client.get(f"/api/studies/{sid}").json()


@pytest.fixture
def finished_study(
    client: TestClient,
    tiny: dict[str, Any],
    start_worker: Callable[[str], Any],
    wait: Callable[..., Any],
) -> dict[str, Any]:
    """A study of 4 tiny trials, trained to the end by two workers."""
    study = _create(client, tiny)
    start_worker("w1")
    start_worker("w2")
    sid = study["id"]
    wait(lambda: _study(client, sid)["status"] == "finished", timeout=120, what="finished")
    return _study(client, sid)


def _rows(html: str) -> list[int]:
    """Trial numbers of the table's rows, in order."""
    return [int(n) for n in re.findall(r'<tr data-trial="(\d+)"', html)]


# -- pages with a real study ---------------------------------------------------------------------


def test_the_pages_show_a_finished_study(
    client: TestClient, finished_study: dict[str, Any]
) -> None:
    sid, best = finished_study["id"], finished_study["best"]
    listing = client.get("/studies")
    assert listing.status_code == 200
    assert f'href="/studies/{sid}"' in listing.text and "4 / 4" in listing.text
    assert 'hx-trigger="every' not in listing.text, "nothing left to refresh"
    assert '<a href="/studies">Studies</a>' in listing.text, "the header links the studies"

    page = client.get(f"/studies/{sid}")
    assert page.status_code == 200
    html = page.text
    assert _rows(html) == [0, 1, 2, 3]
    for trial in finished_study["trials"]:
        assert f'href="/runs/{trial["run_id"]}"' in html
        assert plots.present.number(trial["params"]["lr"]) in html
    assert f'<tr data-trial="{best["number"]}" data-run-id="{best["run_id"]}" class="best">' in html
    # The plots: a dot per evaluated trial, a curve per trial, one axis per searched field.
    for plot_id in ("plot-best", "plot-curves", "plot-param-lr", "plot-param-beta1",
                    "plot-param-hidden", "plot-parallel"):  # fmt: skip
        assert f'id="{plot_id}"' in html, plot_id
    assert "1 \u2212 beta1 (log scale)" in html and "lr (log scale)" in html
    assert html.count('class="line best"') >= 2, "the best trial highlighted (curves, parallel)"
    assert 'hx-trigger="every' not in html, "a finished study's page does not refresh"
    # The run page of a trial links back to its study.
    run_page = client.get(f"/runs/{best['run_id']}").text
    assert f'href="/studies/{sid}"' in run_page and f"trial {best['number']}" in run_page


def test_sorting_the_trials_table(client: TestClient, finished_study: dict[str, Any]) -> None:
    sid, trials = finished_study["id"], finished_study["trials"]
    by_lr = [t["number"] for t in sorted(trials, key=lambda t: t["params"]["lr"])]
    assert _rows(client.get(f"/studies/{sid}?sort=p.lr").text) == by_lr
    assert _rows(client.get(f"/studies/{sid}?sort=p.lr&dir=desc").text) == by_lr[::-1]
    by_loss = [t["number"] for t in sorted(trials, key=lambda t: t["best_val_loss"])]
    html = client.get(f"/studies/{sid}/_live?sort=best_val_loss").text
    assert _rows(html) == by_loss
    assert by_loss[0] == finished_study["best"]["number"]
    bad = client.get(f"/studies/{sid}?sort=nope")
    assert bad.status_code == 422 and "sort: &#39;nope&#39; is not a column" in bad.text
    assert client.get(f"/studies/{sid}?dir=sideways").status_code == 422
    assert client.get("/studies/999999").status_code == 404
    assert client.get(f"/studies/{2**70}").status_code == 404


def test_the_live_part_refreshes_while_the_study_runs(
    client: TestClient, tiny: dict[str, Any], wait: Callable[..., Any]
) -> None:
    """No worker: the trials stay queued, the page keeps refreshing (sort kept in the URL)."""
    sid = _create(client, tiny)["id"]
    wait(lambda: len(_study(client, sid)["trials"]) == 2, what="two queued trials")
    html = client.get(f"/studies/{sid}?sort=p.lr&dir=desc").text
    assert f'hx-get="/studies/{sid}/_live?sort=p.lr&amp;dir=desc"' in html
    assert 'hx-trigger="every 2s"' in html
    assert "No trial has been evaluated yet." in html
    live = client.get(f"/studies/{sid}/_live")
    assert live.status_code == 200 and _rows(live.text) == [0, 1]
    listing = client.get("/studies/_table").text
    assert 'hx-trigger="every 2s"' in listing and "0 / 4" in listing


# -- the buttons ---------------------------------------------------------------------------------


def test_pause_resume_stop_the_study(
    client: TestClient, tiny: dict[str, Any], wait: Callable[..., Any]
) -> None:
    sid = _create(client, tiny)["id"]
    wait(lambda: len(_study(client, sid)["trials"]) == 2, what="two trials")
    paused = client.post(f"/studies/{sid}/commands", data={"type": "pause"}, headers=HX)
    assert paused.status_code == 202 and "pause sent" in paused.text
    assert _study(client, sid)["status"] == "paused"
    resumed = client.post(f"/studies/{sid}/commands", data={"type": "resume"}, headers=HX)
    assert resumed.status_code == 202 and _study(client, sid)["status"] == "running"
    bad = client.post(f"/studies/{sid}/commands", data={"type": "explode"}, headers=HX)
    assert bad.status_code == 422 and "type" in bad.text
    assert _study(client, sid)["status"] == "running", "a refused command changes nothing"
    stopped = client.post(f"/studies/{sid}/commands", data={"type": "stop"}, headers=HX)
    assert stopped.status_code == 202
    assert _study(client, sid)["status"] in ("stopping", "stopped")
    again = client.post(f"/studies/{sid}/commands", data={"type": "pause"}, headers=HX)
    assert again.status_code == 409 and "refused: HTTP 409" in again.text


def test_narrow_and_continue_the_best(client: TestClient, finished_study: dict[str, Any]) -> None:
    sid = finished_study["id"]
    bad = client.post(f"/studies/{sid}/narrow", data={"k": "0"}, headers=HX)
    assert bad.status_code == 422 and "k:" in bad.text
    assert len(client.get("/api/studies").json()) == 1, "nothing created"
    narrowed = client.post(f"/studies/{sid}/narrow", data={"k": "2", "n_trials": "3"}, headers=HX)
    assert narrowed.status_code == 201
    child_url = narrowed.headers["HX-Redirect"]
    child = client.get("/api/studies/" + child_url.rsplit("/", 1)[1]).json()
    assert child["parent_study_id"] == sid and child["n_trials"] == 3
    assert f'href="/studies/{sid}"' in client.get(child_url).text, "linked to its parent"
    assert f'href="{child_url}"' in client.get(f"/studies/{sid}").text, "and back"

    plain = client.post(f"/studies/{sid}/continue-best", follow_redirects=False)
    assert plain.status_code == 303
    run_id = int(plain.headers["location"].rsplit("/", 1)[1])
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["study_id"] is None and run["parent_id"] == finished_study["best"]["run_id"]
    hx = client.post(f"/studies/{sid}/continue-best", headers=HX)
    assert hx.status_code == 201 and hx.headers["HX-Redirect"].startswith("/runs/")


def test_continue_the_best_trains_the_steps_the_form_asks(
    client: TestClient, finished_study: dict[str, Any]
) -> None:
    sid, best = finished_study["id"], finished_study["best"]
    page = client.get(f"/studies/{sid}").text
    assert 'name="more_steps"' in page and "more steps" in page
    before = len(client.get("/api/runs").json())
    for bad in ("0", "ten", "1.5"):
        refused = client.post(f"/studies/{sid}/continue-best", data={"more_steps": bad}, headers=HX)
        assert refused.status_code == 422 and "more_steps" in refused.text, (bad, refused.text)
    assert len(client.get("/api/runs").json()) == before, "a refusal creates nothing"
    made = client.post(f"/studies/{sid}/continue-best", data={"more_steps": "150"}, headers=HX)
    assert made.status_code == 201, made.text
    run = client.get("/api/" + made.headers["HX-Redirect"].lstrip("/")).json()
    assert run["parent_id"] == best["run_id"]
    assert run["config"]["max_steps"] == run["parent_step"] + 150


def test_a_trial_forked_from_another_draws_the_family_tree(
    client: TestClient, db: Database, finished_study: dict[str, Any]
) -> None:
    """A plain search has no tree; a trial run forked from another trial's run (as PBT's
    exploit makes them) puts the tree on the page, its connector at the fork step."""
    sid, first = finished_study["id"], finished_study["trials"][0]
    assert 'id="plot-tree"' not in client.get(f"/studies/{sid}").text
    step = client.get(f"/api/runs/{first['run_id']}/checkpoints").json()[0]["step"]
    fork = client.post(f"/api/runs/{first['run_id']}/fork", json={"step": step})
    assert fork.status_code == 201, fork.text
    with db.write() as s:
        s.add(StudyTrial(study_id=sid, run_id=fork.json()["id"], number=4, optuna_trial_id=0,
                         params="{}", sampled="{}", reported_step=0, created_at=0.0))  # fmt: skip
    html = client.get(f"/studies/{sid}").text
    assert 'id="plot-tree"' in html
    assert f"trial 4 forked from trial {first['number']} at step {step}" in html


def test_continue_the_best_without_an_evaluation_is_refused(
    client: TestClient, tiny: dict[str, Any]
) -> None:
    sid = _create(client, tiny)["id"]
    response = client.post(f"/studies/{sid}/continue-best", headers=HX)
    assert response.status_code == 409 and "no trial with a validation loss" in response.text


# -- the new-study form --------------------------------------------------------------------------


def _form(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "from the form", "dataset": "spirals", "hidden": "8", "optimizer": "adam",
        "lr": "0.01", "schedule": "constant", "batch_size": "32", "epochs": "1",
        "max_steps": "100", "seed": "0", "pace": "", "advanced": "",
        "search": ["lr", "beta1", "hidden"],
        "low.lr": "0.001", "high.lr": "0.1", "scale.lr": "log",
        "low.beta1": "0.8", "high.beta1": "0.99", "scale.beta1": "log1m",
        "choices.hidden": "8 | 16, 16",
        "n_trials": "3", "parallel": "1", "sampler": "random", "pruner": "median",
        "mode": "search", "study_seed": "5",
    }  # fmt: skip
    values.update(fields)
    return values


def test_the_form_creates_the_study_the_api_would(client: TestClient) -> None:
    page = client.get("/studies/new")
    assert page.status_code == 200 and 'name="search" value="lr"' in page.text
    response = client.post("/studies", data=_form(), follow_redirects=False)
    assert response.status_code == 303
    sid = int(response.headers["location"].rsplit("/", 1)[1])
    study = _study(client, sid)
    assert study["name"] == "from the form" and study["pruner"] == "median"
    assert (study["n_trials"], study["parallel"], study["seed"]) == (3, 1, 5)
    assert study["space"] == {
        "lr": {"low": 0.001, "high": 0.1, "log": True},
        "beta1": {"low": 0.8, "high": 0.99, "log_one_minus": True},
        "hidden": {"choices": [[8], [16, 16]]},
    }
    assert study["config"]["dataset"] == "spirals" and study["config"]["max_steps"] == 100
    hx = client.post("/studies", data=_form(name="by htmx"), headers=HX)
    assert hx.status_code == 201 and hx.headers["HX-Redirect"].startswith("/studies/")


@pytest.mark.parametrize(
    ("fields", "field_id", "text"),
    [
        ({"high.lr": "0.0001"}, "row-lr", "high must be above low"),
        ({"low.lr": "zero"}, "row-lr", "low: &#39;zero&#39; is not a number"),
        ({"scale.beta1": "log", "low.beta1": "0"}, "row-beta1", "log range needs low &gt; 0"),
        ({"choices.hidden": "8 | 0"}, "row-hidden", "width"),
        ({"search": []}, "new-study", "tick at least one field to search"),
        ({"n_trials": "0"}, "new-study", "n_trials"),
        ({"lr": "-1"}, "new-study", "greater than 0"),
        ({"dataset": "/etc/passwd"}, "new-study", "dataset"),
        ({"advanced": "{not json"}, "new-study", "not valid JSON"),
    ],
)
def test_a_bad_field_comes_back_beside_it_and_nothing_is_created(
    client: TestClient, fields: dict[str, Any], field_id: str, text: str
) -> None:
    response = client.post("/studies", data=_form(**fields), headers=HX)
    assert response.status_code == 422, response.text
    html = response.text
    assert 'id="new-study"' in html
    start = html.index(f'id="{field_id}"')
    end = html.index("</tr>", start) if field_id.startswith("row-") else len(html)
    beside = html[start:end]
    assert text in beside and 'class="field-error"' in beside, beside[:2000]
    if field_id.startswith("row-"):
        assert 'class="invalid-row"' in beside
    assert client.get("/api/studies").json() == [], "nothing created"
    plain = client.post("/studies", data=_form(**fields))
    assert plain.status_code == 422 and "<h1>New study</h1>" in plain.text


# -- pieces --------------------------------------------------------------------------------------


def _trial(number: int, lr: float, loss: float | None, beta1: float = 0.9) -> dict[str, Any]:
    return {
        "number": number, "run_id": 100 + number, "status": "finished",
        "params": {"lr": lr, "beta1": beta1}, "sampled": {"lr": lr, "1-beta1": 1 - beta1},
        "best_val_loss": loss, "best_val_acc": None if loss is None else 0.5, "state": "complete",
        "step": 10,
    }  # fmt: skip


def test_sort_puts_missing_values_last_either_way() -> None:
    trials = [_trial(0, 0.01, 0.5), _trial(1, 0.1, None), _trial(2, 0.001, math.nan),
              _trial(3, 0.05, 0.2)]  # fmt: skip
    up = sort_trials(trials, "best_val_loss", False, ["lr"])
    down = sort_trials(trials, "best_val_loss", True, ["lr"])
    assert [t["number"] for t in up] == [3, 0, 1, 2]
    assert [t["number"] for t in down] == [0, 3, 1, 2]
    assert [t["number"] for t in sort_trials(trials, "p.lr", False, ["lr"])] == [2, 0, 3, 1]
    with pytest.raises(BadSort, match=r"p\.lr"):
        sort_trials(trials, "p.momentum", False, ["lr"])


def test_a_log_one_minus_axis_plots_one_minus_x_on_a_log_scale() -> None:
    param = Param("beta1", "one_minus", low=0.9, high=0.999)
    scale = plots.param_scale(param)
    assert scale.kind == "log"
    # 1 - 0.99 = 0.01 sits halfway between 1 - 0.999 = 0.001 and 1 - 0.9 = 0.1.
    assert scale.frac(plots.param_value(param, _trial(0, 0.01, 0.3, beta1=0.99))) == pytest.approx(
        0.5
    )
    assert plots.param_label(param) == "1 \u2212 beta1 (log scale)"
    assert [label for _, label in scale.ticks()] == ["0.001", "0.01", "0.1"]
    linear = plots.param_scale(Param("dropout", "float", low=0.0, high=0.5))
    assert linear.kind == "linear" and linear.frac(0.25) == pytest.approx(0.5)
    chart = plots.against_param(param, [_trial(0, 0.01, 0.3, 0.99), _trial(1, 0.01, 0.2)], 1)
    assert [m.css for m in chart.marks] == ["trial", "best"], "the best drawn last, on top"


def test_curves_break_at_a_non_finite_loss_and_the_best_is_on_top() -> None:
    trials = [_trial(0, 0.01, 0.5), _trial(1, 0.1, 0.2)]
    curves = {100: [(10, 1.0), (20, math.nan), (30, 0.5), (40, 0.6)], 101: [(10, 0.9), (20, 0.2)]}
    chart = plots.loss_curves(trials, curves, best_number=1)
    assert [line.css for line in chart.lines] == ["trial", "trial", "best"]
    assert len(chart.lines[0].points.split()) == 1 and len(chart.lines[1].points.split()) == 2
    best = plots.best_so_far([*trials, _trial(2, 0.05, 0.3)], best_number=1)
    assert best.lines[0].css == "running-best" and [t.label for t in best.x_ticks] == [
        "0",
        "1",
        "2",
    ]
    assert plots.family_tree(trials, {100: (None, None), 101: (None, None)}, 1) is None
    tree = plots.family_tree(trials, {101: (100, 5)}, 1)
    assert tree is not None and [lane["css"] for lane in tree.lanes] == ["trial", "best"]
    assert tree.lanes[1]["x1"] > tree.lanes[0]["x1"], "the fork's bar starts at its fork step"
    assert [e.title for e in tree.edges] == ["trial 1 forked from trial 0 at step 5"]
    par = plots.parallel([Param("lr", "float", low=1e-3, high=1.0, log=True)], trials, 1)
    assert [line.css for line in par.lines] == ["trial", "best"]
    assert [a.label for a in par.axes] == ["lr (log scale)", "best val loss"]


def test_the_live_cache_renders_once_per_period_for_every_viewer() -> None:
    renders: list[int] = []

    def render() -> str:
        renders.append(1)
        return f"html {len(renders)}"

    cache = LiveCache(ttl=3600)
    assert cache.get((1, "number", "asc"), render) == "html 1"
    assert cache.get((1, "number", "asc"), render) == "html 1", "a second viewer: no render"
    assert cache.get((1, "p.lr", "asc"), render) == "html 2", "another sort is another page"
    assert LiveCache(ttl=0).get((1,), render) == "html 3"
