"""The run page draws the training split in evaluation mode beside validation (issue 8).

On the default digits run (dropout 0.5, batch norm) the per-step training loss is measured in
training mode and sits above the validation loss; the eval-mode training curve sits below both,
so the train/val gap reads the right way round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import get_json, post_json
from playwright.sync_api import Page, expect

SHOT_NAME = "train-eval-curve.png"


def _last(page: Page, chart: str, series: int) -> Any:
    """The last non-null value of a series of a chart, as uPlot holds it."""
    return page.evaluate(
        "([c, i]) => window.pandamode.charts[c].data[i].filter((v) => v !== null).at(-1)",
        [chart, series],
    )


def test_eval_mode_training_curve_sits_below_the_training_mode_loss(
    browser_page: Page, server_url: str, tmp_path: Path
) -> None:
    page = browser_page
    body = {"name": "train eval e2e", "config": {"max_steps": 400}}  # defaults: digits, dropout
    run = post_json(server_url, "/api/runs", body)
    page.goto(f"{server_url}/runs/{run['id']}")
    expect(page.locator("#status-badge")).to_have_text("finished", timeout=60_000)
    page.wait_for_function("window.pandamode.data.step.at(-1) === 400")

    for kind in ("loss", "acc"):
        legend = page.locator(f"#chart-{kind} .u-legend")
        expect(legend).to_contain_text(f"train {kind} (eval mode)")
        expect(legend).to_contain_text(f"train {kind} (training mode: dropout, batch stats)")
        expect(legend).to_contain_text(f"val {kind}")

    eval_mode = _last(page, "loss", 4)
    training_mode = _last(page, "loss", 2)  # the smoothed per-step curve, as drawn
    val = _last(page, "loss", 3)
    assert eval_mode < training_mode, (eval_mode, training_mode)
    assert eval_mode < val, "the training split fits better than validation: a real gap"
    assert _last(page, "acc", 4) >= _last(page, "acc", 3)

    metrics = get_json(server_url, f"/api/runs/{run['id']}/metrics")
    stored = [v for v in metrics["train_eval_loss"] if v is not None]
    assert len(stored) == 8 and stored[-1] == eval_mode, "every evaluation, drawn as stored"

    charts = page.locator("section.panel", has=page.locator("#chart-loss"))
    charts.screenshot(path=str(tmp_path / SHOT_NAME))
