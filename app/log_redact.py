"""Keep the access token out of logs: uvicorn's access log records every query string.

``pandamode serve`` hands uvicorn ``uvicorn_log_config()``: uvicorn's own logging setup with
``RedactTokens`` on both of its handlers, so a visit to ``/?token=...`` is logged as
``/?token=[redacted]`` (and so is any other message that carries ``token=``).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

_TOKEN_PARAM = re.compile(r"(?i)\b(token=)[^&\s\"';#]+")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with the value of every ``token=`` parameter replaced by ``[redacted]``."""
    return _TOKEN_PARAM.sub(r"\g<1>" + REDACTED, text)


class RedactTokens(logging.Filter):
    """A logging filter that redacts ``token=`` values in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default ``LOGGING_CONFIG`` with ``RedactTokens`` on each of its handlers."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": RedactTokens}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_tokens")
    return config
