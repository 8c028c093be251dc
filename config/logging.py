"""Logging: text or JSON lines, with the request id and the trace id in every line.

`configure_logging` installs the defaults (one stdout handler), merged with the operator's own
`logging.config.dictConfig` file when LOG_CONFIG names one. Whatever handlers that file adds,
every handler gets the request-id filter and the query-string redaction, and writes through a
formatter that escapes control and bidirectional characters (ours, or the file's own wrapped
in `EscapingFormatter`)."""

from __future__ import annotations

import json
import logging
import logging.config
import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
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


# A URL or an absolute path with a query string: `https://host/p?a=1`, `/api/x?key=abc`.
_URL_QUERY = re.compile(r"""((?:https?://|(?<![^\s"'(<=])/)[^\s?#"'<>]*)\?([^\s#"'<>]*)""")
_QUERY_VALUE = re.compile(r"=[^&;]*")


def redact_query_values(text: str) -> str:
    """`/p?key=abc&x=1` -> `/p?key=&x=`: which parameters a URL had, never their values (a
    one-time reveal key, a token a client put in a URL)."""
    if "?" not in text:
        return text
    return _URL_QUERY.sub(lambda m: f"{m.group(1)}?{_QUERY_VALUE.sub('=', m.group(2))}", text)


def _redacted(value: Any) -> Any:
    return redact_query_values(value) if isinstance(value, str) else value


class RedactFilter(logging.Filter):
    """Takes query-string values out of what a record will print. Django's `django.request`
    passes the request itself (`extra={"request": ...}`), whose repr holds the full URL; it
    becomes `METHOD /path`. URLs in the message, its arguments and string extras keep their
    parameter names only."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        if request is not None and not isinstance(request, str) and hasattr(request, "path"):
            record.request = f"{getattr(request, 'method', '') or ''} {request.path}".strip()
        if isinstance(record.msg, str):
            record.msg = redact_query_values(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _redacted(value) for key, value in record.args.items()}
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and not key.startswith("_") and isinstance(value, str):
                setattr(record, key, redact_query_values(value))
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
        # ensure_ascii (the default): control and bidirectional characters become \uXXXX.
        return json.dumps(data, default=str)


# C0 and C1 control characters, DEL, the Unicode line and paragraph separators (anything a
# terminal or a log viewer may take for the end of a line or a command: ESC sequences), and the
# bidirectional controls (U+061C, U+200E/F, U+202A-E, U+2066-9), which reorder what a viewer
# shows ("Trojan Source"): a value could display as another field.
_BIDI_AND_SEPARATORS = "\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069"
_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}]")
_CONTROL_BUT_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Lines after the first (a traceback) start with this, so none can pass for a line of its own.
CONTINUATION = "    "


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def _escaped_json_safe(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"\\u{ord(char):04x}"


def escape_control_characters(text: str, *, keep_newlines: bool = False) -> str:
    """`\\n`, `\\r`, `\\t`, `\\x1b`, `\\u2028`, `\\u202e`... instead of the characters, so that
    data from a request (a chat id, a message id, a name) can neither end a log line and forge
    the next one nor reorder what a viewer shows."""
    return (_CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL).sub(_escaped, text)


def _needs_quotes(value: str) -> bool:
    return not value or '"' in value or "=" in value or any(char.isspace() for char in value)


def log_value(value: object) -> str:
    """An extra's value as the text format writes it after `key=`: as it is when it is one
    plain word; otherwise in double quotes, with `\\` and `"` escaped, so that a value such as
    `m1 outcome=duplicate` cannot pass for more fields. (Control characters are escaped by the
    caller, over the whole line.)"""
    text = str(value)
    if not _needs_quotes(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _indent_details(line: str, details: list[str]) -> str:
    for detail in details:
        for detail_line in escape_control_characters(detail, keep_newlines=True).split("\n"):
            line += "\n" + CONTINUATION + detail_line
    return line


TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] [%(trace_id)s] %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """`time level [request_id] [trace_id] logger: message key=value key="two words" ...`: one
    line per record, whatever the message, its arguments and its extras hold (control and
    bidirectional characters escaped, values with spaces, `=` or quotes quoted); a traceback
    follows on indented lines."""

    def __init__(self, fmt: str | None = TEXT_FORMAT, *args: Any, **kwargs: Any) -> None:
        super().__init__(fmt, *args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        parts = [self.formatMessage(record)]
        parts += [
            f"{k}={log_value(v)}" for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")
        ]
        line = escape_control_characters(" ".join(parts))
        details = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            details.append(record.exc_text)
        if record.stack_info:
            details.append(self.formatStack(record.stack_info))
        return _indent_details(line, details)


class EscapingFormatter(logging.Formatter):
    """Wraps a formatter of the operator's LOG_CONFIG file that is not one of ours. It formats a
    copy of the record whose message and string extras have their control and bidirectional
    characters escaped, so a message stays on its line; whatever else the output holds is
    escaped too (as `\\uXXXX`, which JSON reads as well), and the lines of a traceback are
    indented, so nothing a client sent can start a line."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(vars(record))
        safe.msg, safe.args = escape_control_characters(record.getMessage()), None
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and isinstance(value, str):
                setattr(safe, key, escape_control_characters(value))
        text = _CONTROL_BUT_NEWLINE.sub(_escaped_json_safe, self.inner.format(safe))
        if safe.exc_text and not record.exc_text:
            record.exc_text = safe.exc_text  # formatted once, as logging.Formatter caches it
        return text.replace("\n", "\n" + CONTINUATION)


_SAFE_FORMATTERS = (TextFormatter, JsonFormatter, EscapingFormatter)
# Filters every handler gets, whatever configured it.
_HANDLER_FILTERS = ("request_id", "redact")


class LogConfigError(Exception):
    """LOG_CONFIG names a file that cannot be used; the message is one line that names it."""


def default_config(*, level: str, fmt: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}, "redact": {"()": RedactFilter}},
        "formatters": {
            # `text` and `json` for the operator's handlers; `default` is the one LOG_FORMAT picks.
            "default": {"()": JsonFormatter} if fmt == "json" else {"()": TextFormatter},
            "text": {"()": TextFormatter},
            "json": {"()": JsonFormatter},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "default"},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django logs every 4xx/5xx with the request; our middleware and views log what
            # matters. The request's URL is logged without query-string values (RedactFilter).
            "django.request": {"level": "ERROR"},
            "django.server": {"level": "WARNING"},
            "pymongo": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
        },
    }


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` over `base`: mappings merged key by key, anything else (a list of handlers,
    a level) replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def read_log_config(path: str) -> dict[str, Any]:
    """The dictConfig of a `.json` or `.toml` file."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise LogConfigError(f"LOG_CONFIG {path}: must be a .json or .toml file")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LogConfigError(f"LOG_CONFIG {path}: cannot be read ({_one_line(exc)})") from None
    try:
        data = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError
        raise LogConfigError(f"LOG_CONFIG {path}: not valid {suffix[1:].upper()} ({_one_line(exc)})") from None
    if not isinstance(data, dict):
        raise LogConfigError(f"LOG_CONFIG {path}: must hold a dictConfig mapping")
    return data


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f": {' '.join(str(cause).split())}"
    return escape_control_characters(text)


def build_config(*, level: str, fmt: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    config = merged(default_config(level=level, fmt=fmt), overrides or {})
    handlers = config.get("handlers")
    if isinstance(handlers, Mapping):
        config["handlers"] = {name: _with_filters(handler) for name, handler in handlers.items()}
    return config


def _with_filters(handler: Any) -> Any:
    if not isinstance(handler, Mapping):
        return handler  # dictConfig itself reports it
    handler = dict(handler)
    handler.setdefault("formatter", "default")
    filters = list(handler.get("filters") or [])
    handler["filters"] = [name for name in _HANDLER_FILTERS if name not in filters] + filters
    return handler


def _all_handlers() -> list[logging.Handler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [item for item in logging.Logger.manager.loggerDict.values() if isinstance(item, logging.Logger)]
    seen: dict[int, logging.Handler] = {}
    for logger in loggers:
        for handler in logger.handlers:
            seen.setdefault(id(handler), handler)
    return list(seen.values())


def configure_logging(*, level: str, fmt: str, config_file: str = "") -> None:
    """The defaults, merged with the dictConfig file `config_file` names (if any). Raises
    LogConfigError, one line naming the file, when the file cannot be read or applied."""
    overrides = read_log_config(config_file) if config_file else None
    try:
        logging.config.dictConfig(build_config(level=level, fmt=fmt, overrides=overrides))
    except (ValueError, TypeError, AttributeError, ImportError, OSError) as exc:
        if not config_file:
            raise
        # Back to the defaults, so whatever reports this error is logged sanely.
        logging.config.dictConfig(build_config(level=level, fmt=fmt))
        raise LogConfigError(
            f"LOG_CONFIG {config_file}: not a valid logging configuration ({_one_line(exc)})"
        ) from None
    for handler in _all_handlers():
        formatter = handler.formatter or logging.Formatter()
        if not isinstance(formatter, _SAFE_FORMATTERS):
            handler.setFormatter(EscapingFormatter(formatter))
