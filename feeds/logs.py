"""Structured logs: one JSON object per line and event, on stderr.

``log.info("job done", extra={"job": "build", "result": "..."})`` becomes
``{"time": "...", "level": "info", "logger": "feeds.scheduler", "event": "job done",
"job": "build", "result": "..."}``: easy to grep, easy for journald or a log shipper.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Attributes every record has, and uvicorn's terminal-colour copy of its message.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler logs every run at INFO in its own words; ours says the same, structured.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    # Its executor also logs each failed or missed run; our job listener logs them once,
    # structured, with the traceback.
    logging.getLogger("apscheduler.executors").setLevel(logging.CRITICAL)
