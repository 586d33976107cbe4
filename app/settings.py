"""Typed settings, read once from ``PANDAMODE_*`` environment variables and CLI flags.

Everything tunable lives here so the web process, the worker subprocesses it starts and the
headless ``pandamode train`` agree on one set of values: the supervisor hands them to its children
through the environment (see ``Settings.to_env``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.hosts import AllowedHosts

DB_FILE_NAME = "pandamode.db"


class Settings(BaseSettings):
    """All of pandamode's configuration; one comment per field says what it is for."""

    model_config = SettingsConfigDict(env_prefix="PANDAMODE_", extra="ignore")

    # Address the web server binds to; loopback means no token is needed.
    host: str = "127.0.0.1"
    # TCP port of the web server.
    port: int = Field(default=8000, ge=0, le=65535)
    # Directory for the SQLite file and the only place dataset paths may point into.
    data_dir: Path = Path("pandamode-data")
    # SQLAlchemy URL; empty means a SQLite file in data_dir.
    db_url: str | None = None
    # Secret for changing requests when bound off loopback; generated at start when empty.
    token: str | None = None
    # Extra Host names the server answers to, comma-separated (``name``, ``name:port``,
    # ``*.domain`` or ``*`` for any): loopback names and the bind address are always allowed;
    # any other Host gets 403, which stops DNS rebinding (see app/hosts.py).
    allowed_hosts: str = ""
    # Off loopback, reads need the token too unless this opens them deliberately (/healthz is
    # always open).
    open_reads: bool = False
    # Number of worker processes `serve` starts (0: start none, e.g. when workers run elsewhere).
    workers: int = Field(default=1, ge=0, le=64)
    # Seconds between metric flushes; each flush is one transaction.
    flush_interval: float = Field(default=0.05, gt=0)
    # Flush early once this many metric rows are buffered.
    flush_rows: int = Field(default=200, ge=1)
    # Seconds between polls of the commands table while training (time-based, not per step).
    command_poll: float = Field(default=0.05, gt=0)
    # Write a checkpoint every this many steps (0 disables the step trigger).
    checkpoint_every_steps: int = Field(default=500, ge=0)
    # Write a checkpoint every this many seconds (0 disables the time trigger).
    checkpoint_every_seconds: float = Field(default=30.0, ge=0)
    # Keep this many newest checkpoints of a run; older ones are thinned out (see the next).
    checkpoint_keep_recent: int = Field(default=10, ge=1)
    # Older checkpoints survive thinning when their step is a multiple of this (0: keep all).
    checkpoint_keep_every_steps: int = Field(default=5000, ge=0)
    # A claimed run is held for this long without a heartbeat before another worker may take it.
    lease_seconds: float = Field(default=15.0, gt=0)
    # Seconds an idle worker sleeps between attempts to claim a run.
    claim_interval: float = Field(default=0.2, gt=0)
    # A paused run is handed back after this many idle seconds when another run is queued.
    release_paused_after: float = Field(default=5.0, ge=0)
    # BLAS threads per worker; pinned because the engine is only bit-exact for a fixed count.
    blas_threads: int = Field(default=1, ge=1)
    # Seconds between database polls of each live-stream tail.
    stream_poll: float = Field(default=0.1, gt=0)
    # Metric rows per SSE message when sending a backlog.
    stream_chunk_rows: int = Field(default=2000, ge=1)
    # Use SQLite's WAL journal; turn off on network filesystems where WAL does not work.
    sqlite_wal: bool = True
    # Seconds uvicorn waits for open streams on shutdown; also the workers' grace on stop.
    shutdown_grace: float = Field(default=3.0, ge=0)
    # Bytes a run may need (engine/memory.py estimates it when the run is created): bigger configs
    # are refused with a 422. None: half the machine's RAM divided by the workers (app/limits.py).
    max_run_memory: int | None = Field(default=None, ge=1)
    # Address-space cap (RLIMIT_AS, bytes) of each worker process, so a run that slips past the
    # estimate fails with MemoryError instead of the kernel's SIGKILL. None: the run limit plus
    # room for the interpreter and libraries; 0: no cap.
    worker_address_space: int | None = Field(default=None, ge=0)
    # A run whose worker dies this many times in a row without progress is marked failed.
    max_run_crashes: int = Field(default=3, ge=1)

    @property
    def database_url(self) -> str:
        """The URL to connect to: db_url, or the SQLite file inside data_dir."""
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / DB_FILE_NAME).resolve()}"

    @property
    def needs_token(self) -> bool:
        """True when bound to anything but loopback, where changing requests need the token."""
        return not is_loopback(self.host)

    @property
    def reads_need_token(self) -> bool:
        """True off loopback unless ``open_reads``: reads show configs, paths and errors."""
        return self.needs_token and not self.open_reads

    @field_validator("allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, value: str) -> str:
        AllowedHosts.from_setting("127.0.0.1", value)  # raises ValueError naming the bad entry
        return value

    @field_validator("max_run_memory", "worker_address_space", mode="before")
    @classmethod
    def _bytes(cls, value: object) -> object:
        """Sizes may be written ``8G``, ``8GiB``, ``512M`` or ``1.5T`` (binary units) as well."""
        return parse_bytes(value) if isinstance(value, str) else value

    def to_env(self) -> dict[str, str]:
        """The settings as PANDAMODE_* variables, so a child process rebuilds the same Settings."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None or name == "token":  # workers never need the web token
                continue
            key = f"PANDAMODE_{name.upper()}"
            env[key] = str(value).lower() if isinstance(value, bool) else str(value)
        env["PANDAMODE_DB_URL"] = self.database_url
        env["PANDAMODE_DATA_DIR"] = str(self.data_dir.resolve())
        return env


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(text: str) -> int:
    """``"8G"`` / ``"8GiB"`` / ``"8 GB"`` -> 8 * 2**30 (binary units); a bare number is bytes."""
    raw = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (raw[:-1], raw[-1]) if raw and raw[-1] in _UNITS else (raw, "")
    try:
        value = float(number.strip())
    except ValueError:
        raise ValueError(f"not a size: {text!r} (bytes, or e.g. 512M, 8G)") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"not a size: {text!r}")
    return int(value * _UNITS[unit])


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
