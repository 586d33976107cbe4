"""The engine against torch.nn + torch.optim on the same numbers (float64, 20 steps).

Same initial weights, same batches, same hyper-parameters: every step's loss must agree to 1e-8
relative, and so must the final parameters and BN running statistics. This pins the conventions
that differ between textbooks and torch: the unbiased running variance, momentum's buffer form,
RMSProp's eps outside the square root, Adam's bias correction, and our bn_momentum = 1 - torch's.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from engine.model import MLP, ModelSpec
from engine.optim import OPTIMIZERS, init_state
from engine.trainer import train_step

torch = pytest.importorskip("torch")

N, D, C, BATCH, STEPS = 160, 12, 4, 16, 20
HYPER = {
    "sgd": {},
    "momentum": {"mu": 0.9},
    "rmsprop": {"rho": 0.95, "eps": 1e-6},
    "adam": {"beta1": 0.85, "beta2": 0.99, "eps": 1e-7},
}


def _torch_optimizer(name: str, groups: list[dict], lr: float) -> torch.optim.Optimizer:
    h = HYPER[name]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(groups, lr=lr, momentum=h["mu"])
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=h["rho"], eps=h["eps"])
    return torch.optim.Adam(groups, lr=lr, betas=(h["beta1"], h["beta2"]), eps=h["eps"])


def _torch_model(model: MLP) -> tuple[torch.nn.Sequential, list, list]:
    """torch.nn.Sequential with the engine model's current weights; returns (net, linears, bns)."""
    spec = model.spec
    mods, linears, bns = [], [], []
    act = torch.nn.ReLU if spec.activation == "relu" else torch.nn.Tanh
    for i in range(1, len(spec.sizes)):
        lin = torch.nn.Linear(spec.sizes[i - 1], spec.sizes[i]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(model.params[f"W{i}"].T.copy()))
            lin.bias.copy_(torch.from_numpy(model.params[f"b{i}"].copy()))
        mods.append(lin)
        linears.append(lin)
        if i == len(spec.sizes) - 1:
            break
        bn = torch.nn.BatchNorm1d(spec.sizes[i], momentum=1 - spec.bn_momentum, eps=spec.bn_eps)
        bns.append(bn.double())
        block = [bn, act()] if spec.bn_position == "before" else [act(), bn]
        mods.extend(block if spec.batchnorm else [act()])
    return torch.nn.Sequential(*mods), linears, bns


def _engine_model(activation: str, bn_position: str, smoothing: float) -> MLP:
    spec = ModelSpec(
        n_in=D,
        n_out=C,
        hidden=(32, 16),
        activation=activation,
        bn_position=bn_position,
        bn_momentum=0.8,
        bn_eps=1e-4,
        label_smoothing=smoothing,
        dtype="float64",
    )
    return MLP(spec, np.random.default_rng(1))


def _run_both(
    name: str,
    activation: str = "relu",
    bn_position: str = "before",
    weight_decay: float = 0.0,
    smoothing: float = 0.0,
) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((N, D)) * 2.0, rng.integers(0, C, size=N)
    model = _engine_model(activation, bn_position, smoothing)
    net, linears, bns = _torch_model(model)
    decay = [lin.weight for lin in linears]  # L2 on weight matrices only, as in the engine
    rest = [p for p in net.parameters() if all(p is not w for w in decay)]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0}]
    lr0 = 0.05 if name in ("sgd", "momentum") else 0.003
    opt = _torch_optimizer(name, groups, lr0)
    update, state = partial(OPTIMIZERS[name], **HYPER[name]), init_state(name, model.theta)
    order = np.random.default_rng(2)
    for step in range(STEPS):
        lr = lr0 if step < 10 else lr0 * 0.3  # a live lr change half-way
        for group in opt.param_groups:
            group["lr"] = lr
        idx = order.choice(N, size=BATCH, replace=False)
        ours, _ = train_step(model, update, state, x[idx], y[idx], lr=lr, weight_decay=weight_decay)
        opt.zero_grad()
        logits, target = net(torch.from_numpy(x[idx])), torch.from_numpy(y[idx])
        torch.nn.functional.cross_entropy(logits, target, label_smoothing=smoothing).backward()
        opt.step()
        theirs = torch.nn.functional.cross_entropy(logits.detach(), target).item()
        assert ours == pytest.approx(theirs, rel=1e-8, abs=0), f"step {step + 1}"
    _compare_final(model, net, linears, bns, x)


def _compare_final(
    model: MLP, net: torch.nn.Sequential, linears: list, bns: list, x: np.ndarray
) -> None:
    """Parameters, running statistics and evaluation-mode outputs agree after the run."""
    close = partial(np.testing.assert_allclose, rtol=1e-7, atol=1e-10)
    for i, lin in enumerate(linears, start=1):
        close(model.params[f"W{i}"], lin.weight.detach().numpy().T)
    for i, bn in enumerate(bns, start=1):
        close(model.running[f"running_mean{i}"], bn.running_mean.numpy())
        close(model.running[f"running_var{i}"], bn.running_var.numpy())
        close(model.params[f"gamma{i}"], bn.weight.detach().numpy())
    net.eval()  # evaluation mode: running statistics on both sides
    with torch.no_grad():
        eval_theirs = net(torch.from_numpy(x)).numpy()
    eval_ours, _ = model.forward(x, train=False)
    close(eval_ours, eval_theirs)


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam"])
def test_optimizer_parity_relu_bn_before(name: str) -> None:
    _run_both(name)


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam"])
def test_optimizer_parity_with_weight_decay_on_weights_only(name: str) -> None:
    _run_both(name, weight_decay=0.01)


@pytest.mark.parametrize("bn_position", ["before", "after"])
def test_tanh_and_bn_position_parity(bn_position: str) -> None:
    _run_both("adam", "tanh", bn_position)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_label_smoothing_parity(name: str) -> None:
    _run_both(name, weight_decay=0.005, smoothing=0.1)
