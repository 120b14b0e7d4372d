"""Logging as JSON lines (one object per event, the `extra` fields included) or plain text,
for the agents, which run under a service manager that keeps stderr."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        return f"{record.levelname.lower():7} {record.getMessage()} {extra}".rstrip()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so `active()` can tell a program's logging from a test harness's."""


def setup(fmt: str, level: str = "INFO") -> None:
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonLines() if fmt == "json" else Text())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)


def active() -> bool:
    """Whether `setup` configured the root logger (so errors go out as log records)."""
    return any(isinstance(h, _Handler) for h in logging.getLogger().handlers)
