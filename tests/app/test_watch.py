"""The detectors and autopilot policies of app/worker/watch.py on synthetic series: each fires
at the step its rule says, once per rise of its condition, and stays quiet where it should."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from app.worker import watch as W
from app.worker.watch import Edge, Watch


@dataclass
class Layer:
    layer: int
    grad_norm: float
    update_ratio: float


def spiking(watch: Watch, losses: list[float], start: int = 1) -> list[W.Finding]:
    found = []
    for i, loss in enumerate(losses):
        found += watch.step(start + i, loss).findings
    return found


def evals(
    watch: Watch, vals: list[float], gaps: list[float] | None = None, every: int = 10
) -> list[W.Outcome]:
    outs = []
    for i, v in enumerate(vals):
        train = None if gaps is None else v - gaps[i]
        outs.append(watch.evaluated(every * (i + 1), v, train, 0.01))
    return outs


def test_edge_fires_once_per_rise_and_respects_its_cooldown() -> None:
    edge = Edge(cooldown=10)
    conds = [False, True, True, False, True, False, False] + [False] * 10 + [True]
    fired = [step for step, c in enumerate(conds) if edge(step, c)]
    assert fired == [1, 17], "the rise at 4 falls in the cooldown; 17 is a new rise after it"


def test_loss_spike_fires_at_the_first_step_whose_recent_mean_doubles() -> None:
    calm = [1.0 + 0.3 * math.sin(i) for i in range(100)]  # noisy but steady
    watch = Watch()
    assert spiking(watch, calm) == []
    found = spiking(watch, [1.0, 1.0, 6.0, 9.0, 9.0, 9.0], start=101)
    # recent mean (5 steps) at step 103: (calm[-2:] + 1 + 1 + 6) / 5 < 2; at 104: (1+1+6+9+x)..
    assert [f.step for f in found] == [104]
    assert found[0].kind == "divergence" and found[0].remedy == W.Remedy("set_lr", 1 / 3)
    assert "2x" not in found[0].message and "too high" in found[0].message


def test_loss_spike_needs_a_full_window_and_ignores_single_noisy_batches() -> None:
    watch = Watch()
    assert spiking(watch, [5.0] * 10 + [0.5] * 10) == [], "too few steps to have a mean"
    watch = Watch()
    noisy = [0.1] * 60 + [0.35] + [0.1] * 60  # one batch at 3.5x: a healthy run does this
    assert spiking(watch, noisy) == []


def test_a_doubling_near_zero_loss_is_noise_not_divergence() -> None:
    """An overfit model's mini-batch loss at 0.07 doubles by chance: not 0.1 nats of rise."""
    watch = Watch()
    assert spiking(watch, [0.07] * 60 + [0.15] * 5) == []


def test_no_flood_while_the_loss_stays_high() -> None:
    watch = Watch()
    found = spiking(watch, [1.0] * 60 + [10.0] * 300)
    assert len(found) == 1


def test_gradient_explosion_and_update_ratio_from_health() -> None:
    watch = Watch()
    healthy = [Layer(0, 1.0, 1e-3), Layer(1, 0.5, 2e-3)]
    for k in range(10):
        assert watch.step(10 * (k + 1), 1.0, healthy).findings == []
    boom = [Layer(0, 1.0, 1e-3), Layer(1, 60.0, 2e-3)]
    found = watch.step(110, 1.0, boom).findings
    assert [(f.kind, f.detector) for f in found] == [("divergence", "divergence")]
    assert "layer 1" in found[0].message and "120x" in found[0].message
    lo, hi = W.HEALTHY_UPDATE_RATIO
    fast = [Layer(0, 1.0, hi * 20), Layer(1, 0.5, 1e-3)]
    found = watch.step(120, 1.0, fast).findings
    assert [(f.detector, f.remedy.factor) for f in found] == [("update_high", 1 / 3)]
    slow = [Layer(0, 1.0, lo / 50), Layer(1, 0.5, lo / 50)]
    found = watch.step(1000, 1.0, slow).findings
    assert [(f.detector, f.remedy.factor) for f in found] == [("update_low", 3.0)]


def test_a_decayed_schedule_is_not_a_too_low_rate_nor_a_plateau() -> None:
    watch = Watch(decayed=lambda step: step >= 100)
    lo = W.HEALTHY_UPDATE_RATIO[0]
    assert watch.step(200, 1.0, [Layer(0, 1.0, lo / 50)]).findings == []
    outs = evals(watch, [1.0] * 30, every=10)
    assert [f for o in outs for f in o.findings] == []


def test_plateau_after_patience_of_the_smoothed_validation_loss() -> None:
    watch = Watch()
    vals = [2.0 - 0.1 * i for i in range(10)] + [1.1] * 40
    outs = evals(watch, vals)
    fired = [(i, f.kind) for i, o in enumerate(outs) for f in o.findings]
    # the smoothed loss keeps improving for a few evaluations after the raw one flattens
    assert len(fired) == 1 and fired[0][1] == "plateau"
    first = fired[0][0]
    assert first >= 9 + W.PLATEAU_PATIENCE
    assert outs[first].findings[0].remedy == W.Remedy("set_lr", 0.1)


def test_a_run_that_crawls_down_gets_plateau_alerts_less_and_less_often() -> None:
    """Stretches of 15 flat evaluations, each ended by a small step down: with a fixed patience
    every stretch would alert (8 alerts); the patience doubles after each alert, so only the
    stretches longer than it do. A run that never improves again alerts once."""
    vals: list[float] = []
    level = 1.0
    for _ in range(8):
        vals += [level] * 15
        level -= 0.01
    watch = Watch()
    fired = [i for i, o in enumerate(evals(watch, vals)) for f in o.findings]
    assert len(fired) == 1, fired  # 15 flat evaluations: past 10 once, never past 20
    # flat stretches of about 11, 16, 36 and 21 smoothed evaluations: a fixed patience of 10
    # alerts in each (4); backing off, after 10, then 20 (the 36), never 40
    long_vals = [1.0] * 12 + [0.99] * 25 + [0.98] * 45 + [0.97] * 30
    watch = Watch()
    fired = [i for i, o in enumerate(evals(watch, long_vals)) for f in o.findings]
    assert len(fired) == 2 and fired[1] - fired[0] > 2 * W.PLATEAU_PATIENCE, fired
    stalled = [i for i, o in enumerate(evals(Watch(), [1.0] * 100)) for f in o.findings]
    assert len(stalled) == 1


def test_plateau_with_tiny_updates_is_a_rate_too_low() -> None:
    watch = Watch()
    lo = W.HEALTHY_UPDATE_RATIO[0]
    watch.step(5, 1.0, [Layer(0, 1.0, lo / 3)])  # below the band, not far below: no alert
    outs = evals(watch, [1.0] * 12)
    found = [f for o in outs for f in o.findings]
    assert [f.kind for f in found] == ["lr_too_low"]
    assert found[0].remedy == W.Remedy("set_lr", 3.0)
    assert found[0].step == 10 * (1 + W.PLATEAU_PATIENCE)


def test_overfitting_when_the_gap_grows_for_patience_evaluations() -> None:
    watch = Watch()
    vals = [1.0 - 0.05 * i for i in range(8)] + [0.65 + 0.02 * i for i in range(20)]
    gaps = [0.02] * 8 + [0.02 + 0.03 * (i + 1) for i in range(20)]
    outs = evals(watch, vals, gaps)
    found = [f for o in outs for f in o.findings if f.kind == "overfitting"]
    assert len(found) == 1
    assert found[0].remedy.type == "fork" and found[0].remedy.step == 80  # the best val loss
    assert "step 80" in found[0].message


def test_an_overfitting_run_is_no_plateau() -> None:
    """Validation loss rising while the gap grows is overfitting; a plateau alert suggesting a
    smaller rate would be the wrong advice, so it stays quiet while overfitting holds."""
    watch = Watch()
    vals = [1.0 - 0.05 * i for i in range(8)] + [0.65 + 0.02 * i for i in range(40)]
    gaps = [0.02] * 8 + [0.02 + 0.03 * (i + 1) for i in range(40)]
    kinds = [f.kind for o in evals(watch, vals, gaps) for f in o.findings]
    assert kinds == ["overfitting"]


def test_no_overfitting_without_eval_mode_training_figures() -> None:
    watch = Watch()
    outs = evals(watch, [1.0 + 0.01 * i for i in range(30)])
    assert not [f for o in outs for f in o.findings if f.kind == "overfitting"]


def test_reduce_lr_on_plateau_follows_keras() -> None:
    policy = W.ReduceLrOnPlateau()
    orders = [policy.update(v, 0.01) for v in [1.0, 0.99] + [0.99 + 1e-5] * 12]
    cut = [i for i, o in enumerate(orders) if o is not None]
    assert cut == [1 + W.REDUCE_PATIENCE]  # wait counts from the last improvement (index 1)
    order = orders[cut[0]]
    assert order is not None and order.type == "set_lr"
    assert order.lr == pytest.approx(0.001) and "x 0.1" in order.reason


def test_early_stopping_names_the_best_step_and_asks_for_its_checkpoint() -> None:
    watch = Watch()
    watch.switch("early_stopping", True)
    outs = evals(watch, [1.0, 0.8, 0.7] + [0.75] * 10)
    assert [o.checkpoint for o in outs[:4]] == [True, True, True, False]
    stops = [o for o in outs if o.orders]
    assert len(stops) == 1 and stops[0] is outs[-1]
    stop = stops[0].orders[0]
    assert stop.type == "stop" and stop.best_step == 30 and "step 30" in stop.reason


def test_pause_on_spike_only_while_on() -> None:
    watch = Watch()
    watch.switch("pause_on_spike", True)
    out = [watch.step(i + 1, 1.0) for i in range(60)][-1]
    assert not out.orders
    spike = [watch.step(61 + i, 20.0) for i in range(3)]
    assert [o.type for s in spike for o in s.orders] == ["pause"]
    watch.switch("pause_on_spike", False)
    for i in range(200):
        watch.step(100 + i, 1.0)
    later = [watch.step(300 + i, 50.0) for i in range(3)]
    assert [f.kind for s in later for f in s.findings] == ["divergence"]
    assert not [o for s in later for o in s.orders], "switched off: alerts only"


def test_a_policy_switched_on_again_starts_afresh() -> None:
    watch = Watch()
    watch.switch("reduce_lr_on_plateau", True)
    evals(watch, [1.0] * 8)
    watch.switch("reduce_lr_on_plateau", False)
    watch.switch("reduce_lr_on_plateau", True)
    assert watch.policies["reduce_lr_on_plateau"].wait == 0
    with pytest.raises(ValueError, match="unknown autopilot policy"):
        watch.switch("yolo", True)
