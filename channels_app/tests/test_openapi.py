"""The OpenAPI schema describes what the platform POSTs to a channel (a callback of the channel's
create operation), in the very field and header names channels_app.dispatch sends."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from drf_spectacular.generators import SchemaGenerator

from channels_app.dispatch import reply_payload, test_payload, typing_payload


@pytest.fixture(scope="module")
def channel_post() -> dict[str, Any]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    callbacks = schema["paths"]["/api/channels/"]["post"]["callbacks"]
    return callbacks["channelMessages"]["{$request.body#/url}"]["post"]


def _bodies(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    variants = operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    return {variant["properties"]["type"]["enum"][0]: variant for variant in variants}


def test_the_callback_names_every_header_a_channel_gets(channel_post: dict[str, Any]) -> None:
    headers = {p["name"] for p in channel_post["parameters"] if p["in"] == "header" and p["required"]}
    assert headers == {settings.CHANNEL_AUTH_HEADER, "webhook-id", "webhook-timestamp", "webhook-signature"}
    assert settings.CHANNEL_AUTH_HEADER == "x-chat_auth_token"  # the default the docs name


def test_the_callback_body_has_the_fields_dispatch_sends(channel_post: dict[str, Any]) -> None:
    bodies = _bodies(channel_post)
    assert set(bodies) == {"message", "typing"}
    message, typing = bodies["message"], bodies["typing"]
    assert set(message["properties"]) == {
        "type",
        "message_id",
        "role",
        "text",
        "chat_id",
        "in_reply_to",
        "answers",
        "test",
    }
    assert message["properties"]["role"]["enum"] == ["ASSISTANT", "EMPLOYEE"]
    reply = {**reply_payload(message_id="r", text="t", chat_id="c", in_reply_to="m"), "answers": ["m"]}
    for sent in (reply, test_payload(channel_id="c")):
        assert set(sent) <= set(message["properties"]), sent
        assert set(message["required"]) <= set(sent), sent
    sent_typing = typing_payload(chat_id="c", state="on")
    assert set(sent_typing) == set(typing["properties"]) == set(typing["required"])
    assert typing["properties"]["state"]["enum"] == ["on", "off"]


def test_the_callback_says_what_answers_mean(channel_post: dict[str, Any]) -> None:
    responses = channel_post["responses"]
    assert set(responses) == {"2XX", "429", "503", "default"}
    assert "Retry-After" in responses["429"]["headers"] and "Retry-After" in responses["503"]["headers"]
