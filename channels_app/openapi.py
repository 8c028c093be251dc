"""The OpenAPI descriptions and examples of channels_app's API views, kept apart from the views."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiCallback,
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)

from channels_app.dispatch import TEST_MESSAGE_TEXT, TYPING_STATES
from channels_app.serializers import (
    BOT_CANNOT_CHANGE,
    UNKNOWN_CHAT_BOT,
    ChannelCreatedSerializer,
    ChannelCreateSerializer,
    ChannelFilterSerializer,
    ChannelSerializer,
    ChannelSigningSecretSerializer,
    ChannelUpdatedSerializer,
    ChannelUpdateSerializer,
    ChannelWithTokenSerializer,
    SigningSecretRotateSerializer,
)
from core.api import (
    AUTH_ERRORS,
    BAD_REQUEST,
    CONFLICT,
    NOT_FOUND,
    OBJECT_ID_PATH_PARAMETER,
)
from core.serializers import CONTROL_CHARACTERS_MESSAGE

_CHANNEL_EXAMPLE = {
    "id": "665f1c2e9b1e8a3d4c5b6a80",
    "name": "Website chat",
    "chat_bot_id": "665f1c2e9b1e8a3d4c5b6a79",
    "url": "https://chat.example.com/hook",
    "is_active": True,
    "typing_events": False,
    "token": "kq3F0bq2m7Yt5v0cM1nW8zR4pL6sX9aD2eH7jU3oQ1g",
}
_SIGNING_SECRET_EXAMPLE = "whsec_MfKQ9r1GKG8pQ8b1wF8mYy1Zl0Kq3Yw6u0bU9mJp2aE="  # noqa: S105 - an example
_CREATED_EXAMPLE = {**_CHANNEL_EXAMPLE, "signing_secret": _SIGNING_SECRET_EXAMPLE}
_DETAIL = [OBJECT_ID_PATH_PARAMETER]
_WRITE_ERRORS = {400: BAD_REQUEST, 404: NOT_FOUND, **AUTH_ERRORS}
_CREATE_BAD_REQUEST = OpenApiResponse(
    response=BAD_REQUEST.response,
    description="Invalid input: the field at fault is named.",
    examples=[
        OpenApiExample("Control character", value={"name": [str(CONTROL_CHARACTERS_MESSAGE)]}, response_only=True),
        OpenApiExample("Not a string", value={"name": ["Must be a string."]}, response_only=True),
    ],
)
UNKNOWN_BOT_RESPONSE = OpenApiResponse(
    response=NOT_FOUND.response,
    description="The body is valid, but `chat_bot_id` is no existing bot's id: the field is named.",
    examples=[OpenApiExample("Unknown bot", value={"chat_bot_id": [UNKNOWN_CHAT_BOT]}, response_only=True)],
)
_UPDATE_ERRORS = {
    **_WRITE_ERRORS,
    409: OpenApiResponse(
        response=CONFLICT.response,
        description="The body is valid, but its `chat_bot_id` is not the channel's bot: a channel cannot move.",
        examples=[OpenApiExample("Another bot", value={"chat_bot_id": [BOT_CANNOT_CHANGE]}, response_only=True)],
    ),
}


# --- What the platform POSTs to a channel's `url` (docs/channels.md) ---------------------------
#
# A callback of the create operation, so that a generated receiver gets the payloads' types.
# Written out rather than built from serializers: drf-spectacular's callbacks carry a body and
# responses, not the headers, and the headers are half of the contract. Inline schemas with a
# `title`, which generators use as the type's name.

_CHANNEL_MESSAGE: dict[str, Any] = {
    "title": "ChannelMessage",
    "type": "object",
    "description": "A bot reply (`ASSISTANT`), an operator's message to the customer (`EMPLOYEE`), or the admin's "
    "test message (`test: true`). Ignore fields you do not know: new ones may be added.",
    "properties": {
        "type": {"type": "string", "enum": ["message"]},
        "message_id": {
            "type": "string",
            "description": "The message's id, also sent as `webhook-id`: the same on every retry, so drop repeats by "
            "it. A bot reply's id is derived from the message it answers.",
        },
        "role": {"type": "string", "enum": ["ASSISTANT", "EMPLOYEE"]},
        "text": {"type": "string"},
        "chat_id": {
            "type": "string",
            "description": "The conversation: the channel's id, or the `chat_id` the channel sent with `channel_id`.",
        },
        "in_reply_to": {
            "type": "string",
            "nullable": True,
            "description": "The customer's `message_id` a bot reply answers (the last one, for a burst's reply); "
            "null for an operator's message and for a test message.",
        },
        "answers": {
            "type": "array",
            "items": {"type": "string"},
            "description": "A burst's reply only (the bot's `reply_policy` `burst`): every customer `message_id` it "
            "answers.",
        },
        "test": {
            "type": "boolean",
            "description": "Only on the admin's test message (`message_id` `test-<uuid>`, "
            f'text "{TEST_MESSAGE_TEXT}"): show it to nobody, answer it as any other.',
        },
    },
    "required": ["type", "message_id", "role", "text", "chat_id", "in_reply_to"],
}
_CHANNEL_TYPING: dict[str, Any] = {
    "title": "ChannelTypingEvent",
    "type": "object",
    "description": "Only for channels with `typing_events`: the bot started writing a reply to this chat (`on`), or "
    "will not send one after all (`off`). Best effort: one attempt, never retried.",
    "properties": {
        "type": {"type": "string", "enum": ["typing"]},
        "chat_id": {"type": "string"},
        "state": {"type": "string", "enum": list(TYPING_STATES)},
    },
    "required": ["type", "chat_id", "state"],
}


def _header(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": True, "description": description, "schema": schema}


def _retried(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            "Retry-After": {
                "description": "Seconds or an HTTP date: the next attempt waits at least that long (at most "
                "`CHANNEL_RETRY_AFTER_CAP_S`).",
                "schema": {"type": "string"},
            }
        },
    }


CHANNEL_POST_OPERATION: dict[str, Any] = {
    "summary": "What the platform POSTs to the channel's url",
    "description": "Bot replies, operators' messages, test messages and (opted in) typing events, JSON, signed as "
    "Standard Webhooks specify. Answer 2xx within `CHANNEL_ATTEMPT_TIMEOUT_S`; anything else is a failed attempt, "
    "retried with backoff up to `DELIVERY_MAX_ATTEMPTS` times, after which the message is dead. Replies of one chat "
    "come in order. See docs/channels.md.",
    "parameters": [
        _header(settings.CHANNEL_AUTH_HEADER, "`Bearer <channel token>`: the channel's token.", type="string"),
        _header("webhook-id", "The message's `message_id` (typing events: `typing-<uuid4>`).", type="string"),
        _header("webhook-timestamp", "The attempt's Unix time, in seconds.", type="string", pattern="^[0-9]+$"),
        _header(
            "webhook-signature",
            'Space-separated `v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">`, one per signing '
            "secret (two during a rotation's overlap). The key is the signing secret without `whsec_`, base64-decoded.",
            type="string",
        ),
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"oneOf": [_CHANNEL_MESSAGE, _CHANNEL_TYPING]}}},
    },
    "responses": {
        "2XX": {"description": "Taken: the message is delivered. The body is not read beyond 64 KiB, nor used."},
        "429": _retried("Retried; `Retry-After` is honoured."),
        "503": _retried("Retried; `Retry-After` is honoured."),
        "default": {
            "description": "A failed attempt, retried: 408 and 5xx, but also any other status (a 3xx is not followed), "
            "as are no answer within the deadline and a network error."
        },
    },
}
CHANNEL_CALLBACKS = [OpenApiCallback("channelMessages", "{$request.body#/url}", {"post": CHANNEL_POST_OPERATION})]


channel_schema = extend_schema_view(
    list=extend_schema(
        summary="List channels",
        description="A plain JSON array, newest first (the existing contract). Giving `limit` or `offset` "
        "switches to a paginated envelope `{count, next, previous, results}`. `token` only for users who may "
        "change channels.",
        parameters=[ChannelFilterSerializer],
        responses={200: ChannelSerializer(many=True), 400: BAD_REQUEST, **AUTH_ERRORS},
        examples=[OpenApiExample("Channels", value=_CHANNEL_EXAMPLE, response_only=True)],
    ),
    retrieve=extend_schema(
        summary="Get a channel",
        description="`token` only for users who may change channels.",
        parameters=_DETAIL,
        responses={200: ChannelSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
        examples=[OpenApiExample("Channel", value=_CHANNEL_EXAMPLE, response_only=True)],
    ),
    destroy=extend_schema(
        summary="Delete a channel",
        description="Deletes the channel with its dialogues and their messages.",
        parameters=_DETAIL,
        responses={204: None, 404: NOT_FOUND, **AUTH_ERRORS},
    ),
    create=extend_schema(
        summary="Create a channel",
        description="The server generates the channel's `token` and its `signing_secret` (Standard Webhooks; "
        "shown in this response only). A `chat_bot_id` of no existing bot is a 404 naming the field. URLs that "
        "resolve to private or loopback addresses are refused unless `CHANNEL_ALLOW_PRIVATE_URLS` is set. "
        "`typing_events` (default false) adds best-effort typing events to what is POSTed to `url`.",
        request=ChannelCreateSerializer,
        responses={201: ChannelCreatedSerializer, 400: _CREATE_BAD_REQUEST, **AUTH_ERRORS, 404: UNKNOWN_BOT_RESPONSE},
        callbacks=CHANNEL_CALLBACKS,
        examples=[
            OpenApiExample(
                "Create",
                value={
                    "name": "Website chat",
                    "chat_bot_id": "665f1c2e9b1e8a3d4c5b6a79",
                    "url": "https://chat.example.com/hook",
                    "is_active": True,
                    "typing_events": True,
                },
                request_only=True,
            ),
            OpenApiExample("Created", value=_CREATED_EXAMPLE, response_only=True, status_codes=["201"]),
        ],
    ),
    update=extend_schema(
        summary="Replace a channel's name, url, is_active and typing_events",
        description="`name` and `url` are required; `is_active` and `typing_events` left out stay as they are. "
        "The bot cannot change: "
        "a `chat_bot_id` equal to the current one is accepted, any other is a 409.",
        parameters=_DETAIL,
        request=ChannelUpdateSerializer,
        responses={200: ChannelUpdatedSerializer, **_UPDATE_ERRORS},
        examples=[
            OpenApiExample(
                "Update",
                value={"name": "Website chat", "url": "https://chat.example.com/v2/hook", "is_active": False},
                request_only=True,
            )
        ],
    ),
    partial_update=extend_schema(
        summary="Change some of a channel's name, url, is_active and typing_events",
        description="Only the fields given change; a `chat_bot_id` other than the current one is a 409.",
        parameters=_DETAIL,
        request=ChannelUpdateSerializer,
        responses={200: ChannelUpdatedSerializer, **_UPDATE_ERRORS},
        examples=[OpenApiExample("Deactivate", value={"is_active": False}, request_only=True)],
    ),
    rotate_token=extend_schema(
        summary="Rotate a channel's token",
        description="Generates a new token for the channel and returns the channel with it. Bot replies and "
        "employees' messages are delivered with the new token from now on.",
        parameters=_DETAIL,
        request=None,
        responses={200: ChannelWithTokenSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
        examples=[OpenApiExample("Rotated", value=_CHANNEL_EXAMPLE, response_only=True)],
    ),
    rotate_signing_secret=extend_schema(
        summary="Rotate a channel's signing secret",
        description="Generates a new Standard Webhooks signing secret and returns the channel with it (the "
        "only time it is shown). Until `previous_signing_secret_until` replies carry a signature made with "
        "the old secret as well (`webhook-signature: v1,<new> v1,<old>`), so the channel can switch without "
        "rejecting any: for `overlap_minutes`, by default `CHANNEL_SIGNING_OVERLAP_S` (24 h). 0 drops the "
        "old secret at once. Rotating again within an overlap keeps only the latest old secret.",
        parameters=_DETAIL,
        request=SigningSecretRotateSerializer,
        responses={200: ChannelSigningSecretSerializer, **_WRITE_ERRORS, 409: CONFLICT},
        examples=[
            OpenApiExample("Rotate with a one-hour overlap", value={"overlap_minutes": 60}, request_only=True),
            OpenApiExample(
                "Rotated",
                value={**_CREATED_EXAMPLE, "previous_signing_secret_until": "2026-11-25T16:00:00Z"},
                response_only=True,
            ),
        ],
    ),
)
