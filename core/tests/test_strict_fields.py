"""Strict body fields: a JSON value of the wrong type is a 400 naming the field, never coerced;
lengths and patterns apply to the value as sent, as the schema states them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from rest_framework import serializers
from rest_framework.test import APIClient

from channels_app.tests.factories import ChannelFactory
from chatbots.models import ChatBot
from chatbots.tests.factories import ChatBotFactory
from core.serializers import (
    NAME_PATTERN,
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    strict_name_field,
)


class _Input(serializers.Serializer):
    name = strict_name_field(max_length=5)
    text = StrictCharField(required=False, max_length=5)
    flag = StrictBooleanField(required=False)
    count = StrictIntegerField(required=False, min_value=1, max_value=10)
    ratio = StrictFloatField(required=False, min_value=0.0, max_value=2.0)


def _errors(data: dict[str, Any]) -> dict[str, Any]:
    serializer = _Input(data=data)
    serializer.is_valid()
    return dict(serializer.errors)


@pytest.mark.parametrize("value", [0, 1.5, True, None, ["a"], {"$gt": ""}])
def test_strict_char_field_refuses_every_other_json_type(value: object) -> None:
    assert "name" in _errors({"name": value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("flag", "true"),
        ("flag", 1),
        ("flag", "yes"),
        ("count", "5"),
        ("count", True),
        ("count", 2.5),
        ("ratio", "1.5"),
        ("ratio", False),
        ("ratio", 10**400),
    ],
)
def test_strict_number_and_boolean_fields_refuse_strings_and_booleans(field: str, value: object) -> None:
    assert field in _errors({"name": "ok", field: value})


def test_strict_fields_accept_their_own_json_types() -> None:
    serializer = _Input(data={"name": " Bot ", "text": "12345", "flag": False, "count": 3.0, "ratio": 1})
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data == {"name": "Bot", "text": "12345", "flag": False, "count": 3, "ratio": 1.0}


def test_lengths_apply_to_the_value_as_sent() -> None:
    # DRF would trim first and accept a 7-character value whose trimmed form fits.
    assert "text" in _errors({"name": "ok", "text": "12345  "})
    assert "name" in _errors({"name": "  abc  "})


@pytest.mark.parametrize("value", ["a\nb", "t\tb", "\x00", "b\x07", "c\x85"])
def test_names_refuse_control_characters(value: str) -> None:
    assert _errors({"name": value})["name"] == ["Must not contain control characters (such as line breaks)."]


@pytest.mark.parametrize("value", ["   ", "\u00a0"])
def test_names_refuse_whitespace_only(value: str) -> None:
    assert _errors({"name": value})["name"] == ["This field may not be blank."]


def test_name_pattern_is_the_rule_the_field_applies() -> None:
    # The schema's pattern, read as clients and fuzzers read it (Python's re.search).
    pattern = re.compile(NAME_PATTERN)
    for value in ["Bot", "é ü", "a b"]:
        assert pattern.search(value) and "name" not in _errors({"name": value})
    for value in ["", " ", "a\tb", "\x7f"]:
        assert not pattern.search(value) and "name" in _errors({"name": value})


def test_text_refuses_nul_as_its_schema_says() -> None:
    assert _errors({"name": "ok", "text": "a\x00"})["text"] == ["Null characters are not allowed."]


@pytest.mark.django_db
@pytest.mark.parametrize("name", [0, 1.5, False, ["Bot"], {"x": 1}])
def test_a_bot_named_by_a_number_is_refused_not_coerced(api_client: APIClient, name: object) -> None:
    response = api_client.post("/api/chatbots/", {"name": name}, format="json")
    assert response.status_code == 400
    assert response.json() == {"name": ["Must be a string."]}
    assert not ChatBot.objects.exists()

    bot = ChatBotFactory(name="Support")
    response = api_client.patch(f"/api/chatbots/{bot.pk}/", {"name": name}, format="json")
    assert response.status_code == 400 and response.json() == {"name": ["Must be a string."]}
    bot.refresh_from_db()
    assert bot.name == "Support"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", "1.0"), ("temperature", True), ("max_output_tokens", "100"), ("context_messages", False)],
)
def test_bot_settings_refuse_strings_and_booleans(api_client: APIClient, field: str, value: object) -> None:
    response = api_client.post("/api/chatbots/", {"name": "Bot", field: value}, format="json")
    assert response.status_code == 400 and field in response.json()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"), [("name", 7), ("url", ["https://a.example/"]), ("is_active", "false"), ("is_active", 0)]
)
def test_channel_fields_refuse_the_wrong_json_type(api_client: APIClient, field: str, value: object) -> None:
    body = {"name": "Web", "chat_bot_id": str(ChatBotFactory().pk), "url": "https://a.example/h", field: value}
    response = api_client.post("/api/channels/", body, format="json")
    assert response.status_code == 400 and field in response.json()

    channel = ChannelFactory()
    response = api_client.patch(f"/api/channels/{channel.pk}/", {field: value}, format="json")
    assert response.status_code == 400 and field in response.json()


@pytest.mark.django_db
def test_history_cursor_longer_than_its_max_length_is_refused(api_client: APIClient) -> None:
    channel = ChannelFactory()
    for cursor in ("x" * 257, "x" * 256 + " "):
        response = api_client.get(f"/api/channels/{channel.pk}/dialogue", {"before": cursor})
        assert response.status_code == 400 and "before" in response.json()
