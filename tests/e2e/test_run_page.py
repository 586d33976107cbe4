"""One babysitting session through the browser: start, watch, pause, change lr, resume, reload,
stop. Every wait is on observable state (page JS state, DOM, the JSON API) with a timeout."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"
Api = Callable[[str], Any]
NEW_LR = 0.02


def data_length(page: Page) -> int:
    """Metric rows the page holds (window.pandamode.data, filled from the stream)."""
    return int(page.evaluate("window.pandamode.data.step.length"))


def counter(page: Page) -> int:
    """The live step counter in the run header."""
    return int(page.locator("#step-counter").inner_text())


def wait_counter_above(page: Page, value: int) -> None:
    page.wait_for_function(
        "v => Number(document.getElementById('step-counter').textContent) > v", arg=value
    )


def opened_run(page: Page, url: re.Pattern[str] = re.compile(r"/runs/\d+$")) -> int:
    """Wait for the browser to land on a run page; that run's id."""
    page.wait_for_url(url)
    return int(page.url.rsplit("/", 1)[1])


def wait_counter_at_least(page: Page, value: int) -> None:
    page.wait_for_function(
        "v => Number(document.getElementById('step-counter').textContent) >= v", arg=value
    )


def start_run_from_form(page: Page, server_url: str, api: Api) -> int:
    """Fill the new-run form for a run that will not end by itself; return the new run's id."""
    page.goto(server_url + "/")
    page.fill("input[name=name]", "e2e babysitting")
    # The default digits network, at the form's default pace (50 steps/s: people can follow it).
    page.fill("input[name=lr]", "0.001")
    page.fill("input[name=max_steps]", "1000000")
    # Constant schedule: the lr the charts show is then exactly the one we set.
    page.fill("textarea[name=advanced]", '{"eval_every": 100, "schedule": "constant"}')
    page.click("#new-run button[type=submit]")
    run_id = opened_run(page)
    run = api(f"/api/runs/{run_id}")
    assert run["name"] == "e2e babysitting"
    assert run["config"]["eval_every"] == 100
    assert run["config"]["hidden"] == [128, 128]
    assert run["config"]["max_steps"] == 1_000_000
    paces = [e for e in api(f"/api/runs/{run_id}/events") if e["type"] == "set_pace"]
    assert [e["steps_per_second"] for e in paces] == [50]
    return run_id


def expect_marker_on_charts(page: Page, event_id: int) -> None:
    """The event's dashed line is drawn on every chart (charts.js lists what it drew)."""
    for kind in ("loss", "acc", "lr"):
        expect(page.locator(f"#chart-{kind} .uplot")).to_have_attribute(
            "data-markers", re.compile(rf"(^| ){event_id}( |$)")
        )


def save_screenshot(page: Page, tmp_path: Path) -> None:
    """docs/screenshot.png is only rewritten on request (UPDATE_SCREENSHOT=1) or when missing,
    so a test run never dirties the tree; otherwise the shot goes to the test's tmp dir."""
    shot = tmp_path / "run-page.png"
    page.screenshot(path=str(shot))
    if os.environ.get("UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
        shutil.copyfile(shot, SCREENSHOT)


def test_babysit_a_run(browser_page: Page, server_url: str, api: Api, tmp_path: Path) -> None:
    page = browser_page
    run_id = start_run_from_form(page, server_url, api)

    # Live: the curve gains points and the counter moves.
    page.wait_for_function("window.pandamode && window.pandamode.data.step.length > 20")
    before = data_length(page)
    step_before = counter(page)
    page.wait_for_function("n => window.pandamode.data.step.length > n + 20", arg=before)
    wait_counter_above(page, step_before)
    expect(page.locator("#status-badge")).to_have_text("running")
    # The status panel's step keeps up with the live counter between the stream's pushes.
    for _ in range(6):
        panel = int(page.locator("#status-step").inner_text())
        assert abs(panel - counter(page)) <= 15, (panel, counter(page))
        time.sleep(0.25)
    # Evaluations arrive as well (eval_every 100), drawn as the validation series.
    page.wait_for_function("window.pandamode.data.val_loss.some(v => v !== null)")
    # The pace set at creation (step 0, before the first step) is drawn at the axis's start.
    creation_pace = next(e for e in api(f"/api/runs/{run_id}/events") if e["type"] == "set_pace")
    assert creation_pace["step"] == 0
    expect_marker_on_charts(page, creation_pace["id"])

    # Pause: the status says so and the counter stops.
    page.click("#pause")
    expect(page.locator("#status-badge")).to_have_text("paused")
    expect(page.locator("#event-log li[data-type=pause]")).not_to_have_attribute("data-step", "")
    paused_at = counter(page)
    rows_paused = data_length(page)
    time.sleep(1.0)
    assert counter(page) == paused_at
    assert data_length(page) == rows_paused
    assert api(f"/api/runs/{run_id}")["step"] == paused_at
    # The status panel agrees with the live counter (pushed on changes, never trailing).
    expect(page.locator("#status-step")).to_have_text(str(paused_at))

    # A refused command shows the server's reason and changes nothing.
    page.fill("#lr-input", "-1")
    page.click("#apply-lr")
    expect(page.locator("#command-messages .error")).to_contain_text("422")
    expect(page.locator("#command-messages .error")).to_contain_text("lr")

    # A new learning rate through the number field; its marker lands at the paused step.
    page.fill("#lr-input", str(NEW_LR))
    page.click("#apply-lr")
    marker = page.locator("#event-log li[data-type=set_lr]")
    expect(marker).to_have_count(1)
    expect(marker).to_have_attribute("data-step", str(paused_at))
    expect_marker_on_charts(page, int(marker.get_attribute("data-id") or 0))
    assert page.evaluate(
        "s => window.pandamode.events.some(e => e.type === 'set_lr' && e.step === s)", paused_at
    )
    # The command's message follows it: sent, then where it applied (pushed by the stream).
    expect(page.locator("#command-messages")).to_contain_text(f"set_lr {NEW_LR} sent")
    expect(page.locator("#command-messages")).to_contain_text(f"applied at step {paused_at}")
    # The slider follows the number field (log10 scale).
    slider = float(page.input_value("#lr-slider"))
    assert abs(slider - math.log10(NEW_LR)) < 0.01

    # Step 5 while paused: exactly five more steps, then paused again.
    page.fill("#step-n", "5")
    page.click("#step")
    wait_counter_at_least(page, paused_at + 5)
    expect(page.locator("#status-badge")).to_have_text("paused")
    expect(page.locator("#event-log li[data-type=step]")).to_have_attribute(
        "data-step", str(paused_at)
    )
    time.sleep(0.5)
    assert counter(page) == paused_at + 5

    # A checkpoint on demand is recorded where it was taken.
    page.click("#checkpoint")
    expect(page.locator("#event-log li[data-type=checkpoint]")).to_have_attribute(
        "data-step", str(paused_at + 5)
    )

    # Resume: steps continue, and the lr chart's last value is the new rate.
    page.click("#resume")
    expect(page.locator("#status-badge")).to_have_text("running")
    wait_counter_above(page, paused_at + 20)
    page.wait_for_function(
        "lr => { const c = window.pandamode.charts.lr.data[1];"
        " return Math.abs(c[c.length - 1] / lr - 1) < 1e-6; }",
        arg=NEW_LR,
    )
    # Step k ran with the old rate; k + 1 is the first with the new one (architecture.md).
    old_lr, new_lr = page.evaluate(
        "s => { const d = window.pandamode.data, i = d.step.indexOf(s);"
        " return [d.lr[i], d.lr[i + 1]]; }",
        paused_at,
    )
    assert old_lr == pytest.approx(0.001, rel=1e-6)
    assert new_lr == pytest.approx(NEW_LR, rel=1e-6)

    # A slower pace from the select: its marker lands on the curve, and the steps slow down.
    page.select_option("#pace-select", "10")
    page.click("#apply-pace")
    expect(page.locator("#event-log li[data-type=set_pace]")).not_to_have_attribute("data-step", "")
    # Measured on the worker's committed step: the page's counter trails it by a stream poll.
    start_step, start = api(f"/api/runs/{run_id}")["step"], time.monotonic()
    time.sleep(1.5)
    done = api(f"/api/runs/{run_id}")["step"] - start_step
    assert done / (time.monotonic() - start) <= 10 * 1.15 + 2

    # Reload: the whole history comes back (from step 1) and keeps streaming.
    rows_before_reload = data_length(page)
    page.reload()
    page.wait_for_function(
        "n => window.pandamode && window.pandamode.data.step.length >= n", arg=rows_before_reload
    )
    assert page.evaluate("window.pandamode.data.step[0]") == 1
    expect(page.locator("#event-log li[data-type=set_lr]")).to_have_attribute(
        "data-step", str(paused_at)
    )
    resumed_rows = data_length(page)
    page.wait_for_function("n => window.pandamode.data.step.length > n", arg=resumed_rows)
    # The checkpoint list, built before the history arrived, is labelled once it has.
    expect(page.locator("#fork-step option").first).to_contain_text("val loss")
    save_screenshot(page, tmp_path)

    # A second tab gets the same history and streams on its own connection.
    second = page.context.new_page()
    second.goto(page.url)
    second.wait_for_function(
        "n => window.pandamode && window.pandamode.data.step.length >= n", arg=resumed_rows
    )
    wait_counter_above(second, counter(page))
    expect(second.locator("#event-log li[data-type=set_lr]")).to_have_attribute(
        "data-step", str(paused_at)
    )
    second.close()

    # Stop (the page asks for confirmation first): the run settles and the controls go quiet.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#stop")
    expect(page.locator("#status-badge")).to_have_text("stopped")
    expect(page.locator("#pause")).to_be_disabled()
    expect(page.locator("#run-status")).not_to_have_attribute("hx-trigger", re.compile("."))
    assert api(f"/api/runs/{run_id}")["status"] == "stopped"


def test_new_run_form_rejects_bad_input(browser_page: Page, server_url: str, api: Api) -> None:
    page = browser_page
    runs_before = len(api("/api/runs"))
    page.goto(server_url + "/")
    page.fill("input[name=lr]", "-1")
    page.click("#new-run button[type=submit]")
    error = page.locator("#new-run-messages li")
    expect(error).to_have_count(1)
    expect(error).to_have_attribute("data-field", re.compile(r"(^|\.)lr$"))
    expect(page.locator("input[name=lr]")).to_have_class(re.compile(r"\binvalid\b"))
    assert page.url == server_url + "/"
    assert len(api("/api/runs")) == runs_before


def test_diverging_run_shows_gaps_and_status(browser_page: Page, server_url: str, api: Api) -> None:
    """A run that blows up: the page says diverged and the non-finite loss is a gap, not a
    number the chart tries to draw; then the user retries it from its start at a lower rate."""
    page = browser_page
    config = {
        "hidden": [64],
        "batchnorm": False,
        "optimizer": "sgd",
        "lr": 50.0,
        "schedule": "constant",
        "max_steps": 1000,
    }
    page.goto(server_url + "/")
    # Through the form's advanced JSON, which wins over the fields.
    page.fill("input[name=name]", "too hot")
    page.fill("textarea[name=advanced]", json.dumps(config))
    page.click("#new-run button[type=submit]")
    diverged = opened_run(page)
    expect(page.locator("#status-badge")).to_have_text("diverged", timeout=30_000)
    page.wait_for_function("window.pandamode.state.full.nonfinite.length > 0")
    last_loss = page.evaluate(
        "(() => { const d = window.pandamode.data.train_loss; return d[d.length - 1]; })()"
    )
    assert last_loss is None
    expect(page.locator("#run-status")).to_contain_text("non-finite")
    expect(page.locator("#event-log li[data-type=diverged]")).to_have_count(1)
    expect(page.locator("#apply-lr")).to_be_disabled()

    # Panda mode: back to the start (a worker checkpoints step 0) with a rate that can work.
    expect(page.locator("#fork-step option").first).to_have_attribute("value", "0")
    page.fill("#fork-lr", "0.05")
    page.click("#fork")
    retry = opened_run(page, re.compile(rf"/runs/(?!{diverged}$)\d+$"))
    wait_counter_above(page, 30)
    expect(page.locator("#status-badge")).to_have_text("running")
    assert api(f"/api/runs/{retry}")["parent_step"] == 0
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#stop")
    expect(page.locator("#status-badge")).to_have_text("stopped")


def test_go_back_to_a_checkpoint_with_another_lr(
    browser_page: Page, server_url: str, api: Api
) -> None:
    """Panda mode's way out: fork the run from one of its checkpoints with a new learning rate.
    The new run opens, says where it came from, and trains at the new rate on the one worker,
    which the paused parent hands over."""
    page = browser_page
    parent = start_run_from_form(page, server_url, api)
    wait_counter_above(page, 105)  # past the first evaluation (eval_every 100)
    page.wait_for_function("window.pandamode.data.val_loss.some(v => v !== null)")
    page.click("#checkpoint")
    select = page.locator("#fork-step")
    # Newest first: the one just asked for, above the one a worker makes when it starts a run.
    expect(select.locator("option").first).to_have_attribute("value", re.compile(r"^[1-9]\d*$"))
    expect(page.locator("#fork")).to_be_enabled()
    ckpt_step = int(select.input_value())
    assert ckpt_step in [c["step"] for c in api(f"/api/runs/{parent}/checkpoints")]
    expect(select.locator("option").first).to_contain_text(f"step {ckpt_step}")
    # Labelled with the last evaluation before it (step 100); of the checkpoints with one, the
    # lowest validation loss is marked (step 0, the start, has none).
    expect(select.locator("option").first).to_contain_text("val loss")
    expect(select.locator("option", has_text="best")).to_have_count(1)
    expect(select.locator("option", has_text="best")).to_have_attribute("value", str(ckpt_step))
    expect(select.locator("option[value='0']")).to_have_text("step 0")

    # A refused fork says why and makes nothing.
    runs_before = len(api("/api/runs"))
    page.fill("#fork-lr", "-1")
    page.click("#fork")
    expect(page.locator("#fork-messages .error")).to_contain_text("422")
    expect(page.locator("#fork-messages .error")).to_contain_text("overrides.lr")
    assert len(api("/api/runs")) == runs_before

    wait_counter_above(page, 205)  # the parent evaluates once more (step 200) after it
    page.fill("#fork-lr", "0.005")
    page.fill("#fork-name", "lower lr")
    page.click("#fork")
    child = opened_run(page, re.compile(rf"/runs/(?!{parent}$)\d+$"))
    run = api(f"/api/runs/{child}")
    assert (run["name"], run["parent_id"], run["parent_step"]) == ("lower lr", parent, ckpt_step)
    expect(page.locator("#run-status")).to_contain_text(f"run {parent} at step {ckpt_step}")
    lr_events = [e for e in api(f"/api/runs/{child}/events") if e["type"] == "set_lr"]
    assert [e["lr"] for e in lr_events] == [0.005]
    assert api(f"/api/runs/{parent}")["status"] == "paused"

    # The parent, paused, makes room: the new run trains on from the checkpoint at the new rate.
    wait_counter_above(page, ckpt_step + 5)
    assert page.evaluate("window.pandamode.data.step[0]") == 1, "the parent's steps come along"
    expect(page.locator("#event-log li[data-type=set_lr]")).to_have_attribute(
        "data-step", str(ckpt_step)
    )
    last_lr = page.evaluate("(() => { const d = window.pandamode.data.lr; return d.at(-1); })()")
    assert last_lr == pytest.approx(0.005, rel=1e-6)

    # The parent's validation from the fork on is drawn alongside (as a dashed curve the x axis
    # makes room for, beyond this run's own last step).
    wait_counter_above(page, 200)
    parent_rows = api(f"/api/runs/{parent}/metrics?after={ckpt_step}")
    parent_val = parent_rows["val_loss"][parent_rows["step"].index(200)]
    expect(page.locator(".parent-key")).to_contain_text(f"run #{parent}")
    page.wait_for_function(
        "v => { const p = window.pandamode.state.parent;"
        " return p && p.val_loss[p.step.indexOf(200)] === v; }",
        arg=parent_val,
    )
    parent_last = page.evaluate("window.pandamode.state.parent.step.at(-1)")
    page.wait_for_function("s => window.pandamode.charts.loss.scales.x.max >= s", arg=parent_last)

    for run_id in (child, parent):  # leave the worker free for whatever runs next
        page.goto(f"{server_url}/runs/{run_id}")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#stop")
        expect(page.locator("#status-badge")).to_have_text("stopped")
