"""Engine vs PyTorch: one float32 training step (forward, backward, Adam), side by side.

    .venv/bin/python bench/engine_vs_torch.py [--steps 200] [--warmup 30] [--threads N]

Both run in this process on the same thread count: torch is limited to the number of threads
NumPy's BLAS uses (read with threadpoolctl), or both to --threads (a pandamode worker runs its
BLAS on PANDAMODE_BLAS_THREADS, 1 by default: `--threads 1` measures the engine as a worker runs
it). Engine and torch alternate in blocks of 20 steps so that machine noise hits both alike; the
times shown are medians over --steps steps (five times as many for the two small models, whose
steps are cheap) after --warmup, and the ratio is the median over rounds of the ratio of the two
blocks' medians in each round (see paired_ratio). The big model's achieved GFLOP/s is compared
with a plain 1024x1024 float32 matmul raced in the same blocks, and its step is split into the
matrix products (timed alone, same shapes and layouts) and the rest.
Peak memory is what tracemalloc sees allocated during one engine step (NumPy reports its array
buffers to tracemalloc), with the step's buffers already warm.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from engine.model import MLP, ModelSpec
from engine.optim import adam, init_state
from engine.trainer import train_step

CASES = [  # (sizes, batch, target ratio, step multiplier: cheap steps get more samples)
    ((64, 128, 128, 10), 64, 0.5, 5),
    ((784, 256, 256, 10), 128, 0.8, 5),
    ((784, 1024, 1024, 10), 256, 1.0, 1),
]


def blas_threads() -> int:
    """Threads of the BLAS NumPy is linked against."""
    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return max((i["num_threads"] for i in infos), default=1)


def batches(sizes: tuple[int, ...], batch: int, n: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        (
            rng.standard_normal((batch, sizes[0]), dtype=np.float32),
            rng.integers(0, sizes[-1], size=batch),
        )
        for _ in range(n)
    ]


def engine_step(sizes: tuple[int, ...]) -> tuple[Callable[[np.ndarray, np.ndarray], None], MLP]:
    spec = ModelSpec(n_in=sizes[0], n_out=sizes[-1], hidden=sizes[1:-1], dtype="float32")
    model = MLP(spec, np.random.default_rng(0))
    state = init_state("adam", model.theta)
    update = partial(adam, beta1=0.9, beta2=0.999, eps=1e-8)

    def step(x: np.ndarray, y: np.ndarray) -> None:
        train_step(model, update, state, x, y, lr=1e-3)

    return step, model


def torch_step(sizes: tuple[int, ...]) -> Callable[[torch.Tensor, torch.Tensor], None]:
    mods: list[torch.nn.Module] = []
    for i in range(1, len(sizes)):
        mods.append(torch.nn.Linear(sizes[i - 1], sizes[i]))
        if i < len(sizes) - 1:
            mods += [torch.nn.BatchNorm1d(sizes[i]), torch.nn.ReLU()]
    net = torch.nn.Sequential(*mods)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    return step


def timed(fn: Callable[..., None], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


@dataclass
class Timing:
    """Seconds per call of one contender: median and fastest over every call, and each block's
    median (blocks are the unit of pairing between contenders)."""

    median: float
    fastest: float
    block_medians: list[float]


def race(
    contenders: list[Callable[[int], None]], steps: int, warmup: int, block: int = 20
) -> list[Timing]:
    """Time each contender in alternating blocks of `block` calls until each made `steps`.

    Blocks, not single calls: each library keeps its own worker threads (OpenBLAS, OpenMP) that
    spin for a while after a call; strict alternation on 2 cores makes each pay for the other's
    spinning. A short pause before each block lets the idle pool go to sleep first. Machine noise
    (other processes) then hits every contender alike.
    """
    for fn in contenders:
        for j in range(warmup):
            fn(j)
    blocks: list[list[list[float]]] = [[] for _ in contenders]
    while sum(map(len, blocks[0])) < steps:
        for fn, record in zip(contenders, blocks, strict=True):
            time.sleep(0.02)
            record.append([timed(fn, j) for j in range(block)])
    timings = []
    for record in blocks:
        every = [t for b in record for t in b]
        medians = [statistics.median(b) for b in record]
        timings.append(Timing(statistics.median(every), min(every), medians))
    return timings


def paired_ratio(ours: Timing, theirs: Timing) -> float:
    """Median over rounds of (our block's median / their block's median in the same round).

    The two blocks of a round ran a fraction of a second apart, so a neighbour's burst of load
    that spans them cancels in their ratio; a ratio of whole-run medians lets a burst that
    happened to land on one side's blocks move the figure.
    """
    pairs = zip(ours.block_medians, theirs.block_medians, strict=True)
    return statistics.median(a / b for a, b in pairs)


def contenders(sizes: tuple[int, ...], batch: int) -> list[Callable[[int], None]]:
    """An engine step and a torch step on the same batches, each called with a step index."""
    data = batches(sizes, batch)
    tdata = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
    ours, _ = engine_step(sizes)
    theirs = torch_step(sizes)
    return [
        lambda j: ours(*data[j % len(data)]),
        lambda j: theirs(*tdata[j % len(tdata)]),
    ]


def matmul_reference(n: int = 1024) -> Callable[[int], None]:
    """A plain float32 n x n matmul into a preallocated output: the BLAS's best case."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)

    def product(j: int) -> None:
        np.matmul(a, b, out=out)

    return product


def engine_products(sizes: tuple[int, ...], batch: int) -> Callable[[int], None]:
    """Only the matrix products of an engine step, in the engine's memory layouts: x @ W forward,
    a.T @ dz for every weight gradient, dz @ W.T for every input gradient but the first."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
    acts = [x] + [np.empty((batch, n), dtype=np.float32, order="F") for n in sizes[1:]]
    weights = [
        np.asfortranarray(rng.standard_normal(pair, dtype=np.float32))
        for pair in itertools.pairwise(sizes)
    ]
    grads = [np.empty_like(w, order="F") for w in weights]
    dxs = [np.empty_like(a, order="F") for a in acts[:-1]]

    def products(j: int) -> None:
        for i, w in enumerate(weights):
            np.matmul(acts[i], w, out=acts[i + 1])
        for i in range(len(weights) - 1, -1, -1):
            np.matmul(acts[i].T, acts[i + 1], out=grads[i])
            if i:
                np.matmul(acts[i + 1], weights[i].T, out=dxs[i])

    return products


def torch_products(sizes: tuple[int, ...], batch: int) -> Callable[[int], None]:
    """The same products as torch.nn.Linear's forward and backward compute them."""
    gen = torch.Generator().manual_seed(0)
    acts = [torch.randn(batch, sizes[0], generator=gen)]
    weights = [torch.randn(o, i, generator=gen) for i, o in itertools.pairwise(sizes)]
    biases = [torch.zeros(o) for o in sizes[1:]]

    def products(j: int) -> None:
        with torch.no_grad():
            outs = list(acts)
            for w, b in zip(weights, biases, strict=True):
                outs.append(torch.addmm(b, outs[-1], w.t()))
            for i in range(len(weights) - 1, -1, -1):
                outs[i + 1].t().mm(outs[i])
                if i:
                    outs[i + 1].mm(weights[i])

    return products


def step_flops(sizes: tuple[int, ...], batch: int) -> float:
    """Matmul FLOPs of a step: forward, dW for every layer, dx for all but the first."""
    pairs = [a * b for a, b in itertools.pairwise(sizes)]
    return 2.0 * batch * (2 * sum(pairs) + sum(pairs[1:]))


def peak_step_memory(sizes: tuple[int, ...], batch: int) -> tuple[int, int]:
    """(peak bytes allocated during one warm engine step, bytes of parameters)."""
    step, model = engine_step(sizes)
    x, y = batches(sizes, batch, n=1)[0]
    step(x, y)
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    step(x, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base, model.theta.nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="x5 for the two small models")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--threads", type=int, help="BLAS and torch threads (default: BLAS's)")
    args = parser.parse_args()
    if args.threads is not None:
        threadpool_limits(limits=args.threads, user_api="blas")
    threads = blas_threads()
    torch.set_num_threads(threads)
    print(f"numpy {np.__version__}, torch {torch.__version__}, threads {threads} (BLAS = torch)")
    print(
        f"{'model':<20}{'batch':>6}{'engine ms':>11}{'torch ms':>10}{'ratio':>7}{'target':>8}"
        f"{'peak KiB':>10}{'params KiB':>12}"
    )
    for sizes, batch, target, more in CASES:
        racers = contenders(sizes, batch)
        big = sizes == CASES[-1][0]
        if big:  # raced alongside, so they see the same noise
            racers += [
                matmul_reference(),
                engine_products(sizes, batch),
                torch_products(sizes, batch),
            ]
        timings = race(racers, args.steps * more, args.warmup)
        ours, theirs = timings[0].median, timings[1].median
        ratio = paired_ratio(timings[0], timings[1])
        peak, params = peak_step_memory(sizes, batch)
        name = "-".join(map(str, sizes))
        ok = "ok" if ratio <= target else "MISS"
        print(
            f"{name:<20}{batch:>6}{ours * 1e3:>11.3f}{theirs * 1e3:>10.3f}"
            f"{ratio:>7.2f}{'<= ' + str(target):>8}{peak / 1024:>10.1f}"
            f"{params / 1024:>12.1f}  {ok}"
        )
        if big:
            achieved = step_flops(sizes, batch) / ours / 1e9
            reference = 2.0 * 1024**3 / timings[2].median / 1e9
            print(
                f"{name} step: {achieved:.1f} GFLOP/s achieved; 1024x1024 float32 matmul: "
                f"{reference:.1f} GFLOP/s; fraction {achieved / reference:.0%} (aim >= 70%)"
            )
            ours_mm, theirs_mm = timings[3].median, timings[4].median
            print(
                f"{name} where the time goes: matrix products {ours_mm * 1e3:.1f} ms engine, "
                f"{theirs_mm * 1e3:.1f} ms torch; the rest {(ours - ours_mm) * 1e3:.1f} ms engine "
                f"(NumPy, one core), {(theirs - theirs_mm) * 1e3:.1f} ms torch "
                f"({threads} thread(s))"
            )


if __name__ == "__main__":
    main()
