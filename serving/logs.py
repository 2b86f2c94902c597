"""Structured (one JSON object per line) and quiet logging for the server.

Quiet means lifecycle events only: start, model loaded or refused, errors. Per-request
lines (uvicorn's access log, kserve's latency trace) stay off unless asked for, because at
thousands of requests per second they cost more than the requests.
"""

from __future__ import annotations

import logging
import logging.config
import os
from datetime import datetime, timezone
from typing import Any

import orjson

from serving.switches import switch

LEVEL_ENV = "SERVING_LOG_LEVEL"  # DEBUG, INFO (default), WARNING, ERROR
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ACCESS_LOG_ENV = "SERVING_ACCESS_LOG"  # on (1/true/yes/on): one line per request (uvicorn.access, kserve.trace)
# LogRecord attributes that are not user extras (color_message: uvicorn's ANSI copy of msg).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName", "color_message",
}


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "msg", ...extras, "exc"} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_"))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class LogConfigError(ValueError):
    """SERVING_LOG_LEVEL or SERVING_ACCESS_LOG has a value this server does not know."""


def log_config(level: str | None = None, access_log: bool | None = None) -> dict[str, Any]:
    """A logging.config dict for this process and kserve's worker processes; LogConfigError for a bad setting."""
    raw = level or os.environ.get(LEVEL_ENV, "").strip() or "INFO"
    level = raw.upper()
    if level not in LEVELS:
        raise LogConfigError(f"{LEVEL_ENV}={raw!r} is invalid: expected one of {', '.join(LEVELS)}")
    if access_log is None:
        access_log = switch(os.environ, ACCESS_LOG_ENV, LogConfigError, default=False)
    per_request = "INFO" if access_log else "WARNING"
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"json": handler},
        "root": {"handlers": ["json"], "level": level},
        "loggers": {
            # kserve and uvicorn bring their own handlers; route them through ours instead.
            name: {"handlers": ["json"], "level": lvl, "propagate": False}
            for name, lvl in {
                "kserve": level, "kserve_storage": level, "uvicorn": level, "uvicorn.error": level,
                "kserve.trace": per_request, "uvicorn.access": per_request,
                "botocore": "WARNING", "boto3": "WARNING", "urllib3": "WARNING",
            }.items()
        },
    }


def configure(level: str | None = None, access_log: bool | None = None) -> dict[str, Any]:
    config = log_config(level, access_log)
    logging.config.dictConfig(config)
    logging.captureWarnings(True)  # a warning becomes one structured line, not raw stderr
    return config
