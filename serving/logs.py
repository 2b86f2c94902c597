"""Structured (one JSON object per line) and quiet logging for the server.

Quiet means lifecycle events only: start, model loaded or refused, errors. Per-request
lines (uvicorn's access log, kserve's latency trace) stay off unless asked for, because at
thousands of requests per second they cost more than the requests.
"""

from __future__ import annotations

import logging
import logging.config
from datetime import datetime, timezone
from typing import Any

import orjson

# LogRecord attributes that are not user extras (color_message: uvicorn's ANSI copy of msg).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName", "color_message",
}


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "msg", ...extras, "exc"} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """One log record as one JSON line: ts (UTC), level, logger, msg, the record's extra fields, exc.

        Args:
            record: the log record.

        Returns:
            The JSON text, without a newline.
        """
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


def log_config(level: str = "INFO", access_log: bool = False) -> dict[str, Any]:
    """A logging.config dict for this process and kserve's worker processes.

    Args:
        level: the level of this server's and kserve's loggers (SERVING_LOG_LEVEL, checked by serving.settings).
        access_log: whether per-request lines (uvicorn.access, kserve.trace) are logged (SERVING_ACCESS_LOG).

    Returns:
        The dict for logging.config.dictConfig.
    """
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


def configure(level: str = "INFO", access_log: bool = False) -> dict[str, Any]:
    """Set up this process's logging as log_config() describes.

    Args:
        level: the root level name (DEBUG, INFO, WARNING, ...).
        access_log: log a line per HTTP request (uvicorn's access log).

    Returns:
        The logging dict config, for the worker processes to apply too.
    """
    config = log_config(level, access_log)
    logging.config.dictConfig(config)
    logging.captureWarnings(True)  # a warning becomes one structured line, not raw stderr
    return config
