"""Log output for the command line: one JSON object per record, with the ``extra`` fields.

The engine logs through the standard ``logging`` module under the ``policy_engine`` logger tree
and attaches structured fields (``schema``, ``track``, ``mode``, ``action``, ``rule``, ``checksum``,
``violation_count``, ...) to records as ``extra``. ``JsonLogFormatter`` writes them out, so a
log pipeline can index them; use it in your own handlers too:

>>> import logging
>>> handler = logging.StreamHandler()
>>> handler.setFormatter(JsonLogFormatter())
>>> logging.getLogger("policy_engine").addHandler(handler)
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

#: Attributes every ``LogRecord`` has; anything else on a record came from ``extra``.
_STANDARD = frozenset(
    {
        *logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__,
        "message",
        "asctime",
        "taskName",
    }
)


class JsonLogFormatter(logging.Formatter):
    """Formats a record as one line of JSON: ``time``, ``level``, ``logger``, ``message``, then
    every ``extra`` field, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line."""
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in data:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str)


__all__ = ["JsonLogFormatter"]
