"""A client cannot forge log lines: control characters from request data are escaped by the
text formatter, whatever logger or field carries them."""

from __future__ import annotations

import io
import logging
import re
import shlex
import sys
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from config.logging import TEXT_FORMAT, JsonFormatter, RequestIdFilter, TextFormatter, escape_control_characters

FORGED = "x\r\n2026-11-24 12:00:00,000 WARNING [-] django.security: Admin password changed\x1b[2K"
LINE_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \[")


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": msg, "args": args, **extra})
    RequestIdFilter().filter(record)
    return record


def test_escape_control_characters() -> None:
    assert escape_control_characters("a\r\nb\tc\x00d\x1b[31me\x7f\x85\u2028\u2029") == (
        "a\\r\\nb\\tc\\x00d\\x1b[31me\\x7f\\x85\\u2028\\u2029"
    )
    assert escape_control_characters("plain, ünïcode € 💬") == "plain, ünïcode € 💬"
    assert escape_control_characters("a\nb\rc", keep_newlines=True) == "a\nb\\rc"


def test_a_forged_line_in_the_message_its_arguments_or_extras_stays_on_one_line() -> None:
    formatter = TextFormatter(TEXT_FORMAT)
    for record in (
        _record(FORGED),
        _record("chat %s", FORGED),
        _record("webhook", chat_id=FORGED, message_id="m\n1"),
    ):
        line = formatter.format(record)
        assert "\n" not in line and "\r" not in line and "\x1b" not in line
        assert LINE_START.match(line)
        assert "\\r\\n2026-11-24 12:00:00,000 WARNING" in line


def test_extras_keep_their_key_value_shape() -> None:
    line = TextFormatter("%(levelname)s %(message)s").format(_record("webhook", chat_id="c\n1", status=200))
    assert line == 'INFO webhook chat_id="c\\n1" status=200'


def test_a_traceback_follows_on_indented_lines_and_cannot_start_a_line_either() -> None:
    try:
        raise ValueError(f"bad id {FORGED}")
    except ValueError:
        record = _record("failed", exc_info=sys.exc_info())
    text = TextFormatter(TEXT_FORMAT).format(record)
    first, *rest = text.split("\n")
    assert LINE_START.match(first) and first.endswith("failed")
    assert rest and rest[0] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in rest)
    assert "\r" not in text and "\x1b" not in text
    assert "ValueError: bad id x\\r" in text


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The text format, as production writes it, for everything logged during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.mark.django_db
def test_a_webhook_with_forged_ids_logs_one_line(log_lines: io.StringIO) -> None:
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot)
    headers = {"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"}
    for body in (
        {"message_id": FORGED, "chat_id": str(channel.pk), "text": "Hi", "message_sender": "customer"},
        {"message_id": "m-2", "chat_id": FORGED, "text": "Hi", "message_sender": "customer"},
        {"message_id": "m-3", "chat_id": "c-1", "channel_id": str(channel.pk), "text": "Hi", "message_sender": FORGED},
    ):
        response = APIClient().post("/api/webhook/new_message", body, format="json", headers=headers)
        assert response.status_code in (200, 400, 404)

    lines = log_lines.getvalue().splitlines()
    webhook_lines = [line for line in lines if " dialogues.webhook: webhook" in line]
    assert len(webhook_lines) == 3
    assert all(LINE_START.match(line) for line in lines), lines
    assert not any("django.security" in line.split(": ", 1)[0] for line in lines)
    assert "\x1b" not in log_lines.getvalue() and "\r" not in log_lines.getvalue()
    assert any("\\r\\n2026-11-24" in line for line in webhook_lines)


# --- values that look like fields, bidirectional controls ------------------------------

FORGED_FIELDS = "m1 outcome=duplicate status=500"
BIDI = ["\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))]


def fields(line: str) -> dict[str, list[str]]:
    """The line's `key=value` fields as a logfmt reader sees them (double quotes, backslash
    escapes), each key with every value it was given."""
    found: dict[str, list[str]] = {}
    for token in shlex.split(line.split(": ", 1)[1]):
        key, sep, value = token.partition("=")
        if sep:
            found.setdefault(key, []).append(value)
    return found


def test_a_value_with_spaces_or_equals_signs_stays_one_field() -> None:
    line = TextFormatter(TEXT_FORMAT).format(_record("webhook", message_id=FORGED_FIELDS, outcome="stored", status=200))
    assert fields(line) == {"message_id": [FORGED_FIELDS], "outcome": ["stored"], "status": ["200"]}
    quoted = TextFormatter(TEXT_FORMAT).format(_record("webhook", chat_id='a "b" \\c', empty=""))
    assert fields(quoted) == {"chat_id": ['a "b" \\c'], "empty": [""]}


def test_bidirectional_controls_are_escaped() -> None:
    for char in BIDI:
        line = TextFormatter(TEXT_FORMAT).format(_record("chat %s", f"a{char}b", chat_id=f"c{char}d"))
        assert char not in line
        assert f"a\\u{ord(char):04x}b" in line and f"chat_id=c\\u{ord(char):04x}d" in line
        assert char not in JsonFormatter().format(_record("chat %s", f"a{char}b", chat_id=f"c{char}d"))


@pytest.mark.django_db
def test_a_webhook_message_id_cannot_forge_the_outcome_or_the_status(log_lines: io.StringIO) -> None:
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot)
    body = {
        "message_id": FORGED_FIELDS + "\u202e",
        "chat_id": str(channel.pk),
        "text": "Hi",
        "message_sender": "customer",
    }
    response = APIClient().post(
        "/api/webhook/new_message", body, format="json", headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"}
    )
    assert response.status_code == 200

    [line] = [line for line in log_lines.getvalue().splitlines() if " dialogues.webhook: webhook" in line]
    logged = fields(line)
    assert logged["message_id"] == [FORGED_FIELDS + "\\u202e"]
    assert len(logged["outcome"]) == 1 and logged["outcome"] != ["duplicate"]
    assert logged["status"] == ["200"]
    assert "\u202e" not in log_lines.getvalue()
