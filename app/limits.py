"""Memory limits of a run and of a worker process (settings ``max_run_memory`` and
``worker_address_space``), with defaults from the machine.

A run's estimated memory (engine/memory.py) is checked against ``run_memory_limit`` when it is
created; each worker caps its own address space (RLIMIT_AS) at ``address_space_cap`` so a run
that still outgrows the estimate gets a MemoryError, recorded as the run's error, instead of the
kernel's SIGKILL, which would leave the run to kill the next worker too.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from app.settings import Settings

log = logging.getLogger(__name__)

# Share of the machine's RAM that the runs of all workers may need together, by default.
DEFAULT_RAM_SHARE = 0.5
# Address space a worker uses besides its run: the interpreter, NumPy, SciPy/sklearn, OpenBLAS
# buffers, SQLAlchemy, thread stacks and malloc arenas. A worker's idle VmSize is ~0.45 GiB.
PROCESS_HEADROOM = 2 * 2**30


# A container's memory limit (cgroup v2, then v1): in Docker the machine's RAM is not ours.
CGROUP_LIMIT_FILES = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)


def physical_memory() -> int | None:
    """Bytes of RAM this process may use: the machine's, or its container's limit when lower;
    None where the OS does not say."""
    try:
        ram: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        ram = None
    for path in CGROUP_LIMIT_FILES:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isascii() and text.isdigit():  # "max" means no limit
            limit = int(text)
            ram = limit if ram is None else min(ram, limit)
        break
    return ram


def run_memory_limit(settings: Settings) -> int | None:
    """Bytes one run may need: the setting, else half the RAM split between the workers (at
    least one: the workers may run elsewhere); None when unknown (no limit)."""
    if settings.max_run_memory is not None:
        return settings.max_run_memory
    ram = physical_memory()
    if ram is None:
        return None
    return int(ram * DEFAULT_RAM_SHARE / max(settings.workers, 1))


def address_space_cap(settings: Settings) -> int | None:
    """RLIMIT_AS for a worker: the setting (0: none), else the run limit plus headroom."""
    if settings.worker_address_space is not None:
        return settings.worker_address_space or None
    limit = run_memory_limit(settings)
    return None if limit is None else limit + PROCESS_HEADROOM


def cap_address_space(cap: int | None) -> None:
    """Lower this process's soft RLIMIT_AS to ``cap`` bytes (never above the hard limit)."""
    if cap is None:
        return
    try:
        import resource
    except ImportError:  # not on POSIX: nothing to cap with
        log.warning("no resource module: the worker's address space is not capped")
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    log.info("worker address space capped at %d bytes (was %s)", cap, soft)
