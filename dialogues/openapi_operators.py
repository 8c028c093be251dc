"""The OpenAPI descriptions and examples of the operators' dialogue API (views_operators), kept apart from the views."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view

from core.api import AUTH_ERRORS, BAD_REQUEST, NOT_FOUND, OBJECT_ID_PATH_PARAMETER
from dialogues.serializers import (
    DialogueHandoffFilterSerializer,
    DialogueHandoffSerializer,
    DialogueHistorySerializer,
    DialoguePauseSerializer,
    HistoryQuerySerializer,
    OperatorMessageRequestSerializer,
    OperatorMessageSerializer,
)

PAUSE_BAD_REQUEST = OpenApiResponse(
    response=BAD_REQUEST.response,
    description="Invalid input: field errors name the field.",
    examples=[
        OpenApiExample("Minutes out of range", value={"minutes": ["Ensure this value is greater than or equal to 1."]}),
        OpenApiExample("Minutes not an integer", value={"minutes": ["Must be an integer."]}),
    ],
)
MESSAGE_BAD_REQUEST = OpenApiResponse(
    response=BAD_REQUEST.response,
    description="Invalid input: field errors name the field.",
    examples=[OpenApiExample("Blank text", value={"text": ["This field may not be blank."]})],
)


dialogue_handoff_schema = extend_schema_view(
    list=extend_schema(
        summary="List dialogues",
        description="Most recently active first, `limit` per page (default 50, at most 500), in the envelope "
        "`{next, previous, results}`: follow `next` (older) and `previous` (newer), which keep the filters. "
        "`offset` is not supported. `paused=true|false`: only dialogues whose bot is paused now, or active now.",
        parameters=[DialogueHandoffFilterSerializer],
        responses={200: DialogueHandoffSerializer(many=True), 400: BAD_REQUEST, **AUTH_ERRORS},
    ),
    retrieve=extend_schema(
        summary="Get a dialogue",
        parameters=[OBJECT_ID_PATH_PARAMETER],
        responses={200: DialogueHandoffSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
    ),
    pause=extend_schema(
        summary="Pause the bot in this dialogue (an operator takes over)",
        description="Customer messages are stored and not answered while the bot is paused. With `minutes`, the "
        "pause ends by itself then; without, it lasts until `resume`. Replaces any pause in force.",
        parameters=[OBJECT_ID_PATH_PARAMETER],
        request=DialoguePauseSerializer,
        responses={200: DialogueHandoffSerializer, 400: PAUSE_BAD_REQUEST, 404: NOT_FOUND, **AUTH_ERRORS},
        examples=[OpenApiExample("For an hour", value={"minutes": 60}, request_only=True)],
    ),
    resume=extend_schema(
        summary="Give the dialogue back to the bot",
        description="The bot answers the next customer message. Messages that came in while it was paused stay "
        "unanswered.",
        parameters=[OBJECT_ID_PATH_PARAMETER],
        request=None,
        responses={200: DialogueHandoffSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
    ),
)

# The messages action answers GET and POST: one description for each method.
dialogue_messages_read_schema = extend_schema(
    methods=["GET"],
    summary="A dialogue's messages",
    description="Oldest first. Without a cursor: the latest `limit` messages. Page back with "
    "`before=<first message_id>`, forward with `after=<last message_id>`.",
    parameters=[OBJECT_ID_PATH_PARAMETER, HistoryQuerySerializer],
    responses={200: DialogueHistorySerializer, 400: BAD_REQUEST, 404: NOT_FOUND, **AUTH_ERRORS},
)
dialogue_messages_send_schema = extend_schema(
    methods=["POST"],
    summary="Send an operator's message to the customer",
    description="Stored as an `EMPLOYEE` message written by the calling staff user and delivered to the "
    "channel by the worker (payload `role: EMPLOYEE`), with the same retries and per-chat order as the "
    "bot's replies. Pauses the bot in this dialogue for its bot's `pause_after_operator_reply_minutes` "
    "(a longer pause in force is kept).",
    parameters=[OBJECT_ID_PATH_PARAMETER],
    request=OperatorMessageRequestSerializer,
    responses={201: OperatorMessageSerializer, 400: MESSAGE_BAD_REQUEST, 404: NOT_FOUND, **AUTH_ERRORS},
    examples=[OpenApiExample("Operator's message", value={"text": "Hi, Ann here."}, request_only=True)],
)
