"""Caviar mode in a browser: create a study from the form, watch its trials fill the table and
the plots, open a trial and pause it like any run, continue the best into a run of its own.

A server of its own (two workers, the study's ``parallel``), so the other browser tests' runs
cannot hold its workers. Screenshots go to ``PANDAMODE_SCREENSHOTS`` (default: the test's
tmp_path) for a person to look at; the study page's also to docs/study.png (see SCREENSHOT).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import get_json, serve

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "study.png"
"""The README's picture of a study page: rewritten only with UPDATE_SCREENSHOT=1 or when
missing, so a test run never dirties the tree (as docs/screenshot.png, test_run_page.py)."""


@pytest.fixture
def study_server(tmp_path: Path) -> Iterator[str]:
    data = tmp_path / "data"
    data.mkdir()
    with serve(data, "--workers", "2") as url:
        yield url


def _shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("PANDAMODE_SCREENSHOTS", tmp_path))
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_create_watch_nurse_and_continue_a_study(
    browser_page: Page, study_server: str, tmp_path: Path
) -> None:
    page, url = browser_page, study_server
    shots = _shots(tmp_path)
    page.goto(f"{url}/studies")
    page.click("#new-study-link")
    expect(page).to_have_url(f"{url}/studies/new")

    # Tiny trials: spirals, one small layer, 300 steps each at 100 steps/s (slow enough to
    # catch one running), evaluated every 25 steps.
    form = page.locator("#new-study")
    form.locator("input[name=name]").fill("e2e caviar")
    form.locator("select[name=dataset]").select_option("spirals")
    form.locator("input[name=hidden]").fill("16")
    form.locator("input[name=max_steps]").fill("300")
    form.locator("select[name=pace]").select_option("100")
    form.locator("textarea[name=advanced]").fill('{"eval_every": 25, "n_samples": 400}')
    # A bad range first: the form comes back with the error beside the lr row, nothing made.
    form.locator("input[name='high.lr']").fill("0.00001")
    form.locator("input[name=n_trials]").fill("4")
    form.locator("input[name=parallel]").fill("2")
    page.click("#new-study button[type=submit]")
    expect(page.locator("#row-lr .field-error")).to_contain_text("high must be above low")
    page.screenshot(path=str(shots / "study-form-error.png"), full_page=True)
    assert get_json(url, "/api/studies") == []

    page.locator("#new-study input[name='high.lr']").fill("0.1")
    page.locator("#new-study input[name='low.lr']").fill("0.001")
    page.check("#search-beta1")
    page.click("#new-study button[type=submit]")
    page.wait_for_url(re.compile(r"/studies/\d+$"))
    study_id = int(page.url.rsplit("/", 1)[1])
    study = get_json(url, f"/api/studies/{study_id}")
    assert study["name"] == "e2e caviar" and study["n_trials"] == 4 and study["parallel"] == 2
    assert set(study["space"]) == {"lr", "beta1"}
    assert study["space"]["beta1"].get("log_one_minus") is True

    # Trials fill the table; the plots draw the first evaluations.
    rows = page.locator("#trials-table tbody tr")
    expect(rows).to_have_count(2, timeout=20_000)
    expect(page.locator("#plot-curves polyline").first).to_be_attached(timeout=30_000)
    expect(page.locator("#plot-best circle").first).to_be_attached()
    expect(page.locator("#plot-param-beta1 figcaption")).to_have_text("beta1")
    expect(page.locator("#plot-param-beta1")).to_contain_text("1 \u2212 beta1 (log scale)")

    # Open a running trial and pause it: an ordinary run page, an ordinary pause.
    running = page.locator("#trials-table tbody tr", has=page.locator(".badge.running")).first
    expect(running).to_be_attached(timeout=20_000)
    run_id = int(running.get_attribute("data-run-id") or 0)
    page.goto(f"{url}/runs/{run_id}")
    expect(page.locator("#run-status")).to_contain_text(f"study {study_id}")
    page.click("#pause")
    expect(page.locator("#status-badge")).to_have_text("paused")
    assert get_json(url, f"/api/runs/{run_id}")["status"] == "paused"

    # Back on the study: the paused trial says so; the others go on and finish.
    page.click(f"a[href='/studies/{study_id}']")
    paused_row = page.locator(f"#trials-table tbody tr[data-run-id='{run_id}']")
    expect(paused_row.locator(".badge")).to_have_text("paused")
    expect(page.locator("#trials-table .badge.finished")).to_have_count(3, timeout=60_000)
    expect(rows).to_have_count(4)
    expect(page.locator("#plot-parallel polyline.best")).to_have_count(1)
    page.screenshot(path=str(shots / "study-page.png"), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
        shutil.copyfile(shots / "study-page.png", SCREENSHOT)

    # Sorting by the best validation loss puts the best trial first.
    page.click("#trials-table th a:has-text('best val loss')")
    expect(page).to_have_url(re.compile(r"sort=best_val_loss"))
    expect(page.locator("#trials-table tbody tr").first).to_have_class(re.compile(r"\bbest\b"))

    # Continue the best for 50 more steps: a run of its own opens, and trains them.
    page.fill("#continue-steps", "50")
    page.click("#continue-best")
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    new_id = int(page.url.rsplit("/", 1)[1])
    new_run = get_json(url, f"/api/runs/{new_id}")
    assert new_run["study_id"] is None and new_run["parent_id"] is not None
    assert new_run["config"]["max_steps"] == new_run["parent_step"] + 50
    expect(page.locator("#run-header h1")).to_contain_text("best (trial")
    expect(page.locator("#status-badge")).to_have_text("finished", timeout=30_000)
    assert get_json(url, f"/api/runs/{new_id}")["step"] == new_run["parent_step"] + 50
    page.screenshot(path=str(shots / "study-continued.png"))

    # The study's buttons follow its state: paused, only resume (and stop) apply; resumed, the
    # paused trial goes on, the study finishes, and none applies any more.
    page.goto(f"{url}/studies/{study_id}")
    expect(page.locator("#study-resume")).to_be_disabled()
    page.click("#study-pause")
    expect(page.locator("#study-resume")).to_be_enabled()
    expect(page.locator("#study-pause")).to_be_disabled()
    page.click("#study-resume")
    expect(page.locator("#study-pause")).to_be_enabled()
    expect(page.locator("#study-status")).to_have_text("finished", timeout=60_000)
    for kind in ("pause", "resume", "stop"):
        expect(page.locator(f"#study-{kind}")).to_be_disabled()
