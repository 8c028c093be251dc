"""The OpenAPI descriptions and examples of dialogues's API views, kept apart from the views."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view

from core.api import (
    AUTH_ERRORS,
    BAD_REQUEST,
    NOT_FOUND,
    OBJECT_ID_PATH_PARAMETER,
)
from dialogues.serializers import (
    DialogueHistorySerializer,
    HistoryQuerySerializer,
)

CHANNEL_HISTORY_EXAMPLE = {
    "id": "665f1c2e9b1e8a3d4c5b6a81",
    "chat_bot_id": "665f1c2e9b1e8a3d4c5b6a79",
    "channel_id": "665f1c2e9b1e8a3d4c5b6a80",
    "chat_id": "665f1c2e9b1e8a3d4c5b6a80",
    "message_list": [
        {
            "message_id": "m-1",
            "role": "USER",
            "text": "Hello! This is the broken part:",
            "attachments": [
                {
                    "url": "https://files.example.com/u/42/photo.jpg",
                    "mime_type": "image/jpeg",
                    "name": "photo.jpg",
                    "size": 183204,
                }
            ],
            "created_at": "2025-01-31T12:00:00.000000Z",
            "in_reply_to": None,
            "delivery_state": None,
        },
        {
            "message_id": "r-m-1",
            "role": "ASSISTANT",
            "text": "Thanks, I see the crack. A replacement is on its way.",
            "attachments": [],
            "created_at": "2025-01-31T12:00:01.000000Z",
            "in_reply_to": "m-1",
            "delivery_state": "delivered",
        },
    ],
    "has_more": False,
}


dialogue_schema = extend_schema_view(
    messages=extend_schema(
        summary="A dialogue's messages",
        description="Oldest first. Without a cursor: the latest `limit` messages. Page back with "
        "`before=<first message_id>`, forward with `after=<last message_id>`.",
        parameters=[OBJECT_ID_PATH_PARAMETER, HistoryQuerySerializer],
        responses={200: DialogueHistorySerializer, 400: BAD_REQUEST, 404: NOT_FOUND, **AUTH_ERRORS},
    ),
)

channel_dialogue_schema = extend_schema_view(
    get=extend_schema(
        operation_id="channels_dialogue_retrieve",
        tags=["channels"],
        summary="The channel's dialogue",
        description="The dialogue whose chat_id is this channel's id, oldest message first. Without a cursor: "
        "the latest `limit` messages. Page back with `before=<first message_id>`, forward with "
        "`after=<last message_id>`. An empty `message_list` (and `id: null`) when nothing was said yet. Needs "
        "the permissions to view channels and dialogues.",
        parameters=[OBJECT_ID_PATH_PARAMETER, HistoryQuerySerializer],
        responses={200: DialogueHistorySerializer, 400: BAD_REQUEST, 404: NOT_FOUND, **AUTH_ERRORS},
        examples=[OpenApiExample("History", value=CHANNEL_HISTORY_EXAMPLE, response_only=True)],
    ),
)
