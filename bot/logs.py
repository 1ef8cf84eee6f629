"""Logging for the operator: GRIDBOT_LOG_LEVEL, GRIDBOT_LOG_FORMAT=text|json, quiet libraries.

Text lines are `2026-11-30 08:30:00,123 INFO gridbot: …`; JSON lines are one object a line
(`ts`, `level`, `logger`, `msg`, and `exc` when there is a traceback) for log collectors.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

# libraries that speak at INFO about every request or migration step: heard only from WARNING
QUIET = ("alembic", "aiogram.event", "aiogram.dispatcher", "httpx", "httpcore", "apscheduler", "telegram.ext",
         "aiohttp.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    quiet_libraries(level)


def quiet_libraries(level: str = "INFO") -> None:
    """Libraries log at WARNING and above unless GRIDBOT_LOG_LEVEL=DEBUG."""
    lib_level = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in QUIET:
        logging.getLogger(name).setLevel(lib_level)
