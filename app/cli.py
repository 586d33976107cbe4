"""``pandamode serve | train | worker``: the console script.

Bad input (a missing file, invalid JSON, an invalid config) is the user's to fix, so it gets one
clear line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.settings import Settings

log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """A user mistake: printed as one line, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pandamode",
        description="Babysit one neural network through its training, live, in a browser.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="the dashboard with its worker(s)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    _add_db_flags(serve)
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes to start (default: one per core; 0 starts none)",
    )
    serve.add_argument(
        "--allowed-hosts",
        help="extra Host names to answer to, comma-separated ('*' for any; loopback names and "
        "the bind address are always allowed)",
    )
    train = sub.add_parser("train", help="train one run headless, with a progress bar")
    train.add_argument("config", help="JSON file: a run config, or {name, config}")
    _add_db_flags(train)
    train.add_argument("--json", action="store_true", help="print final metrics as JSON")
    worker = sub.add_parser("worker", help="a worker alone, claiming queued runs")
    _add_db_flags(worker)
    worker.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    return parser


def _add_db_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--data-dir", help="data directory (default ./pandamode-data)")
    group.add_argument("--db", help="SQLAlchemy database URL (default: SQLite in the data dir)")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for flag, field in (
        ("host", "host"),
        ("port", "port"),
        ("data_dir", "data_dir"),
        ("db", "db_url"),
        ("workers", "workers"),
        ("allowed_hosts", "allowed_hosts"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    # Without --workers or PANDAMODE_WORKERS (Settings reads and checks it), one per core.
    explicit = "workers" in overrides or "PANDAMODE_WORKERS" in os.environ
    if args.command == "serve" and not explicit:
        overrides["workers"] = default_workers()
    try:
        return Settings(**overrides)
    except ValidationError as exc:  # one line per field, without pydantic's links
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise BadInput(f"invalid settings: {reasons}") from exc
    except ValueError as exc:
        raise BadInput(f"invalid settings: {exc}") from exc


def default_workers() -> int:
    """``serve``'s workers without --workers or PANDAMODE_WORKERS: one per core (each worker
    trains on one BLAS thread, so N workers on N cores do not fight), at most 64."""
    return max(1, min(os.cpu_count() or 1, 64))


def serve(settings: Settings) -> int:
    """Run the dashboard (one uvicorn process) and its workers until interrupted."""
    import uvicorn

    from app.banner import banner
    from app.log_redact import uvicorn_log_config
    from app.main import create_app

    generated = settings.needs_token and not settings.token
    if generated:
        settings = settings.model_copy(update={"token": secrets.token_urlsafe(24)})
    print("\n".join(banner(settings, generated_token=generated)), flush=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        workers=1,
        timeout_graceful_shutdown=int(max(settings.shutdown_grace, 1)),
        log_level="info",
        log_config=uvicorn_log_config(),  # the access log keeps ?token= values out
    )
    return 0


def worker(settings: Settings, parent_pid: int | None = None) -> int:
    """Run one worker process until SIGTERM/SIGINT (or, if given, until its parent is gone).

    Its address space is capped first (app/limits.py), before NumPy and BLAS load under the cap,
    so a run too big for the machine fails with MemoryError rather than a SIGKILL."""
    from app.limits import address_space_cap, cap_address_space

    cap_address_space(address_space_cap(settings))
    from app.db import Database
    from app.worker.loop import Worker

    db = Database(settings.database_url, wal=settings.sqlite_wal)
    db.create_all()
    w = Worker(db, settings)
    w.install_signal_handlers()
    if parent_pid is not None:
        w.stop_when_orphaned(parent_pid)
    try:
        w.run_forever()
    finally:
        db.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pandamode`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.command == "train" else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = _settings(args)
        if args.command == "serve":
            return serve(settings)
        if args.command == "worker":
            return worker(settings, args.parent_pid)
        from app.headless import train

        return train(settings, Path(args.config), as_json=args.json)
    except BadInput as exc:
        print(f"pandamode: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
