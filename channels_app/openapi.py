"""The OpenAPI descriptions and examples of channels_app's API views, kept apart from the views."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view

from channels_app.serializers import (
    BOT_CANNOT_CHANGE,
    UNKNOWN_CHAT_BOT,
    ChannelCreatedSerializer,
    ChannelCreateSerializer,
    ChannelFilterSerializer,
    ChannelSerializer,
    ChannelSigningSecretSerializer,
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
_UNKNOWN_BOT = OpenApiResponse(
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
        responses={201: ChannelCreatedSerializer, 400: _CREATE_BAD_REQUEST, **AUTH_ERRORS, 404: _UNKNOWN_BOT},
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
        responses={200: ChannelWithTokenSerializer, **_UPDATE_ERRORS},
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
        responses={200: ChannelWithTokenSerializer, **_UPDATE_ERRORS},
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
