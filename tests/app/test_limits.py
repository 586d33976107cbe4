"""app/limits.py and the size settings: defaults from the machine, explicit values, units."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import limits
from app.settings import Settings, parse_bytes


def test_sizes_take_binary_units() -> None:
    assert parse_bytes("8G") == parse_bytes("8GiB") == parse_bytes("8 gb") == 8 * 2**30
    assert parse_bytes("512M") == 2**29 and parse_bytes("1000") == 1000
    assert Settings(max_run_memory="1.5G").max_run_memory == 3 * 2**29
    for bad in ("lots", "-1G", "inf", "G"):
        with pytest.raises(ValueError):
            parse_bytes(bad)


def test_the_run_limit_defaults_to_half_the_ram_per_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "physical_memory", lambda: 16 * 2**30)
    assert limits.run_memory_limit(Settings(data_dir=tmp_path, workers=2)) == 4 * 2**30
    assert limits.run_memory_limit(Settings(data_dir=tmp_path, workers=0)) == 8 * 2**30
    given = Settings(data_dir=tmp_path, max_run_memory="1G")
    assert limits.run_memory_limit(given) == 2**30
    assert limits.address_space_cap(given) == 2**30 + limits.PROCESS_HEADROOM
    assert limits.address_space_cap(Settings(worker_address_space=0)) is None
    assert limits.address_space_cap(Settings(worker_address_space="3G")) == 3 * 2**30
    monkeypatch.setattr(limits, "physical_memory", lambda: None)
    assert limits.run_memory_limit(Settings(data_dir=tmp_path)) is None


def test_the_real_machine_has_a_limit() -> None:
    ram = limits.physical_memory()
    assert ram is not None and ram > 2**28
    assert limits.run_memory_limit(Settings(workers=1)) == int(ram * limits.DEFAULT_RAM_SHARE)


def test_a_container_limit_below_the_ram_is_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cgroup = tmp_path / "memory.max"
    monkeypatch.setattr(limits, "CGROUP_LIMIT_FILES", (cgroup,))
    cgroup.write_text("max\n")
    unlimited = limits.physical_memory()
    cgroup.write_text(f"{2**30}\n")
    assert limits.physical_memory() == 2**30
    assert limits.run_memory_limit(Settings(data_dir=tmp_path, workers=1)) == 2**29
    cgroup.write_text(f"{2**62}\n")  # above the RAM: the RAM
    assert limits.physical_memory() == unlimited
