"""Engine vs PyTorch: one float32 training step (forward, backward, Adam), side by side.

    .venv/bin/python bench/engine_vs_torch.py [--steps 200] [--warmup 30]

Both run in this process on the same thread count: torch is limited to the number of threads
NumPy's BLAS uses (read with threadpoolctl). Steps alternate engine / torch so that machine noise
hits both alike; the figure is the median step time over --steps steps after --warmup. The big
model's achieved GFLOP/s is compared with a plain 1024x1024 float32 matmul on the same BLAS.
Peak memory is what tracemalloc sees allocated during one engine step (NumPy reports its array
buffers to tracemalloc), with the step's buffers already warm.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from threadpoolctl import threadpool_info

from engine.model import MLP, ModelSpec
from engine.optim import adam, init_state
from engine.trainer import train_step

CASES = [  # (sizes, batch, target ratio)
    ((64, 128, 128, 10), 64, 0.5),
    ((784, 256, 256, 10), 128, 0.8),
    ((784, 1024, 1024, 10), 256, 1.0),
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


def compare(
    sizes: tuple[int, ...], batch: int, steps: int, warmup: int, block: int = 20
) -> tuple[float, float]:
    """Median seconds per step (engine, torch), in alternating blocks of `block` steps.

    Blocks, not single steps: each library keeps its own worker threads (OpenBLAS, OpenMP) that
    spin for a while after a call; strict alternation on 2 cores makes each pay for the other's
    spinning. A short pause between blocks lets the idle pool go to sleep first.
    """
    data = batches(sizes, batch)
    tdata = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
    ours, _ = engine_step(sizes)
    theirs = torch_step(sizes)
    for j in range(warmup):
        ours(*data[j % len(data)])
        theirs(*tdata[j % len(data)])
    t_ours: list[float] = []
    t_theirs: list[float] = []
    while len(t_ours) < steps:
        for fn, inputs, times in ((ours, data, t_ours), (theirs, tdata, t_theirs)):
            time.sleep(0.02)
            times += [timed(fn, *inputs[j % len(inputs)]) for j in range(block)]
    return statistics.median(t_ours), statistics.median(t_theirs)


def step_flops(sizes: tuple[int, ...], batch: int) -> float:
    """Matmul FLOPs of a step: forward, dW for every layer, dx for all but the first."""
    pairs = [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return 2.0 * batch * (2 * sum(pairs) + sum(pairs[1:]))


def matmul_gflops(n: int = 1024, reps: int = 30) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    times = [timed(partial(np.matmul, a, b, out=out)) for _ in range(reps + 5)][5:]
    return 2.0 * n**3 / statistics.median(times) / 1e9


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
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    threads = blas_threads()
    torch.set_num_threads(threads)
    print(f"numpy {np.__version__}, torch {torch.__version__}, threads {threads} (BLAS = torch)")
    print(f"{'model':<20}{'batch':>6}{'engine ms':>11}{'torch ms':>10}{'ratio':>7}{'target':>8}"
          f"{'peak KiB':>10}{'params KiB':>12}")  # fmt: skip
    gflops = 0.0
    for sizes, batch, target in CASES:
        ours, theirs = compare(sizes, batch, args.steps, args.warmup)
        peak, params = peak_step_memory(sizes, batch)
        name = "-".join(map(str, sizes))
        ok = "ok" if ours / theirs <= target else "MISS"
        print(f"{name:<20}{batch:>6}{ours * 1e3:>11.3f}{theirs * 1e3:>10.3f}"
              f"{ours / theirs:>7.2f}{'<= ' + str(target):>8}{peak / 1024:>10.1f}"
              f"{params / 1024:>12.1f}  {ok}")  # fmt: skip
        gflops = step_flops(sizes, batch) / ours / 1e9
    reference = matmul_gflops()
    print(f"784-1024-1024-10 step: {gflops:.1f} GFLOP/s achieved; 1024x1024 float32 matmul: "
          f"{reference:.1f} GFLOP/s; fraction {gflops / reference:.0%} (aim >= 70%)")  # fmt: skip


if __name__ == "__main__":
    main()
