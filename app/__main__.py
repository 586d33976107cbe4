"""``python -m app ...``: the same as the ``pandamode`` console script."""

import sys

from app.cli import main

sys.exit(main())
