"""LOG_CONFIG: the operator's `logging.config.dictConfig` file, merged over the defaults. Every
handler, the file's too, gets the request id, the escaping of items a client sent, and URLs
without query-string values; a bad file stops start-up with one line naming it."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path
from rest_framework.test import APIClient

from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from config.logging import configure_logging
from core.request_context import reset_request_id, set_request_id
from core.tests.test_log_forging import FORGED_FIELDS, fields
from core.tests.test_settings import ROOT, run_check

REVEAL_KEY = "one-time-reveal-key-4f7c1a"


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


# This module is the URLconf of the tests that need a view that fails.
urlpatterns = [path("boom", boom)]


@pytest.fixture
def log_config(tmp_path: Path) -> Iterator[Callable[[str, str], None]]:
    """Applies a LOG_CONFIG file (its text, its suffix); the defaults again afterwards."""

    def apply(text: str, suffix: str = ".toml") -> None:
        file = tmp_path / f"logging{suffix}"
        file.write_text(text)
        configure_logging(level="INFO", fmt="text", config_file=str(file))

    yield apply
    configure_logging(level=settings.LOG_LEVEL, fmt=settings.LOG_FORMAT)


def toml_with_files(tmp_path: Path) -> str:
    return f"""
version = 1

[formatters.plain]
format = "%(levelname)s [%(request_id)s] %(name)s %(message)s request=%(request)s"
defaults = {{ request = "-" }}

[handlers.file]
class = "logging.handlers.RotatingFileHandler"
filename = "{tmp_path / "app.log"}"
maxBytes = 1048576
backupCount = 3
formatter = "text"

[handlers.plain]
class = "logging.FileHandler"
filename = "{tmp_path / "plain.log"}"
formatter = "plain"

[root]
handlers = ["console", "file", "plain"]

[loggers."dialogues.webhook"]
level = "INFO"
"""


@pytest.mark.django_db
def test_a_rotating_file_from_a_toml_file_gets_request_ids_and_escaped_values(
    tmp_path: Path, log_config: Callable[[str, str], None]
) -> None:
    log_config(toml_with_files(tmp_path), ".toml")
    rotating = [h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    assert len(rotating) == 1 and rotating[0].maxBytes == 1048576
    # The defaults stay: the console handler and its levels.
    assert "console" in [h.name for h in logging.getLogger().handlers]
    assert logging.getLogger("pymongo").level == logging.WARNING

    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot)
    message_id = FORGED_FIELDS + "\n2026-01-01 WARNING forged\u202e"
    body = {"message_id": message_id, "chat_id": str(channel.pk), "text": "Hi", "message_sender": "customer"}
    response = APIClient().post(
        "/api/webhook/new_message",
        body,
        format="json",
        headers={"x-chatbot_auth_token": f"Bearer {bot.plain_secret}", "X-Request-ID": "req-rotating-1"},
    )
    assert response.status_code == 200
    token = set_request_id("req-plain-1")
    try:
        logging.getLogger("dialogues.webhook").warning("chat %s", "c1\n2026-01-01 ERROR forged\u202e")
    finally:
        reset_request_id(token)
    for handler in logging.getLogger().handlers:
        handler.flush()

    lines = (tmp_path / "app.log").read_text().splitlines()
    [webhook] = [line for line in lines if " dialogues.webhook: webhook" in line]
    assert "[req-rotating-1]" in webhook
    assert fields(webhook)["message_id"] == [FORGED_FIELDS + "\\n2026-01-01 WARNING forged\\u202e"]
    assert fields(webhook)["status"] == ["200"]
    # The file's own formatter: the request id filled in, the forged line kept inside its record.
    plain = (tmp_path / "plain.log").read_text()
    assert "WARNING [req-plain-1] dialogues.webhook chat c1\\n2026-01-01 ERROR forged\\u202e request=-" in plain
    assert "\u202e" not in plain and "\u202e" not in (tmp_path / "app.log").read_text()
    assert all(not line.startswith("2026-01-01") for line in plain.splitlines())


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_a_server_error_is_logged_without_its_query_string_by_every_handler(
    tmp_path: Path, log_config: Callable[[str, str], None]
) -> None:
    log_config(toml_with_files(tmp_path), ".toml")
    console = next(h for h in logging.getLogger().handlers if h.name == "console")
    assert isinstance(console, logging.StreamHandler)
    stream = io.StringIO()
    console.setStream(stream)

    response = Client(raise_request_exception=False).get(f"/boom?reveal={REVEAL_KEY}&page=2")
    assert response.status_code == 500
    for handler in logging.getLogger().handlers:
        handler.flush()

    outputs = {"console": stream.getvalue(), "file": (tmp_path / "app.log").read_text(),
               "plain": (tmp_path / "plain.log").read_text()}  # fmt: skip
    for name, text in outputs.items():
        assert "django.request" in text or "Internal Server Error: /boom" in text, name
        assert REVEAL_KEY not in text, (name, text)
    assert 'request="GET /boom"' in outputs["file"]


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_the_default_console_logs_a_server_error_without_its_query_string() -> None:
    configure_logging(level=settings.LOG_LEVEL, fmt=settings.LOG_FORMAT)
    console = next(h for h in logging.getLogger().handlers if h.name == "console")
    assert isinstance(console, logging.StreamHandler)
    stream = io.StringIO()
    old = console.setStream(stream)
    try:
        response = Client(raise_request_exception=False).get(f"/boom?reveal={REVEAL_KEY}")
    finally:
        console.setStream(old)
    assert response.status_code == 500
    assert "Internal Server Error: /boom" in stream.getvalue()
    assert REVEAL_KEY not in stream.getvalue()


def test_a_json_file_sets_levels_per_logger(tmp_path: Path, log_config: Callable[[str, str], None]) -> None:
    log_config(
        json.dumps({"version": 1, "loggers": {"worker": {"level": "DEBUG"}, "django.request": {"level": "WARNING"}}}),
        ".json",
    )
    assert logging.getLogger("worker").level == logging.DEBUG
    assert logging.getLogger("django.request").level == logging.WARNING
    assert [h.name for h in logging.getLogger().handlers] == ["console"]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("missing.toml", None, "cannot be read"),
        ("broken.toml", "version = [\n", "not valid TOML"),
        ("broken.json", "{version: 1", "not valid JSON"),
        ("unknown.toml", 'version = 1\n[handlers.x]\nclass = "no.such.Handler"\n', "not a valid logging configuration"),
        ("bad-level.json", '{"loggers": {"worker": {"level": "LOUD"}}}', "not a valid logging configuration"),
        ("logging.yaml", "version: 1\n", "must be a .json or .toml file"),
    ],
)
def test_a_bad_file_stops_start_up_with_one_line_naming_it(
    tmp_path: Path, name: str, text: str | None, expected: str
) -> None:
    file = tmp_path / name
    if text is not None:
        file.write_text(text)
    result = run_check(LOG_CONFIG=str(file))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: LOG_CONFIG {file}: ")
    assert expected in lines[0]


@pytest.mark.parametrize("example", ["logging.example.toml", "logging.example.json"])
def test_the_documented_examples_apply(tmp_path: Path, log_config: Callable[[str, str], None], example: str) -> None:
    text = (ROOT / "deploy" / example).read_text().replace("/var/log/chatbots", str(tmp_path))
    log_config(text, Path(example).suffix)
    logging.getLogger("worker").warning("example %s", "a\u202eb")
    for handler in logging.getLogger().handlers:
        handler.flush()
    [written] = list(tmp_path.glob("app.*"))
    assert "example a\\u202eb" in written.read_text()
