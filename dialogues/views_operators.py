"""The dialogues API with the hand-off: the bot's pause in reads and list filters, `pause`,
`resume`, and operators' messages (`POST /api/dialogues/{id}/messages`). Registered in place of
`dialogues.views.DialogueViewSet`, whose reads it extends; each action validates, calls one
service of `dialogues.services_operators`, and serializes the result."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import AUTH_ERRORS, BAD_REQUEST, NOT_FOUND, OBJECT_ID_PATH_PARAMETER, query_params, validated
from dialogues.models import Dialogue
from dialogues.selectors import DialoguePosition, dialogue_keyset, dialogue_list, dialogues_by_id, dialogues_by_pause
from dialogues.serializers import (
    DialogueHandoffFilterSerializer,
    DialogueHandoffSerializer,
    DialogueHistorySerializer,
    DialoguePauseSerializer,
    HistoryQuerySerializer,
    OperatorMessageRequestSerializer,
    OperatorMessageSerializer,
)
from dialogues.services_operators import dialogue_pause, dialogue_resume, operator_message_send
from dialogues.views import DialogueViewSet, history_response

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


PAUSE_FILTER_BATCH = 200


@extend_schema_view(
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
)
class DialogueHandoffViewSet(DialogueViewSet):
    """Dialogues: written by the webhook; operators pause the bot and write to the customer."""

    serializer_class = DialogueHandoffSerializer

    def get_queryset(self) -> QuerySet[Dialogue]:
        if self.action != "list":
            return Dialogue.objects.all()
        filters = validated(DialogueHandoffFilterSerializer, query_params(self.request.query_params))
        paused = filters.pop("paused", None)
        dialogues = dialogue_list(**filters)
        if paused is not None:
            dialogues = dialogues_by_pause(dialogues, paused=paused)
        return dialogues.order_by("-last_message_at", "-id")

    def keyset_page(self, *, position: tuple[datetime | None, ObjectId] | None, newer: bool, count: int) -> list[Any]:
        """With `paused`, the list's dialogues read in batches (`dialogue_keyset`) and kept when
        their bot's state matches: few dialogues are paused, and a condition on the pause
        beside the list's own would leave its index on the embedded server. Bounded by the
        read budget."""
        filters = validated(DialogueHandoffFilterSerializer, query_params(self.request.query_params))
        paused = filters.pop("paused", None)
        if paused is None:
            return super().keyset_page(position=position, newer=newer, count=count)
        place = DialoguePosition(*position) if position is not None else None
        kept: list[Dialogue] = []
        while len(kept) < count:
            places = dialogue_keyset(**filters, position=place, newer=newer, count=PAUSE_FILTER_BATCH)
            kept += [dialogue for dialogue in dialogues_by_id([p.id for p in places]) if dialogue.is_paused == paused]
            if len(places) < PAUSE_FILTER_BATCH:
                break
            place = places[-1]
        return kept[:count]

    @extend_schema(
        methods=["GET"],
        summary="A dialogue's messages",
        description="Oldest first. Without a cursor: the latest `limit` messages. Page back with "
        "`before=<first message_id>`, forward with `after=<last message_id>`.",
        parameters=[OBJECT_ID_PATH_PARAMETER, HistoryQuerySerializer],
        responses={200: DialogueHistorySerializer, 400: BAD_REQUEST, 404: NOT_FOUND, **AUTH_ERRORS},
    )
    @extend_schema(
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
    @action(detail=True, methods=["get", "post"])
    def messages(self, request: Request, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        # (The stubs type an action by its class, so any override "differs" from its parent's.)
        dialogue = self.get_object()
        if request.method != "POST":
            query = validated(
                HistoryQuerySerializer, query_params(request.query_params), context={"dialogue": dialogue}
            )
            return history_response(
                dialogue=dialogue,
                chat_bot_id=dialogue.chat_bot_id,
                channel_id=dialogue.channel_id,
                chat_id=dialogue.chat_id,
                query=query,
            )
        data = validated(OperatorMessageRequestSerializer, request.data)
        message = operator_message_send(dialogue=dialogue, author=request.user, text=data["text"])
        return Response(OperatorMessageSerializer(message).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Pause the bot in this dialogue (an operator takes over)",
        description="Customer messages are stored and not answered while the bot is paused. With `minutes`, the "
        "pause ends by itself then; without, it lasts until `resume`. Replaces any pause in force.",
        parameters=[OBJECT_ID_PATH_PARAMETER],
        request=DialoguePauseSerializer,
        responses={200: DialogueHandoffSerializer, 400: PAUSE_BAD_REQUEST, 404: NOT_FOUND, **AUTH_ERRORS},
        examples=[OpenApiExample("For an hour", value={"minutes": 60}, request_only=True)],
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        dialogue = self.get_object()
        data = validated(DialoguePauseSerializer, request.data)
        dialogue = dialogue_pause(dialogue=dialogue, minutes=data.get("minutes"))
        return Response(DialogueHandoffSerializer(dialogue).data)

    @extend_schema(
        summary="Give the dialogue back to the bot",
        description="The bot answers the next customer message. Messages that came in while it was paused stay "
        "unanswered.",
        parameters=[OBJECT_ID_PATH_PARAMETER],
        request=None,
        responses={200: DialogueHandoffSerializer, 404: NOT_FOUND, **AUTH_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        dialogue = dialogue_resume(dialogue=self.get_object())
        return Response(DialogueHandoffSerializer(dialogue).data)
