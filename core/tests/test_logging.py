from __future__ import annotations

import json
import logging

from config.logging import JsonFormatter, RequestIdFilter, TextFormatter
from core.request_context import reset_request_id, set_request_id


def make_record(**extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": "hello %s", "args": ("world",), **extra})
    RequestIdFilter().filter(record)
    return record


def test_json_lines_carry_request_id_and_extras() -> None:
    token = set_request_id("req-1")
    try:
        line = JsonFormatter().format(make_record(outcome="replied"))
    finally:
        reset_request_id(token)
    data = json.loads(line)
    assert data["message"] == "hello world"
    assert data["request_id"] == "req-1"
    assert data["outcome"] == "replied"


def test_text_lines_carry_request_id() -> None:
    token = set_request_id("req-2")
    try:
        line = TextFormatter("%(levelname)s [%(request_id)s] %(message)s").format(make_record(status=200))
    finally:
        reset_request_id(token)
    assert line == "INFO [req-2] hello world status=200"
