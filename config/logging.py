"""Logging: text or JSON lines, with the request id and the trace id in every line."""

from __future__ import annotations

import json
import logging
import logging.config
import re
from datetime import UTC, datetime
from typing import Any

from core.request_context import current_request_id, current_trace_id

# Attributes every LogRecord has; anything else was passed through `extra=` and is data.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id", "trace_id"}


class RequestIdFilter(logging.Filter):
    """Puts the request id and the W3C trace id (`core.tracing`) of the work in progress on
    the record: "-" outside a request or a traced piece of work."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        record.trace_id = current_trace_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "trace_id": getattr(record, "trace_id", "-"),
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators: anything a
# terminal or a log viewer may take for the end of a line or a command (ESC sequences).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Lines after the first (a traceback) start with this, so none can pass for a line of its own.
CONTINUATION = "    "


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_control_characters(text: str, *, keep_newlines: bool = False) -> str:
    """`\\n`, `\\r`, `\\t`, `\\x1b`, `\\u2028`... instead of the characters, so that data from a
    request (a chat id, a message id, a name) cannot end a log line and forge the next one."""
    return (_CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL).sub(_escaped, text)


TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] [%(trace_id)s] %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """`time level [request_id] [trace_id] logger: message key=value ...`: one line per record, whatever
    the message, its arguments and its extras hold (control characters are escaped); a
    traceback follows on indented lines."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        parts = [self.formatMessage(record)]
        parts += [f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")]
        line = escape_control_characters(" ".join(parts))
        details = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            details.append(record.exc_text)
        if record.stack_info:
            details.append(self.formatStack(record.stack_info))
        for detail in details:
            for detail_line in escape_control_characters(detail, keep_newlines=True).split("\n"):
                line += "\n" + CONTINUATION + detail_line
        return line


def configure_logging(*, level: str, fmt: str) -> None:
    formatter = {"()": JsonFormatter} if fmt == "json" else {"()": TextFormatter, "format": TEXT_FORMAT}
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"request_id": {"()": RequestIdFilter}},
            "formatters": {"default": formatter},
            "handlers": {
                "console": {"class": "logging.StreamHandler", "formatter": "default", "filters": ["request_id"]},
            },
            "root": {"handlers": ["console"], "level": level},
            "loggers": {
                # Django logs every 4xx/5xx with the full request line; our middleware and
                # views log what matters without query strings that could carry secrets.
                "django.request": {"level": "ERROR"},
                "django.server": {"level": "WARNING"},
                "pymongo": {"level": "WARNING"},
                "urllib3": {"level": "WARNING"},
            },
        }
    )
