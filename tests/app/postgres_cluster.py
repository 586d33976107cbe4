"""A throwaway PostgreSQL cluster for the test session, started with the server's own tools.

PostgreSQL 15's ``initdb`` and ``pg_ctl`` are on these machines (and on CI's), but no server
runs; the cluster lives in a temp dir, listens only on a Unix socket there (no TCP port to clash
with), trusts local connections, and is stopped and deleted at the end. PostgreSQL refuses to run
as root, so as root the cluster belongs to the ``postgres`` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN = Path(os.environ.get("PANDAMODE_PG_BIN", "/usr/lib/postgresql/15/bin"))
PORT = 54329  # only names the socket file; nothing listens on TCP


def _as_owner(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Yield a SQLAlchemy URL of an empty database in a fresh cluster; stop and delete it after."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"PostgreSQL's initdb not found under {PG_BIN} (set PANDAMODE_PG_BIN)")
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="pandamode-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if user:
        entry = pwd.getpwnam(user)
        for path in (root, sock):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    run = subprocess.run
    try:
        run(
            _as_owner(
                [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"], user
            ),
            check=True,
            capture_output=True,
        )
        options = f"-c listen_addresses='' -k {sock} -p {PORT} -c fsync=off"
        run(
            _as_owner(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-w",
                    "-l",
                    str(root / "log"),
                    "start",
                ],
                user,
            ),
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql+psycopg://postgres@/postgres?host={sock}&port={PORT}"
        finally:
            run(
                _as_owner(
                    [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], user
                ),
                capture_output=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
