"""``python -m app.worker [--db URL]``: one worker process (what the supervisor starts)."""

from __future__ import annotations

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main(["worker", *sys.argv[1:]]))
